// What a simulated model answers: the deterministic, keyword-driven replies
// to the three OWL tasks (dedupe, classify, arbitrate). Pure: no I/O, no
// clock, no randomness beyond stable hashes of (model, skill).
#pragma once

#include "known_skills.hpp"
#include "prompt_fields.hpp"

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace turing::model_sim {

/// The part of a model's profile that shapes its answers.
struct model_traits {
  std::string name;
  /// Share of classify answers this model turns to its second-best domain,
  /// chosen by a hash of (model, skill): two models with biases 0.05 and
  /// 0.15 disagree on roughly 18 % of skills, as Clara A and B did.
  double bias = 0.0;
};

/// A classify verdict with the evidence behind it.
struct classification {
  std::string domain;
  double confidence = 0.0;
  /// True when the model's bias moved it off the best-scoring domain.
  bool biased = false;
};

/// How it works: the prompt's "task:" line picks the rule. dedupe looks the
/// skill up in the known-skills registry by its dedupe key; classify ranks
/// the eight domains with the keyword table and, for a hash-chosen share of
/// skills set by the model's bias, answers the runner-up; arbitrate takes
/// whichever proposal the keyword ranking puts higher, so arbitration
/// restores the unbiased answer. A prompt without the lines it needs gets
/// {"error": ...} as content, like a confused model, never an HTTP error.
class answer_rules {
public:
  explicit answer_rules(known_skills registry) : registry_(std::move(registry)) {}

  /// The assistant's reply (a JSON object; the server sends it as text).
  nlohmann::json answer(const prompt_fields& fields, const model_traits& model) const;

  /// The classify rule on its own (tests and tools use it directly).
  classification classify(std::string_view skill, const model_traits& model) const;

  /// The dedupe rule: the canonical name `skill` duplicates, or nullptr.
  const std::string* duplicate_of(std::string_view skill) const { return registry_.find(skill); }

  const known_skills& registry() const { return registry_; }

private:
  nlohmann::json dedupe(const prompt_fields& fields) const;
  nlohmann::json arbitrate(const prompt_fields& fields) const;

  known_skills registry_;
};

} // namespace turing::model_sim
