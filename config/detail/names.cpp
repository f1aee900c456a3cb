// The identifier rule and typo suggestions.
#include "config/detail/names.hpp"

#include <algorithm>
#include <cctype>

namespace turing::config::detail {

namespace {

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

// Optimal string alignment distance: Levenshtein plus adjacent swaps, since
// "concurrnecy" is as common a typo as "concurency". Case is ignored.
std::size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i)
    d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j)
    d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

} // namespace

bool is_valid_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool is_valid_env_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9'))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::optional<std::string> closest(std::string_view word,
                                   const std::vector<std::string>& candidates) {
  // A third of the word, at least one edit and at most three: enough for
  // typos, too little to turn "model" into "mode" suggestions for "x".
  auto limit = std::clamp<std::size_t>(word.size() / 3, 1, 3);
  std::optional<std::string> best;
  auto best_distance = limit + 1;
  for (const auto& c : candidates) {
    auto dist = distance(word, c);
    if (dist < best_distance && dist < std::max(word.size(), c.size())) {
      best = c;
      best_distance = dist;
    }
  }
  return best;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  if (auto c = closest(word, candidates))
    return "; did you mean " + in_quotes(*c) + "?";
  return {};
}

std::string join_names(const std::vector<std::string>& names) {
  if (names.empty())
    return "(none)";
  std::string out;
  for (const auto& n : names) {
    if (!out.empty())
      out += ", ";
    out += n;
  }
  return out;
}

std::string in_quotes(std::string_view name) {
  return "'" + std::string{name} + "'";
}

} // namespace turing::config::detail
