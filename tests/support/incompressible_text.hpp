// Text of a given size that neither lz4 nor pglz shrinks much, for tests of
// large payloads whose stored size must stay near their length.
#pragma once

#include <cstdint>
#include <string>

namespace turing::testing {

/// Printable ASCII from a xorshift sequence; no quote or backslash, so it can
/// be written into JSON text as it is. The same seed gives the same text.
inline std::string incompressible_text(std::size_t size,
                                       std::uint64_t seed = 88172645463325252ull) {
  std::string text;
  text.reserve(size);
  std::uint64_t x = seed;
  while (text.size() < size) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    char c = static_cast<char>(' ' + 1 + x % 94);
    text += (c == '"' || c == '\\') ? 'q' : c;
  }
  return text;
}

} // namespace turing::testing
