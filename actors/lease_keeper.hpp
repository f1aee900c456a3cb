// The lease keeper: the node's record of which actor owns which running
// message. It heartbeats all of them in one statement, tells an owner when a
// lease was lost, and returns a crashed owner's messages to ready at once.
#pragma once

#include "actors/actor_directory.hpp"
#include "persistence/outage_log.hpp"
#include "persistence/types.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <functional>
#include <memory>
#include <string>

namespace turing::actors {

struct lease_keeper_options {
  std::string node;
  persistence::millis heartbeat_interval{10000};
  persistence::millis lease_ttl{30000};
  /// The wall clock for the audit times it reports (the simulation's is virtual).
  std::function<persistence::time_point()> wall_clock = [] {
    return persistence::wall_clock::now();
  };
  /// Where database failures are told (first, summaries, end); none in the
  /// simulation, where each failure is a warning of its own.
  std::shared_ptr<persistence::outage_log> outage;
};

/// How it works: owners report leases_taken and leases_ended; the keeper
/// monitors each owner. Every heartbeat_interval it extends all leases it
/// holds (liveness, separate from progress: a slow call stays leased as long
/// as its owner lives). A lease the store says is gone is reported to its
/// owner as lease_lost. When an owner dies abnormally, its leases are failed
/// as `crashed` (retried like any failure) right away, not at lease expiry.
/// If the keeper itself dies, heartbeats stop, leases expire and any
/// node's rescuer returns them: nothing is stranded either way.
caf::actor spawn_lease_keeper(caf::actor_system& sys, lease_keeper_options options,
                              std::shared_ptr<actor_directory> dir);

} // namespace turing::actors
