// The history pruner: removes done messages of long-finished items, with
// their attempts, so that the tables (and every scan of them) stay the size
// of the live work plus the retention window (runtime.retain_done).
#pragma once

#include "actors/actor_directory.hpp"
#include "persistence/outage_log.hpp"
#include "persistence/types.hpp"

#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <memory>

namespace turing::actors {

struct history_pruner_options {
  /// Done messages of items finished longer ago than this are removed.
  persistence::millis retain{0};
  /// Between passes; a pass removes batches until one comes back short.
  persistence::millis interval{std::chrono::minutes(10)};
  /// The first pass waits this long: start-up is the busiest time.
  persistence::millis first_pass_after{std::chrono::minutes(1)};
  /// Messages per transaction: short ones, so claims and results that share
  /// the store's connections never wait long behind a pass.
  int batch = 5000;
  std::shared_ptr<persistence::outage_log> outage;
};

/// Timer messages to itself, batches through the store actor one at a
/// time. Several nodes may prune at once: rows are taken with SKIP LOCKED.
caf::behavior history_pruner(caf::event_based_actor* self, history_pruner_options options,
                             std::shared_ptr<actor_directory> dir);

} // namespace turing::actors
