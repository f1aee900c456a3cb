// The one exception a store throws: an operation that could not be carried out
// at all. Expected outcomes (a stale epoch, a duplicate key) are return values.
#pragma once

#include <stdexcept>
#include <string>

namespace turing::persistence {

enum class store_errc {
  unavailable,      ///< cannot reach the database; retry later
  schema,           ///< migrations missing or failed
  invalid_argument, ///< the caller asked for something impossible
  refused,          ///< the database refused the data itself (a bad byte, a constraint):
                    ///< retrying the same batch will never help
  internal,         ///< anything else the database refused
};

class store_error : public std::runtime_error {
public:
  store_error(store_errc code, const std::string& what) : std::runtime_error(what), code_(code) {}
  store_errc code() const noexcept { return code_; }

private:
  store_errc code_;
};

} // namespace turing::persistence
