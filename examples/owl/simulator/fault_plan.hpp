// Which failure a simulated call suffers: none, or one of the incidents the
// field report lists (a hung call, a 500, garbage output, a slow call, a
// crashed model server) or back-pressure (a 429 with Retry-After), drawn per request from
// configured probabilities or forced by the X-Sim-Fault header.
#pragma once

#include "stable_hash.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace turing::model_sim {

enum class fault {
  none,
  /// Never answer: hold the connection until the client leaves or we stop.
  hang,
  /// Answer 500 with an error body.
  http_500,
  /// Answer 200 with content that is not JSON.
  garbage,
  /// Answer correctly, 20 times later than usual.
  slow,
  /// Exit the process with status 3 at once.
  crash,
  /// Answer 429 (rate limited) with a Retry-After header, at once.
  http_429,
};

std::string_view to_string(fault f);

/// Parses "hang", "http_500", "garbage", "slow", "crash", "http_429" or "none".
std::optional<fault> parse_fault(std::string_view text);

/// Per-request probabilities; their sum must not exceed 1.
struct fault_rates {
  double hang = 0.0;
  double http_500 = 0.0;
  double garbage = 0.0;
  double slow = 0.0;
  double crash = 0.0;
  double http_429 = 0.0;

  double total() const { return hang + http_500 + garbage + slow + crash + http_429; }
  /// The rate stored for `f` (none has no slot: returns nullptr).
  double* slot(fault f);
};

/// The reason `rates` are unusable (a negative rate, a sum above 1).
std::optional<std::string> check_fault_rates(const fault_rates& rates);

/// `forced` (from the header) wins; otherwise one uniform draw from `rng`
/// falls into the cumulative rates in the order hang, http_500, garbage,
/// slow, crash, http_429, or past them into none.
fault choose_fault(const fault_rates& rates, stable_rng& rng, std::optional<fault> forced);

/// How a "slow" fault stretches the latency.
inline constexpr double slow_factor = 20.0;

} // namespace turing::model_sim
