// The lognormal latency model (see latency_model.hpp).
#include "latency_model.hpp"

#include <algorithm>
#include <cmath>

namespace turing::model_sim {

namespace {

constexpr double z95 = 1.6448536269514722;
constexpr double day_us = 86'400'000'000.0;

} // namespace

std::optional<std::string> check_latency_profile(const latency_profile& p) {
  if (!(p.p50_ms > 0.0))
    return "p50_ms must be positive";
  if (!(p.p95_ms >= p.p50_ms))
    return "p95_ms must be at least p50_ms";
  if (!(p.max_ms >= p.p50_ms))
    return "max_ms must be at least p50_ms";
  return std::nullopt;
}

latency_model::latency_model(const latency_profile& p, double scale)
    : p50_ms_(p.p50_ms), max_ms_(p.max_ms), scale_(scale), mu_(std::log(p.p50_ms)),
      sigma_((std::log(p.p95_ms) - std::log(p.p50_ms)) / z95) {}

std::chrono::microseconds latency_model::sample(stable_rng& rng) const {
  double ms = std::exp(mu_ + sigma_ * rng.normal());
  ms = std::min(ms, max_ms_) * scale_;
  return std::chrono::microseconds{static_cast<long long>(std::llround(ms * 1000.0))};
}

std::chrono::microseconds slowed_down(std::chrono::microseconds latency, double slowdown,
                                      std::uint64_t earlier_calls) {
  if (!(slowdown > 0.0))
    return latency;
  double factor = 1.0 + slowdown * static_cast<double>(earlier_calls) / 1000.0;
  auto base = static_cast<double>(latency.count());
  double us = std::min(base * factor, std::max(base, day_us));
  return std::chrono::microseconds{static_cast<long long>(std::llround(us))};
}

} // namespace turing::model_sim
