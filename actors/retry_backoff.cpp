// Exponential backoff with a cap and jitter.
#include "actors/retry_backoff.hpp"

#include <algorithm>
#include <cmath>

namespace turing::actors {

config::millis retry_backoff(const config::retry_policy& policy, int attempt,
                             std::mt19937_64& rng) {
  double base = static_cast<double>(policy.backoff.count()) *
                std::pow(policy.backoff_multiplier, std::max(0, attempt - 1));
  base = std::min(base, static_cast<double>(policy.backoff_max.count()));
  double factor = 1.0;
  if (policy.jitter > 0) {
    std::uniform_real_distribution<double> spread{1.0 - policy.jitter, 1.0 + policy.jitter};
    factor = spread(rng);
  }
  return config::millis{static_cast<int64_t>(std::max(0.0, base * factor))};
}

} // namespace turing::actors
