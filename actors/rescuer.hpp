// The rescuer: returns messages whose lease expired (their node stopped:
// crash, SIGKILL, OOM, partition) to ready, once at start and on a timer.
#pragma once

#include "actors/actor_directory.hpp"
#include "persistence/outage_log.hpp"
#include "persistence/types.hpp"

#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <memory>
#include <string>

namespace turing::actors {

struct rescuer_options {
  std::string node;
  persistence::millis interval{5000};
  /// Lost attempts a message may have before it is dead-lettered.
  int max_lost = persistence::default_max_lost_attempts;
  /// Where database failures are told (first, summaries, end); none in the
  /// simulation, where each failure is a warning of its own.
  std::shared_ptr<persistence::outage_log> outage;
};

/// How it works: a timer message to itself, never a thread that could be
/// blocked by the work it watches (field report incident 2). Each pass is
/// logged, also when it finds nothing, so a silent rescuer is visible. Any
/// number of nodes may rescue at once: rows are taken with SKIP LOCKED.
caf::behavior rescuer(caf::event_based_actor* self, rescuer_options options,
                      std::shared_ptr<actor_directory> dir);

} // namespace turing::actors
