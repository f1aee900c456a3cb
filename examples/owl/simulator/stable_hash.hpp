// Stable hashing and a tiny seeded generator: the simulator's answers, faults
// and latencies must come out the same on every run and every platform, which
// std::hash and the standard distributions do not promise.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace turing::model_sim {

/// FNV-1a over `text`, continuing from `seed` (chain calls to hash tuples).
constexpr std::uint64_t fnv1a(std::string_view text,
                              std::uint64_t seed = 0xcbf29ce484222325ULL) noexcept {
  auto h = seed;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// Hashes several fields with a separator so ("ab", "c") != ("a", "bc").
template <class... Parts> std::uint64_t hash_of(const Parts&... parts) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  ((h = fnv1a(std::string_view{parts}, h), h = fnv1a(std::string_view{"\x1f", 1}, h)), ...);
  return h;
}

/// splitmix64: a well-mixed sequence from any seed, fully specified.
class stable_rng {
public:
  explicit stable_rng(std::uint64_t seed) noexcept : state_(seed) {}

  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  /// Uniform in [0, 1) with 53 bits of precision.
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// Standard normal by Box-Muller (one of the pair; simplicity over speed).
  double normal() noexcept {
    double u1 = uniform();
    double u2 = uniform();
    if (u1 < 1e-300)
      u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

private:
  std::uint64_t state_;
};

/// A deterministic number in [0, 1) for a key: the same key, the same draw.
inline double unit_draw(std::uint64_t key) noexcept {
  return stable_rng{key}.uniform();
}

} // namespace turing::model_sim
