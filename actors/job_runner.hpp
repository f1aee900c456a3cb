// Job actors: one short-lived actor per execution of a builtin or a script,
// on its own thread, reporting to the owner that claimed the message.
#pragma once

#include "actors/builtin_registry.hpp"
#include "actors/script_runner.hpp"
#include "persistence/types.hpp"

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <memory>

namespace turing::actors {

/// Runs `function` on the job's payload, sends execution_succeeded or
/// execution_failed (handler_failure) to `owner`, and exits. Any other
/// exception ends the actor abnormally: its owner monitors it and records
/// the attempt as crashed.
caf::behavior builtin_job(caf::event_based_actor* self, caf::actor owner,
                          std::shared_ptr<const persistence::claimed_message> job,
                          std::string function_name, builtin_function function);

/// Runs the script with the payload on stdin. Sends execution_started with
/// the child's process group first, so the owner can kill it at its deadline.
caf::behavior script_job(caf::event_based_actor* self, caf::actor owner,
                         std::shared_ptr<const persistence::claimed_message> job, script_spec spec);

} // namespace turing::actors
