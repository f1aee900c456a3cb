// The registry of builtin handlers: C++ functions registered by name with the
// outcomes they can produce, so the config validator can check their routes.
#pragma once

#include "config/pipeline_config.hpp"

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace turing::actors {

/// What a handler returns: the outcome label that picks the route, and its output.
struct handler_result {
  std::string outcome;
  nlohmann::json output;
};

/// An expected failure of a builtin (bad input, a missing field): the
/// attempt fails and follows the stage's retry policy. Any other exception
/// is a crash of the worker, which its owner sees and replaces.
class handler_failure : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A builtin runs on a worker thread, never on CAF's scheduler.
using builtin_function = std::function<handler_result(const nlohmann::json& payload)>;

class builtin_registry {
public:
  /// Registers `name`; a second registration of the same name replaces it.
  void add(std::string name, std::vector<std::string> outcomes, builtin_function function);

  /// nullptr when no builtin has that name.
  const builtin_function* find(const std::string& name) const;

  /// Names and outcomes, as the config loader checks them.
  config::builtin_catalog catalog() const;

private:
  struct entry {
    std::vector<std::string> outcomes;
    builtin_function function;
  };
  std::map<std::string, entry> entries_;
};

} // namespace turing::actors
