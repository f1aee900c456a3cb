// Ordering of collected config errors.
#include "config/detail/diagnostics.hpp"

#include <algorithm>
#include <tuple>

namespace turing::config::detail {

std::vector<config_error> diagnostics::take() {
  // Stable: two errors on one key keep the order the checks found them in.
  std::stable_sort(errors_.begin(), errors_.end(), [](const auto& x, const auto& y) {
    return std::tie(x.where.line, x.where.column) < std::tie(y.where.line, y.where.column);
  });
  return std::move(errors_);
}

} // namespace turing::config::detail
