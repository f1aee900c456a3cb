// A stage's recent attempt latencies, and the deadline an adaptive timeout
// takes from them: p99 of the window × factor, within [floor, ceiling].
#pragma once

#include "config/pipeline_config.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <vector>

namespace turing::actors {

/// Completed attempts kept per stage: the newest ones, so a model that slows
/// down moves its quantiles within a few hundred calls.
inline constexpr std::size_t latency_window_size = 512;
/// Below this many samples an adaptive timeout stays at its midpoint.
inline constexpr std::size_t min_latency_samples = 20;
/// How far back the attempts table is read (the field report's "last 7 days").
inline constexpr config::millis latency_history_window{7LL * 24 * 3600 * 1000};

class latency_window {
public:
  explicit latency_window(std::size_t capacity = latency_window_size) : capacity_(capacity) {}

  void add(config::millis d) {
    if (ring_.size() < capacity_)
      ring_.push_back(d);
    else
      ring_[next_] = d;
    next_ = (next_ + 1) % capacity_;
    sorted_.clear();
  }

  std::size_t size() const { return ring_.size(); }

  /// Nearest rank: the smallest sample with at least q of them at or below.
  std::optional<config::millis> quantile(double q) const {
    if (ring_.empty())
      return std::nullopt;
    if (sorted_.empty()) {
      sorted_ = ring_;
      std::sort(sorted_.begin(), sorted_.end());
    }
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted_.size())));
    return sorted_[std::min(sorted_.size() - 1, rank == 0 ? 0 : rank - 1)];
  }

private:
  std::size_t capacity_;
  std::vector<config::millis> ring_;
  std::size_t next_ = 0;
  mutable std::vector<config::millis> sorted_; ///< empty: stale
};

/// The rule: p99 × factor, within [floor, ceiling]; the midpoint until the
/// window holds min_latency_samples.
inline config::millis adaptive_deadline(const config::adaptive_timeout& a,
                                        const latency_window& w) {
  if (w.size() < min_latency_samples)
    return a.midpoint();
  auto p99 = static_cast<double>(w.quantile(0.99)->count());
  auto wanted = config::millis{static_cast<int64_t>(std::ceil(p99 * a.factor))};
  return std::clamp(wanted, a.floor, a.ceiling);
}

/// What `turing status` recommends for a fixed timeout: the same rule with
/// the field report's factor 2 (never under 1 s: a deadline of a few
/// milliseconds would turn every hiccup into a timeout), or nothing without
/// enough samples.
inline std::optional<config::millis> recommended_timeout(const latency_window& w) {
  if (w.size() < min_latency_samples)
    return std::nullopt;
  auto twice_p99 = config::millis{
      static_cast<int64_t>(std::ceil(static_cast<double>(w.quantile(0.99)->count()) * 2.0))};
  return std::max(twice_p99, config::millis{1000});
}

} // namespace turing::actors
