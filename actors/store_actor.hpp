// The store actor: serves the store's operations as messages, so the actors
// that own messages never block on the database themselves.
#pragma once

#include "persistence/outage_log.hpp"
#include "persistence/store.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <functional>
#include <memory>

namespace turing::actors {

/// The store worker the lease keeper and the rescuer use: a connection of its
/// own, so that heartbeats and rescues never queue behind a bulk write (a
/// batch of large payloads) in the pool that serves the pumps.
inline constexpr const char* liveness_store_name = "liveness_store";

/// Makes one store (one connection) for one store worker.
using store_factory = std::function<std::unique_ptr<persistence::store>()>;

/// How it works: each worker owns one store object and answers claim,
/// completion, failure, heartbeat, release, rescue and census requests with
/// the store's reply, or with an error naming the operation; it never dies
/// of a database error (the next request reconnects). With PostgreSQL the
/// workers are detached (their own threads) and sit behind a round-robin
/// pool; in deterministic simulation one scheduled worker serves a memory
/// store on the test scheduler. With an outage log, an unreachable database
/// is told there (first failure, summaries, end) instead of one warning per
/// failed operation.
caf::actor spawn_store_pool(caf::actor_system& sys, const store_factory& make, size_t workers,
                            bool detached,
                            std::shared_ptr<persistence::outage_log> outage = nullptr);

} // namespace turing::actors
