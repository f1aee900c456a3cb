// The registry of builtin handlers.
#include "actors/builtin_registry.hpp"

namespace turing::actors {

void builtin_registry::add(std::string name, std::vector<std::string> outcomes,
                           builtin_function function) {
  entries_[std::move(name)] = entry{std::move(outcomes), std::move(function)};
}

const builtin_function* builtin_registry::find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second.function;
}

config::builtin_catalog builtin_registry::catalog() const {
  config::builtin_catalog out;
  for (const auto& [name, e] : entries_)
    out[name] = e.outcomes;
  return out;
}

} // namespace turing::actors
