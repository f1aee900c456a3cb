// Model messages beyond the calls themselves: availability (what an endpoint
// tells its node when the model's server goes away or comes back) and the
// GPU turns a model endpoint and its GPU's scheduler trade.
#pragma once

#include "messages/store.hpp"

#include <caf/atom.hpp>
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

/// From model/<name> to the node monitor while calls run (every 2 s, and
/// once when the last ends): each call in flight and its tokens so far, for
/// `turing status` (tokens/s per running call).
struct model_activity {
  std::string model;
  std::vector<persistence::call_in_flight> calls;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_activity& x) {
  return f(caf::meta::type_name("turing::model_activity"), x.model, x.calls);
}

/// From model/<name> to gpu/<gpu>: the model's calls waiting for a slot and
/// running now; sent whenever either changes, and when asked (gpu_sync_atom).
struct gpu_demand {
  std::string model;
  int64_t queued = 0;
  int64_t running = 0;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, gpu_demand& x) {
  return f(caf::meta::type_name("turing::gpu_demand"), x.model, x.queued, x.running);
}

/// From gpu/<gpu> to model/<name>: whether the model may start calls (it is
/// loaded and not draining for another model's turn).
struct gpu_turn {
  std::string model;
  bool may_start = false;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, gpu_turn& x) {
  return f(caf::meta::type_name("turing::gpu_turn"), x.model, x.may_start);
}

/// From model/<name> to gpu/<gpu>: a reply said loading the model took
/// `load_ms` (Ollama's load_duration), which refines the GPU's swap cost.
struct gpu_load_observed {
  std::string model;
  double load_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, gpu_load_observed& x) {
  return f(caf::meta::type_name("turing::gpu_load_observed"), x.model, x.load_ms);
}

/// From gpu/<gpu> to an endpoint (re)starting under it: send your gpu_demand.
using gpu_sync_atom = caf::atom_constant<caf::atom("gpusync")>;

} // namespace turing
