// The metrics a turing node exports (README "Metrics" lists them).
#include "metrics/node_metrics.hpp"

namespace turing::metrics {

node_metrics::node_metrics(registry& r)
    : registry_(r),
      node_info_(r.make_gauge("turing_node_info", "Always 1; names the node serving these metrics.",
                              {"node"})),
      claimed_(r.make_counter("turing_messages_claimed_total",
                              "Messages this node claimed, by stage.", {"stage"})),
      completed_(r.make_counter("turing_messages_completed_total",
                                "Completions this node wrote and the store applied, by stage.",
                                {"stage"})),
      failed_(r.make_counter("turing_messages_failed_total",
                             "Failed attempts (failed, timeout, crashed) this node wrote and the "
                             "store applied, by stage; retried or dead-lettered.",
                             {"stage"})),
      dead_(r.make_counter("turing_messages_dead_total",
                           "Messages this node dead-lettered (last failed attempt, or lost too "
                           "often and found by its rescuer), by stage.",
                           {"stage"})),
      late_results_(r.make_counter("turing_late_results_total",
                                   "Results that arrived after their lease was lost (recorded, "
                                   "not applied), by stage.",
                                   {"stage"})),
      rescued_(r.make_counter("turing_lease_rescues_total",
                              "Expired leases this node's rescuer returned to ready or "
                              "dead-lettered, by stage.",
                              {"stage"})),
      attempt_seconds_(r.make_histogram("turing_attempt_duration_seconds",
                                        "Duration of completed attempts, by stage.", {"stage"})),
      model_in_flight_(r.make_gauge("turing_model_in_flight",
                                    "Calls of the model running now on this node.", {"model"})),
      model_concurrency_(r.make_gauge("turing_model_concurrency_limit",
                                      "The model's configured concurrency.", {"model"})),
      model_errors_(r.make_counter("turing_model_errors_total",
                                   "Calls of the model that ended in an error (not waits for an "
                                   "outage or a throttle), by model.",
                                   {"model"})),
      model_call_seconds_(r.make_histogram("turing_model_call_duration_seconds",
                                           "Duration of answered model calls, by model.",
                                           {"model"})),
      leases_lost_(r.make_counter("turing_leases_lost_total",
                                  "Leases the lease keeper found lost (rescued by another node) "
                                  "at a heartbeat.")),
      lease_heartbeats_(r.make_counter("turing_lease_heartbeats_total",
                                       "Lease heartbeats written by the lease keeper.")),
      supervisor_restarts_(r.make_counter("turing_supervisor_restarts_total",
                                          "Children restarted, by supervisor.", {"supervisor"})),
      queue_depth_(r.make_gauge("turing_queue_depth",
                                "Messages by stage and state (ready, delayed, running, dead), "
                                "from the node's census of the store.",
                                {"stage", "state"})),
      stage_failed_(r.make_gauge("turing_stage_failed",
                                 "1 when the stage's supervisor gave up on this node.", {"stage"})),
      run_items_done_(r.make_gauge("turing_run_items_done", "Finished items of a run.", {"run"})),
      run_items_total_(r.make_gauge("turing_run_items_total", "Items of a run.", {"run"})) {}

stage_metrics node_metrics::stage(const std::string& name) {
  return {&claimed_.with({name}),        &completed_.with({name}),    &failed_.with({name}),
          &dead_.with({name}),           &late_results_.with({name}), &rescued_.with({name}),
          &attempt_seconds_.with({name})};
}

model_metrics node_metrics::model(const std::string& name) {
  return {&model_in_flight_.with({name}), &model_concurrency_.with({name}),
          &model_errors_.with({name}), &model_call_seconds_.with({name})};
}

counter& node_metrics::supervisor_restarts(const std::string& supervisor) {
  return supervisor_restarts_.with({supervisor});
}

gauge& node_metrics::queue_depth(const std::string& stage, const std::string& state) {
  return queue_depth_.with({stage, state});
}

gauge& node_metrics::stage_failed(const std::string& stage) {
  return stage_failed_.with({stage});
}

gauge& node_metrics::run_items_done(const std::string& run) {
  return run_items_done_.with({run});
}

gauge& node_metrics::run_items_total(const std::string& run) {
  return run_items_total_.with({run});
}

registry& process_registry() {
  static registry r;
  return r;
}

node_metrics& process_metrics() {
  static node_metrics m{process_registry()};
  return m;
}

} // namespace turing::metrics
