// Worker mode of a script stage: one actor per stage owning `concurrency` long-lived children
// that take one JSON line per execution, so the script's start-up is paid once, not per message.
#pragma once

#include "actors/script_worker.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <cstddef>
#include <string>

namespace turing::actors {

/// The pool's name in the node's actor directory.
inline std::string script_pool_name(const std::string& stage) {
  return "script_pool/" + stage;
}

struct script_worker_pool_options {
  std::string stage; ///< for logs
  script_spec spec;
  /// Children, at most: the stage's concurrency.
  int size = 1;
  std::size_t max_reply_line = default_max_reply_line;
};

/// How it works: an owner (the stage pump) sends `script_call{fence, input}`; the pool has
/// `input` written as one JSON line to an idle child's stdin (starting one if a slot is empty,
/// queueing if none is free) and answers the owner like a script job: execution_started{fence,
/// child pid}, then execution_succeeded, or execution_failed (always retryable) when the reply line
/// breaks the contract (judge_script_exit's rules), is not JSON, or the child dies first. A child
/// is started lazily and replaced by the next call after it died or was ended; it is ended after a
/// reply that is not JSON or a line nobody asked for, since its stream can no longer be trusted.
/// Each child has its own I/O thread (a detached actor); nothing here blocks.
///
/// At a deadline the owner kills the child's process group itself and sends
/// execution_abandoned{fence}: the pool then reports nothing more for that fence (a queued call
/// is dropped, a running one's child ended) and the slot gets a new child. A call whose owner
/// dies is abandoned the same way. On exit the pool ends every child.
caf::actor spawn_script_worker_pool(caf::actor_system& sys, script_worker_pool_options options);

} // namespace turing::actors
