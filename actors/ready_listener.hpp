// The ready listener: LISTENs on turing_ready and tells the pumps of a stage
// that work arrived there, so they claim at once instead of at the next poll.
#pragma once

#include "persistence/outage_log.hpp"

#include <caf/actor_system.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/group.hpp>
#include <memory>
#include <string>

namespace turing::actors {

/// The group a stage's pumps join; work_available{stage} arrives there.
caf::group ready_group(caf::actor_system& sys, const std::string& stage);

/// The group every pump joins: work_available{""} means "check your stage",
/// sent when notifications may have been missed (after a reconnect).
caf::group any_ready_group(caf::actor_system& sys);

/// How it works: the actor owns a thread that holds its own connection and
/// waits for notifications in 250 ms slices, so it notices its actor's end
/// within that time. A broken connection is reopened after a pause, then
/// every pump is told to look, since notifications sent meanwhile are lost.
/// Correctness never depends on it: pumps also poll. Notices of handoffs
/// that `node`'s own writer committed are passed over: that writer woke the
/// node's pumps already (persistence::ready_notice).
caf::behavior ready_listener(caf::event_based_actor* self, std::string connection_string,
                             std::string node,
                             std::shared_ptr<persistence::outage_log> outage = nullptr);

} // namespace turing::actors
