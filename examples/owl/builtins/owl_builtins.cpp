// The skill pipeline's builtin stages. Each validates its input and throws
// handler_failure naming what is missing, so a bad payload fails its attempt
// visibly instead of committing nonsense.
#include "examples/owl/builtins/owl_builtins.hpp"

#include <algorithm>
#include <functional>
#include <stdexcept>

namespace turing::examples::owl {

namespace {

using nlohmann::json;

std::string required_string(const json& payload, const std::string& field) {
  auto it = payload.find(field);
  if (it == payload.end() || !it->is_string() || it->get<std::string>().empty())
    throw actors::handler_failure("payload has no string field '" + field + "'");
  return it->get<std::string>();
}

std::string checked_domain(const json& payload, const std::string& where) {
  auto d = required_string(payload, "domain");
  const auto& all = domains();
  if (std::find(all.begin(), all.end(), d) == all.end())
    throw actors::handler_failure(where + ": '" + d + "' is not one of the 8 domains");
  return d;
}

/// Carl: gives the skill its entity id; the id is a stable hash of the key,
/// so a retried or replayed Carl creates the same entity, not a second one.
actors::handler_result create_entity(const json& payload) {
  auto name = required_string(payload, "name");
  auto key = payload.value("key", name);
  char id[32];
  std::snprintf(id, sizeof id, "skill:%016zx", std::hash<std::string>{}(key));
  return {"created", {{"entity_id", id}, {"name", name}, {"key", key}}};
}

/// The join of Clara A and Clara B: agreement goes straight to Commit.
actors::handler_result compare_proposals(const json& payload) {
  for (auto side : {"clara_a", "clara_b"})
    if (!payload.contains(side) || !payload[side].is_object())
      throw actors::handler_failure(std::string("join input '") + side + "' missing");
  const auto& a = payload["clara_a"];
  const auto& b = payload["clara_b"];
  auto da = checked_domain(a, "clara_a");
  auto db = checked_domain(b, "clara_b");
  json out{{"name", required_string(a, "name")},
           {"key", a.value("key", "")},
           {"entity_id", a.value("entity_id", "")}};
  if (da == db) {
    out["domain"] = da;
    return {"agree", out};
  }
  out["proposal_a"] = da;
  out["proposal_b"] = db;
  return {"disagree", out};
}

/// Commit: the is_a relation that the registry keeps.
actors::handler_result commit(const json& payload) {
  auto name = required_string(payload, "name");
  auto domain = checked_domain(payload, "commit");
  return {"committed",
          {{"name", name},
           {"key", payload.value("key", "")},
           {"entity_id", payload.value("entity_id", "")},
           {"relation", "is_a"},
           {"domain", domain}}};
}

} // namespace

const std::vector<std::string>& domains() {
  static const std::vector<std::string> all{"business_operations",      "compliance_and_risk",
                                            "corporate_culture",        "data_and_analytics",
                                            "people_and_communication", "project_and_product",
                                            "specialized_knowledge",    "technology"};
  return all;
}

void register_builtins(actors::builtin_registry& registry) {
  registry.add("owl.create_entity", {"created"}, create_entity);
  registry.add("owl.compare_proposals", {"agree", "disagree"}, compare_proposals);
  registry.add("owl.commit", {"committed"}, commit);
}

} // namespace turing::examples::owl
