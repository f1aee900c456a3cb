// How long a simulated model takes: a lognormal fitted to a p50 and a p95
// (LLM call times are long-tailed), scaled down for demos and clamped.
#pragma once

#include "stable_hash.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace turing::model_sim {

/// Real-world figures in milliseconds, as the field report measures them.
struct latency_profile {
  double p50_ms = 12'000.0;
  double p95_ms = 48'800.0;
  double max_ms = 600'000.0;
};

/// The reason `profile` cannot be fitted (p50 <= 0, p95 < p50, max < p50).
std::optional<std::string> check_latency_profile(const latency_profile& profile);

/// How it works: ln(latency) ~ Normal(mu, sigma) with mu = ln(p50) and
/// sigma = (ln(p95) - ln(p50)) / 1.6449 (z of the 95th percentile), so the
/// fitted distribution reproduces both percentiles. A draw is multiplied by
/// `scale` (1/400 turns a 12 s call into 30 ms) and clamped to max * scale.
class latency_model {
public:
  latency_model(const latency_profile& profile, double scale);

  /// One latency, drawn from `rng`.
  std::chrono::microseconds sample(stable_rng& rng) const;

  /// The scaled median and clamp, for logs.
  double scaled_p50_ms() const { return p50_ms_ * scale_; }
  double scaled_max_ms() const { return max_ms_ * scale_; }

private:
  double p50_ms_;
  double max_ms_;
  double scale_;
  double mu_;
  double sigma_;
};

/// A model that slows down as it serves (a leak, a fragmenting cache, a
/// throttling GPU): `latency` times (1 + slowdown × earlier_calls / 1000),
/// so slowdown 0.5 makes the 1,001st call 1.5 times and the 2,001st twice as
/// slow as the first, and 0 changes nothing. Counting calls rather than
/// minutes keeps a run reproducible. Capped at a day (or `latency`, if
/// longer) so that no slowdown, however large, overflows the microseconds.
std::chrono::microseconds slowed_down(std::chrono::microseconds latency, double slowdown,
                                      std::uint64_t earlier_calls);

} // namespace turing::model_sim
