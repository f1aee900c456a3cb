// The known-skills registry (see known_skills.hpp).
#include "known_skills.hpp"

#include "skill_text.hpp"

#include <fstream>

namespace turing::model_sim {

void known_skills::add(std::string canonical) {
  auto key = dedupe_key(canonical);
  if (!key.empty())
    by_key_.emplace(std::move(key), std::move(canonical));
}

const std::string* known_skills::find(std::string_view name) const {
  auto i = by_key_.find(dedupe_key(name));
  return i == by_key_.end() ? nullptr : &i->second;
}

std::optional<known_skills> load_known_skills(const std::string& path, std::string& error) {
  std::ifstream in{path};
  if (!in) {
    error = "cannot read known skills file '" + path + "'";
    return std::nullopt;
  }
  known_skills out;
  std::string line;
  while (std::getline(in, line)) {
    auto name = collapse_whitespace(line);
    if (!name.empty() && name.front() != '#')
      out.add(std::move(name));
  }
  return out;
}

} // namespace turing::model_sim
