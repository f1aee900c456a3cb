// Model availability messages: what a model endpoint tells its node when the
// model's server goes away or comes back, for the log and `turing status`.
#pragma once

#include "messages/store.hpp"

#include <caf/meta/type_name.hpp>

namespace turing {

/// From model/<name> to the node monitor: the model became unavailable
/// (`available` false, with the outage), is still unavailable (a refreshed
/// outage: its error and waiting calls), or is reachable again.
struct model_availability {
  std::string model;
  bool available = true;
  persistence::model_outage outage;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_availability& x) {
  return f(caf::meta::type_name("turing::model_availability"), x.model, x.available, x.outage);
}

} // namespace turing
