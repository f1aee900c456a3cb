// Byte sizes: parsing "16MB"-style text and formatting sizes for messages.
#include "config/byte_size.hpp"

#include <cctype>
#include <cstdio>

namespace turing::config {

std::optional<std::uint64_t> parse_byte_size(std::string_view text) {
  std::size_t i = 0;
  std::uint64_t value = 0;
  constexpr std::uint64_t limit = std::uint64_t{1} << 62;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    value = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
    if (value > limit)
      return std::nullopt;
    ++i;
  }
  if (i == 0)
    return std::nullopt;
  if (i < text.size() && text[i] == ' ')
    ++i;
  std::string unit;
  for (; i < text.size(); ++i)
    unit += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
  int shift = -1;
  if (unit.empty() || unit == "B")
    shift = 0;
  else if (unit == "KB" || unit == "KIB")
    shift = 10;
  else if (unit == "MB" || unit == "MIB")
    shift = 20;
  else if (unit == "GB" || unit == "GIB")
    shift = 30;
  if (shift < 0 || value > (limit >> shift))
    return std::nullopt;
  return value << shift;
}

std::string format_byte_size(std::uint64_t bytes) {
  static const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  if (bytes < 1024)
    return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v == static_cast<double>(static_cast<std::uint64_t>(v)))
    std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

} // namespace turing::config
