// The stage pump: claims a stage's messages and owns each one until its
// result is durable; deadlines, results, crashes and lost leases all arrive
// here as messages and are decided in one place.
#pragma once

#include "actors/actor_directory.hpp"
#include "actors/builtin_registry.hpp"
#include "actors/handoff_room.hpp"
#include "actors/script_runner.hpp"
#include "config/pipeline_config.hpp"
#include "persistence/outage_log.hpp"
#include "persistence/types.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <memory>
#include <string>

namespace turing::actors {

/// Starts one execution of a script stage for `owner`: the returned actor
/// (monitored by the pump) reports execution_started, then
/// execution_succeeded or execution_failed. The default runs the child
/// process on its own thread; a simulation plays a scripted exit instead.
using script_caller =
    std::function<caf::actor(caf::event_based_actor* pump, caf::actor owner,
                             const persistence::claimed_message& job, const script_spec& spec)>;

struct stage_pump_options {
  std::shared_ptr<const config::pipeline_config> pipeline;
  std::string stage;
  std::string node;
  std::shared_ptr<const builtin_registry> builtins;
  std::shared_ptr<actor_directory> dir;
  /// More worker crashes than this within crash_period make the pump give
  /// up (exit abnormally), escalating to the stage supervisor.
  int crash_intensity = 5;
  persistence::millis crash_period{10000};
  /// Replaces the child process of every script execution (simulation);
  /// empty for real processes.
  script_caller simulated_scripts;
  /// Seeds the retry jitter; 0 seeds it from std::random_device. The
  /// simulation fixes it, so a scenario's backoffs repeat exactly.
  uint64_t random_seed = 0;
  /// The wall clock for the audit times it reports (the simulation's is virtual).
  std::function<persistence::time_point()> wall_clock = [] {
    return persistence::wall_clock::now();
  };
  /// Where database failures are told (first, summaries, end); none in the
  /// simulation, where each failure is a warning of its own.
  std::shared_ptr<persistence::outage_log> outage;
  /// The node's handoff rooms: the pump offers its free places there while
  /// its stage has no ready messages left to claim, so the group writer
  /// hands messages to it already claimed. Null: every message is claimed.
  std::shared_ptr<handoff_rooms> rooms;
};

/// How it works (the ownership rule):
/// - It claims up to min(free capacity, claim_batch) messages when woken by
///   a NOTIFY, by its poll timer, or by freed capacity, never more than the
///   stage's concurrency in flight. Every claim is reported to the lease
///   keeper, which keeps the leases alive while this actor lives.
/// - Each execution runs elsewhere (a job actor, a model endpoint); the pump
///   keeps its deadline in a deadline_queue served by one timer message.
///   Whichever of result and deadline is handled first wins; the other finds
///   no entry and is stale. A stale result is still sent to the store, which records
///   it as a late result and applies nothing.
/// - Completions and failures are written in batches: while one batch is in
///   flight the next accumulates (group commit), so batching costs no delay.
///   A lease is given up only once its result is durable.
/// - While a claim finds fewer ready messages than it asked for, its free
///   places are offered in its handoff room: a completion batch of this
///   node that hands off to this stage then inserts up to that many of its
///   messages already claimed (handoffs_claimed), with no claim statement.
///   A claim withdraws the offer first, so ready rows are taken before
///   direct handoffs, and the two never exceed the concurrency.
/// - Drain (graceful stop): no more claims; in-flight work may finish until
///   the grace period ends; what is left is released without consuming an
///   attempt.
/// The pump never blocks: the store, the handlers and the clock all answer
/// with messages.
caf::actor spawn_stage_pump(caf::actor_system& sys, stage_pump_options options);

} // namespace turing::actors
