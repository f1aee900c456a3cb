// The node runtime: builds one node's supervision tree for a pipeline config
// (persistence, models, pipeline → one supervisor per stage) and registers
// every actor it starts in the node's directory.
#pragma once

#include "actors/actor_directory.hpp"
#include "actors/builtin_registry.hpp"
#include "actors/model_endpoint.hpp"
#include "actors/stage_pump.hpp"
#include "actors/store_actor.hpp"
#include "config/pipeline_config.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <memory>
#include <string>

namespace turing::actors {

struct node_options {
  std::shared_ptr<const config::pipeline_config> pipeline;
  std::shared_ptr<const builtin_registry> builtins;
  std::string node;
  store_factory make_store;
  size_t store_workers = 4;
  /// Real runs: store workers and executors on their own threads. The
  /// deterministic simulation turns this off.
  bool detached = true;
  /// LISTEN/NOTIFY source; empty to rely on polling alone.
  std::string listen_connection_string;
  /// Receives the tree's supervision events (the node monitor).
  caf::actor observer;
  /// Replaces the HTTP call of every model endpoint (simulation); empty for
  /// real calls.
  model_caller simulated_models;
  /// Replaces the child process of every script stage (simulation); empty
  /// for real processes.
  script_caller simulated_scripts;
  /// Seeds every pump's retry jitter (plus the stage's index); 0 = random.
  uint64_t random_seed = 0;
  /// The wall clock of the audit times the node reports; the simulation's
  /// follows virtual time.
  std::function<persistence::time_point()> wall_clock = [] {
    return persistence::wall_clock::now();
  };
  /// Where database outages are told, shared by the store workers, the
  /// ready listener, the lease keeper, the rescuer and the pumps; none in the
  /// simulation (each failure is then a warning of its own).
  std::shared_ptr<persistence::outage_log> outage;
};

/// How it works:
///
///     root (one_for_one)
///     ├── persistence (one_for_one): store, writer, liveness_store, ready_listener,
///     │   lease_keeper, rescuer, history_pruner
///     ├── models (one_for_one): model/<name> per configured model
///     └── pipeline (one_for_one): stage/<name> supervisors, temporary
///         └── stage/<name> (one_for_one): pump/<name>
///
/// A pump that crashes is restarted by its stage supervisor (its messages
/// are returned by the lease keeper). A stage supervisor that exceeds its
/// intensity gives up; being a temporary child, it is not restarted, and the
/// node monitor reports the stage failed while the others run on. Only the
/// root giving up ends the node.
/// Scheduler settings for a node: work sharing (idle workers sleep on a
/// condition variable) rather than CAF's default work stealing, whose idle
/// workers poll and would take the CPU from PostgreSQL, scripts and models
/// on a small machine; the workers only route messages, so a few suffice.
void configure_scheduler(caf::actor_system_config& cfg);

caf::actor spawn_node(caf::actor_system& sys, const node_options& options,
                      std::shared_ptr<actor_directory> dir);

} // namespace turing::actors
