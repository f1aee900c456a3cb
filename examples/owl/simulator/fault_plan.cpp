// Fault selection (see fault_plan.hpp).
#include "fault_plan.hpp"

#include <array>
#include <utility>

namespace turing::model_sim {

namespace {

constexpr std::array<std::pair<fault, std::string_view>, 7> names = {{
    {fault::none, "none"},
    {fault::hang, "hang"},
    {fault::http_500, "http_500"},
    {fault::garbage, "garbage"},
    {fault::slow, "slow"},
    {fault::crash, "crash"},
    {fault::http_429, "http_429"},
}};

} // namespace

std::string_view to_string(fault f) {
  for (const auto& [value, name] : names)
    if (value == f)
      return name;
  return "none";
}

std::optional<fault> parse_fault(std::string_view text) {
  for (const auto& [value, name] : names)
    if (name == text)
      return value;
  return std::nullopt;
}

double* fault_rates::slot(fault f) {
  switch (f) {
  case fault::hang:
    return &hang;
  case fault::http_500:
    return &http_500;
  case fault::garbage:
    return &garbage;
  case fault::slow:
    return &slow;
  case fault::crash:
    return &crash;
  case fault::http_429:
    return &http_429;
  case fault::none:
    break;
  }
  return nullptr;
}

std::optional<std::string> check_fault_rates(const fault_rates& r) {
  for (double x : {r.hang, r.http_500, r.garbage, r.slow, r.crash, r.http_429})
    if (!(x >= 0.0 && x <= 1.0))
      return "every fault probability must be between 0 and 1";
  if (r.total() > 1.0 + 1e-9)
    return "fault probabilities add up to more than 1";
  return std::nullopt;
}

fault choose_fault(const fault_rates& r, stable_rng& rng, std::optional<fault> forced) {
  // Draw even when forced so the latency that follows does not depend on
  // whether a header was sent.
  double u = rng.uniform();
  if (forced)
    return *forced;
  for (auto [f, p] : {std::pair{fault::hang, r.hang}, std::pair{fault::http_500, r.http_500},
                      std::pair{fault::garbage, r.garbage}, std::pair{fault::slow, r.slow},
                      std::pair{fault::crash, r.crash}, std::pair{fault::http_429, r.http_429}}) {
    if (u < p)
      return f;
    u -= p;
  }
  return fault::none;
}

} // namespace turing::model_sim
