// The simulated models' answer rules (see answer_rules.hpp).
#include "answer_rules.hpp"

#include "domain_keywords.hpp"
#include "skill_text.hpp"
#include "stable_hash.hpp"

#include <algorithm>
#include <cmath>

namespace turing::model_sim {

namespace {

using nlohmann::json;

json error_reply(std::string message) {
  return json{{"error", std::move(message)}};
}

double two_decimals(double x) {
  return std::round(x * 100.0) / 100.0;
}

std::string join(const std::vector<std::string_view>& parts) {
  std::string out;
  for (auto p : parts) {
    if (!out.empty())
      out += ", ";
    out += p;
  }
  return out.empty() ? "none" : out;
}

// Lowercased and trimmed, so "Technology " still names a domain.
std::string as_domain(const std::string& text) {
  std::string out;
  for (char c : collapse_whitespace(text))
    out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return out;
}

} // namespace

classification answer_rules::classify(std::string_view skill, const model_traits& model) const {
  auto ranking = rank_domains(skill);
  const auto& best = ranking[0];
  auto runner_up = ranking[1].score > 0 ? ranking[1].domain : confusable_neighbour(best.domain);
  auto key = dedupe_key(skill);
  bool biased = unit_draw(hash_of("bias", model.name, key)) < model.bias;
  // Confidence follows the margin between the two best scores, with a little
  // per-model jitter so two models never report identical numbers.
  double confidence = 0.35;
  if (best.score > 0) {
    double margin = double(best.score - ranking[1].score) / best.score;
    confidence = biased ? 0.45 + 0.2 * double(ranking[1].score) / best.score : 0.6 + 0.35 * margin;
  }
  confidence += (unit_draw(hash_of("confidence", model.name, key)) - 0.5) * 0.06;
  confidence = two_decimals(std::clamp(confidence, 0.05, 0.99));
  return classification{std::string{biased ? runner_up : best.domain}, confidence, biased};
}

json answer_rules::answer(const prompt_fields& fields, const model_traits& model) const {
  if (!fields.task)
    return error_reply("the prompt has no 'task:' line; expected dedupe, classify or arbitrate");
  auto task = as_domain(*fields.task);
  if (task != "dedupe" && task != "classify" && task != "arbitrate")
    return error_reply("unknown task '" + *fields.task +
                       "'; expected dedupe, classify or arbitrate");
  if (!fields.skill)
    return error_reply("the prompt has no 'skill:' line; I cannot " + task + " nothing");
  if (task == "dedupe")
    return dedupe(fields);
  if (task == "arbitrate")
    return arbitrate(fields);
  auto verdict = classify(*fields.skill, model);
  return json{{"domain", verdict.domain}, {"confidence", verdict.confidence}};
}

json answer_rules::dedupe(const prompt_fields& fields) const {
  if (const auto* canonical = registry_.find(*fields.skill))
    return json{{"verdict", "merged"}, {"duplicate_of", *canonical}};
  return json{{"verdict", "passed"}};
}

json answer_rules::arbitrate(const prompt_fields& fields) const {
  if (!fields.proposal_a || !fields.proposal_b)
    return error_reply("arbitration needs both 'proposal_a:' and 'proposal_b:' lines");
  auto a = as_domain(*fields.proposal_a);
  auto b = as_domain(*fields.proposal_b);
  bool a_ok = is_domain(a);
  bool b_ok = is_domain(b);
  if (!a_ok && !b_ok)
    return error_reply("neither proposal '" + *fields.proposal_a + "' nor '" + *fields.proposal_b +
                       "' is one of the eight domains");
  if (!a_ok || !b_ok) {
    auto chosen = a_ok ? a : b;
    auto other = a_ok ? *fields.proposal_b : *fields.proposal_a;
    return json{{"domain", chosen}, {"reason", "'" + other + "' is not a valid domain"}};
  }
  if (a == b)
    return json{{"domain", a}, {"reason", "both proposals agree"}};
  auto ranking = rank_domains(*fields.skill);
  auto position = [&](const std::string& d) {
    return std::find_if(ranking.begin(), ranking.end(),
                        [&](const domain_score& s) { return s.domain == d; });
  };
  auto pa = position(a);
  auto pb = position(b);
  auto win = pa < pb ? pa : pb;
  auto lose = pa < pb ? pb : pa;
  auto reason = "'" + *fields.skill + "' fits " + std::string{win->domain} + " (score " +
                std::to_string(win->score) + ": " + join(win->matched) + ") better than " +
                std::string{lose->domain} + " (score " + std::to_string(lose->score) + ": " +
                join(lose->matched) + ")";
  return json{{"domain", std::string{win->domain}}, {"reason", reason}};
}

} // namespace turing::model_sim
