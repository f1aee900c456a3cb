// The metrics a turing node exports, in one process-wide registry: what each
// actor looks up once at start and bumps with a relaxed atomic per event.
#pragma once

#include "metrics/registry.hpp"

#include <string>

namespace turing::metrics {

/// One stage's counters and its latency histogram (label stage="<name>").
struct stage_metrics {
  counter* claimed = nullptr;
  counter* completed = nullptr; ///< completions the store applied
  counter* failed = nullptr;    ///< failed attempts the store applied (dead or retried)
  counter* dead = nullptr;      ///< messages dead-lettered (by their pump or the rescuer)
  counter* late_results = nullptr;
  counter* rescued = nullptr; ///< expired leases the rescuer returned or dead-lettered
  histogram* attempt_seconds = nullptr;
};

/// One model's calls (label model="<name>").
struct model_metrics {
  gauge* in_flight = nullptr;
  gauge* concurrency = nullptr;
  counter* errors = nullptr;
  histogram* call_seconds = nullptr;
};

/// The families of a node. Lookups (stage(), model(), …) lock the family:
/// do them once per actor, not per event.
class node_metrics {
public:
  explicit node_metrics(registry& r);

  stage_metrics stage(const std::string& name);
  model_metrics model(const std::string& name);
  counter& supervisor_restarts(const std::string& supervisor);
  gauge& queue_depth(const std::string& stage, const std::string& state);
  gauge& stage_failed(const std::string& stage);
  gauge& run_items_done(const std::string& run);
  gauge& run_items_total(const std::string& run);
  counter& leases_lost() { return leases_lost_.with({}); }
  counter& lease_heartbeats() { return lease_heartbeats_.with({}); }
  gauge& node_info(const std::string& node) { return node_info_.with({node}); }

  registry& owner() { return registry_; }

private:
  registry& registry_;
  family<gauge>& node_info_;
  family<counter>& claimed_;
  family<counter>& completed_;
  family<counter>& failed_;
  family<counter>& dead_;
  family<counter>& late_results_;
  family<counter>& rescued_;
  family<histogram>& attempt_seconds_;
  family<gauge>& model_in_flight_;
  family<gauge>& model_concurrency_;
  family<counter>& model_errors_;
  family<histogram>& model_call_seconds_;
  family<counter>& leases_lost_;
  family<counter>& lease_heartbeats_;
  family<counter>& supervisor_restarts_;
  family<gauge>& queue_depth_;
  family<gauge>& stage_failed_;
  family<gauge>& run_items_done_;
  family<gauge>& run_items_total_;
};

/// The process's registry and its node metrics: `turing run` serves them at
/// /metrics. Every node of a process (the simulation runs several) adds to
/// the same counters, as Prometheus client libraries' default registries do.
registry& process_registry();
node_metrics& process_metrics();

} // namespace turing::metrics
