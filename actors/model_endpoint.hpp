// A model endpoint actor: one per configured model; holds its concurrency
// limit, queues calls beyond it, and runs each call on its own thread.
#pragma once

#include "config/pipeline_config.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

namespace turing::actors {

/// How it works: stages send model_call on behalf of a claimed message; at
/// most `concurrency` calls run at once (capacity is per model, not global:
/// two stages on two models run in parallel), the rest wait in arrival
/// order. A call reports execution_started to its owner when it leaves the
/// queue (the owner's deadline counts from there), then model_answer or
/// execution_failed. An abandoned call frees its slot at once; its thread
/// ends at the HTTP timeout and its answer is stale.
caf::actor spawn_model_endpoint(caf::actor_system& sys, config::model_config model);

} // namespace turing::actors
