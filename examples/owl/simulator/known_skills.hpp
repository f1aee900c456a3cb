// The registry of canonical skills Alma's duplicate check compares against,
// indexed by dedupe_key so spelling variants find their canonical entry.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace turing::model_sim {

class known_skills {
public:
  /// Adds `canonical`; a name whose key is already present is ignored (the
  /// first spelling stays canonical).
  void add(std::string canonical);

  /// The canonical spelling `name` duplicates, or nullptr.
  const std::string* find(std::string_view name) const;

  std::size_t size() const { return by_key_.size(); }

private:
  std::unordered_map<std::string, std::string> by_key_;
};

/// Reads one skill per line; blank lines and lines starting with '#' are
/// skipped, surrounding whitespace trimmed. On failure returns nullopt and
/// sets `error`.
std::optional<known_skills> load_known_skills(const std::string& path, std::string& error);

} // namespace turing::model_sim
