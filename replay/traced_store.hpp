// The store every simulated node talks to: forwards to the real store
// (memory or PostgreSQL), writes each decision into the trace, wakes the
// stages that got work, and fails every call during a database outage.
#pragma once

#include "persistence/store.hpp"
#include "replay/sim_world.hpp"

#include <memory>

namespace turing::replay {

class traced_store final : public persistence::store {
public:
  traced_store(std::shared_ptr<sim_world> world, std::unique_ptr<persistence::store> inner)
      : world_(std::move(world)), inner_(std::move(inner)) {}

  persistence::enqueue_result enqueue(const persistence::enqueue_request& request) override;
  std::vector<persistence::claimed_message>
  claim(const persistence::claim_request& request) override;
  std::vector<persistence::lease> heartbeat(const std::string& node,
                                            const std::vector<persistence::lease>& leases,
                                            persistence::millis lease_ttl) override;
  std::vector<persistence::fence_result>
  complete(const std::vector<persistence::completion>& batch) override;
  persistence::completion_outcome
  complete_claiming(const std::vector<persistence::completion>& batch,
                    const persistence::handoff_claims& claims) override;
  std::vector<persistence::fence_result>
  fail(const std::vector<persistence::failure>& batch) override;
  std::vector<persistence::fence_result>
  release(const std::string& node, const std::vector<persistence::lease>& leases) override;
  std::vector<persistence::rescued_message>
  rescue_expired(const std::string& rescuer,
                 int max_lost = persistence::default_max_lost_attempts) override;
  std::vector<persistence::rescued_message>
  rescue_node(const std::string& dead, const std::string& rescuer,
              int max_lost = persistence::default_max_lost_attempts) override;
  persistence::prune_result prune_history(persistence::millis older_than, int limit) override;
  void report_node(const persistence::node_report& report) override;
  std::vector<persistence::node_report> nodes() override;
  std::vector<persistence::stage_counts> counts() override;
  std::vector<persistence::stage_counts> live_counts() override;
  std::optional<persistence::run_status> run(int64_t run_id) override;
  std::vector<persistence::run_status> runs(bool unfinished_only) override;
  std::vector<persistence::sink_count> sink_counts(std::optional<int64_t> run_id) override;
  std::vector<persistence::item_record> items(int64_t run_id) override;
  std::vector<persistence::attempt_record> attempts(std::optional<int64_t> run_id) override;
  std::vector<persistence::sink_count> result_counts(int64_t run_id, const std::string& sink,
                                                     const std::string& field) override;
  std::vector<std::string> check_invariants() override;
  std::optional<persistence::time_point> next_available_at(const std::string& stage) override;
  std::vector<persistence::millis> recent_latencies(const std::string& stage, int limit,
                                                    persistence::millis window) override;
  std::vector<persistence::dead_message> dead_messages(const persistence::dead_filter& filter,
                                                       int limit) override;
  persistence::operator_result retry_dead(const persistence::dead_filter& filter,
                                          const std::string& by) override;
  persistence::operator_result purge_dead(const persistence::dead_filter& filter,
                                          const std::string& by) override;
  persistence::operator_result cancel_run(int64_t run_id, const std::string& by) override;
  std::vector<persistence::operator_action> operator_log(int limit) override;

private:
  /// After a write applied: throws store_error(unavailable) if the timeline
  /// made this call an in-doubt commit.
  void maybe_in_doubt(const char* operation);
  /// Throws store_error(unavailable) during a simulated outage.
  void reachable(const char* operation);

  std::shared_ptr<sim_world> world_;
  std::unique_ptr<persistence::store> inner_;
};

} // namespace turing::replay
