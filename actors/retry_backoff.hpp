// The delay before a failed message is retried: exponential with a cap and
// jitter, so retries of a shared failure (a model server down) spread out.
#pragma once

#include "config/pipeline_config.hpp"

#include <random>

namespace turing::actors {

/// Backoff after the `attempt`-th attempt failed (attempt >= 1):
/// min(backoff_max, backoff * multiplier^(attempt-1)), times a factor drawn
/// uniformly from [1 - jitter, 1 + jitter], never below zero.
config::millis retry_backoff(const config::retry_policy& policy, int attempt, std::mt19937_64& rng);

} // namespace turing::actors
