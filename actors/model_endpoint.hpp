// A model endpoint actor: one per configured model; holds its concurrency
// limit, queues calls beyond it, and runs each call on its own thread.
#pragma once

#include "config/pipeline_config.hpp"
#include "messages/execution.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <functional>

namespace turing::actors {

/// How it works: stages send model_call on behalf of a claimed message; at
/// most `concurrency` calls run at once (capacity is per model, not global:
/// two stages on two models run in parallel), the rest wait in arrival
/// order. A call reports execution_started to its owner when it leaves the
/// queue (the owner's deadline counts from there), then model_answer or
/// execution_failed. An abandoned call frees its slot at once; its thread
/// ends at the HTTP timeout and its answer is stale.
/// Starts one call for `owner`: the returned actor reports execution_started,
/// then model_answer or execution_failed, and exits. The default makes the
/// HTTP call on its own thread; a simulation answers from a script in
/// virtual time instead.
using model_caller =
    std::function<caf::actor(caf::event_based_actor* endpoint, caf::actor owner,
                             const model_call& call, const config::model_config& model)>;

caf::actor spawn_model_endpoint(caf::actor_system& sys, config::model_config model,
                                model_caller caller = {});

} // namespace turing::actors
