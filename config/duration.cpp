// Parsing and formatting of config durations.
#include "config/duration.hpp"

#include <cstdint>
#include <limits>
#include <utility>

namespace turing::config {

namespace {

struct unit {
  std::string_view suffix;
  std::int64_t ms;
  int rank; // parts must appear in increasing rank: largest unit first
};

// "ms" is tried before "m" so that "250ms" is not read as 250 minutes
// followed by a stray "s".
constexpr unit units[] = {
    {"d", 86'400'000, 0}, {"h", 3'600'000, 1}, {"ms", 1, 4}, {"m", 60'000, 2}, {"s", 1'000, 3}};

} // namespace

std::optional<millis> parse_duration(std::string_view text) {
  if (text.empty())
    return std::nullopt;
  constexpr auto max = std::numeric_limits<std::int64_t>::max();
  std::int64_t total = 0;
  int last_rank = -1;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] < '0' || text[i] > '9')
      return std::nullopt;
    std::int64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      auto digit = text[i] - '0';
      if (n > (max - digit) / 10)
        return std::nullopt;
      n = n * 10 + digit;
      ++i;
    }
    const unit* found = nullptr;
    for (const auto& u : units) {
      if (text.substr(i, u.suffix.size()) == u.suffix) {
        found = &u;
        break;
      }
    }
    if (found == nullptr)
      return std::nullopt;
    i += found->suffix.size();
    if (found->rank <= last_rank)
      return std::nullopt;
    last_rank = found->rank;
    if (n > (max - total) / found->ms)
      return std::nullopt;
    total += n * found->ms;
  }
  return millis{total};
}

std::string format_duration(millis d) {
  auto ms = d.count();
  if (ms == 0)
    return "0s";
  std::string out;
  if (ms < 0) {
    out += '-';
    // Negating the minimum would overflow; it is no realistic duration anyway.
    if (ms == std::numeric_limits<std::int64_t>::min())
      ms = std::numeric_limits<std::int64_t>::max();
    else
      ms = -ms;
  }
  constexpr std::pair<std::int64_t, const char*> parts[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1'000, "s"}, {1, "ms"}};
  for (const auto& [size, suffix] : parts) {
    if (ms >= size) {
      out += std::to_string(ms / size);
      out += suffix;
      ms %= size;
    }
  }
  return out;
}

} // namespace turing::config
