// The node monitor: watches the work (per-stage census from the store) and
// the supervision tree, and says so in the logs: stages that run dry, stages
// that failed, progress, and a drained pipeline.
#pragma once

#include "actors/actor_directory.hpp"
#include "config/pipeline_config.hpp"
#include "persistence/outage_log.hpp"
#include "persistence/types.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <functional>
#include <memory>

namespace turing::actors {

struct node_monitor_options {
  /// This node's name, as it reports itself in turing.nodes.
  std::string node;
  std::shared_ptr<const config::pipeline_config> pipeline;
  std::shared_ptr<actor_directory> dir;
  persistence::millis census_interval{1000};
  /// A census starts no sooner than this many times its last duration (10 s
  /// at most) after the last one started: counting a million ready rows
  /// takes PostgreSQL about a second, which every second would be a
  /// database core; paced, a census takes at most a tenth of one.
  int census_pace = 10;
  /// The `progress:` log line; 0: none (a terminal shows a progress bar instead).
  persistence::millis progress_interval{10000};
  /// How often the node writes its report (turing.nodes.seen_at is its
  /// heartbeat there); distributed mode reports more often, since peers
  /// judge a silent node by it.
  persistence::millis report_interval{5000};
  /// Consecutive censuses without work before a stage is reported dry.
  int dry_after = 5;
  /// Receives pipeline_drained each time no live stage has work (the
  /// --until-drained exit); invalid for none.
  caf::actor drained_listener;
  /// The wall clock of the times it reports (the simulation's is virtual).
  std::function<persistence::time_point()> wall_clock = [] {
    return persistence::wall_clock::now();
  };
  /// Where database failures are told (first, summaries, end); none in the
  /// simulation, where each failure is a warning of its own.
  std::shared_ptr<persistence::outage_log> outage;
  /// Told (on the monitor's thread) when a stage's supervisor gave up: the
  /// HTTP listener's /healthz; may be empty.
  std::function<void(const std::string& stage, const std::string& reason)> on_stage_failed;
};

/// How it works: it is the supervision tree's observer (child_started,
/// child_exited, supervisor_gave_up) and polls a cheap census of the store.
/// A stage whose supervisor gave up is failed: logged once, listed, and its
/// leftover work is not waited for. A stage going from work to none logs
/// that it ran dry (field report incident 14); the whole pipeline with no
/// work anywhere logs that it drained.
caf::actor spawn_node_monitor(caf::actor_system& sys, node_monitor_options options);

} // namespace turing::actors
