// The eight OWL domains and the keyword table the simulated models classify
// with: a skill name scores each domain by the weighted terms it contains.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace turing::model_sim {

/// The domains, in the order the field report lists them.
inline constexpr std::array<std::string_view, 8> domain_names = {
    "business_operations",      "compliance_and_risk",
    "corporate_culture",        "data_and_analytics",
    "people_and_communication", "project_and_product",
    "specialized_knowledge",    "technology",
};

bool is_domain(std::string_view name);

/// One domain's score for one skill.
struct domain_score {
  std::string_view domain;
  int score = 0;
  /// The table terms that matched, in table order ("power bi", "dashboard*").
  std::vector<std::string_view> matched;
};

/// All eight domains for `skill`, best first. Equal scores keep a fixed order
/// that puts specialized_knowledge first: a name with no known term is most
/// likely a niche field the table does not cover.
std::vector<domain_score> rank_domains(std::string_view skill);

/// The domain a classifier most plausibly confuses `domain` with when the
/// name offers no second candidate (technology <-> data_and_analytics, ...).
std::string_view confusable_neighbour(std::string_view domain);

/// The number of terms in the table (for tests and the startup line).
std::size_t keyword_count();

} // namespace turing::model_sim
