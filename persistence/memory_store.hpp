// The in-memory store: the same semantics as pg_store, deterministic, on an
// injected clock, for scenario simulation and fast unit tests.
#pragma once

#include "persistence/store.hpp"

#include <functional>
#include <map>
#include <set>

namespace turing::persistence {

/// How it works: plain ordered maps stand in for the tables; each operation
/// validates first and then mutates, so it applies whole or not at all, like
/// a transaction. `now` is read once per operation, as PostgreSQL's now() is
/// fixed per transaction. Single-threaded: the simulation drives it from one
/// actor at a time. The conformance suite holds it to pg_store's behaviour.
class memory_store final : public store {
public:
  using clock_function = std::function<time_point()>;
  using ready_listener = std::function<void(const std::string& stage)>;

  explicit memory_store(clock_function clock = [] { return wall_clock::now(); });

  /// Called after an operation made work ready in a stage (pg_store's NOTIFY).
  void on_ready(ready_listener listener) { listener_ = std::move(listener); }

  /// While false, every operation throws store_error(unavailable): a
  /// simulated database outage.
  void set_available(bool available) { available_ = available; }
  bool available() const { return available_; }

  enqueue_result enqueue(const enqueue_request& request) override;
  std::vector<claimed_message> claim(const claim_request& request) override;
  std::vector<lease> heartbeat(const std::string& node, const std::vector<lease>& leases,
                               millis lease_ttl) override;
  std::vector<fence_result> complete(const std::vector<completion>& batch) override;
  completion_outcome complete_claiming(const std::vector<completion>& batch,
                                       const handoff_claims& claims) override;
  std::vector<fence_result> fail(const std::vector<failure>& batch) override;
  std::vector<fence_result> release(const std::string& node,
                                    const std::vector<lease>& leases) override;
  std::vector<rescued_message> rescue_expired(const std::string& rescuer_node,
                                              int max_lost = default_max_lost_attempts) override;
  std::vector<rescued_message> rescue_node(const std::string& dead_node,
                                           const std::string& rescuer_node,
                                           int max_lost = default_max_lost_attempts) override;

  prune_result prune_history(millis older_than, int limit) override;
  void report_node(const node_report& report) override;
  std::vector<node_report> nodes() override;
  std::vector<stage_counts> counts() override;
  /// counts() of the stages with ready, delayed, running or dead messages,
  /// as pg_store answers it from its partial indexes.
  std::vector<stage_counts> live_counts() override;
  std::optional<run_status> run(int64_t run_id) override;
  std::vector<run_status> runs(bool unfinished_only) override;
  std::vector<sink_count> sink_counts(std::optional<int64_t> run_id) override;
  std::vector<item_record> items(int64_t run_id) override;
  std::vector<attempt_record> attempts(std::optional<int64_t> run_id) override;
  std::vector<sink_count> result_counts(int64_t run_id, const std::string& sink,
                                        const std::string& field) override;
  std::vector<std::string> check_invariants() override;
  std::optional<time_point> next_available_at(const std::string& stage) override;
  std::vector<millis> recent_latencies(const std::string& stage, int limit, millis window) override;

  std::vector<dead_message> dead_messages(const dead_filter& filter, int limit) override;
  operator_result retry_dead(const dead_filter& filter, const std::string& by) override;
  operator_result purge_dead(const dead_filter& filter, const std::string& by) override;
  operator_result cancel_run(int64_t run_id, const std::string& by) override;
  std::vector<operator_action> operator_log(int limit) override;

private:
  struct message_row {
    int64_t id = 0, run_id = 0, item_id = 0;
    std::string stage;
    json payload;
    message_state state = message_state::ready;
    int attempt = 0, max_attempts = 1;
    int lost = 0; ///< attempts lost with their node: not counted against max_attempts
    time_point available_at;
    int64_t epoch = 0;
    int64_t failed_epoch = -1;        ///< the epoch of its last applied failure
    std::optional<int64_t> parent_id; ///< the message whose completion created it
    std::optional<std::string> owner_node;
    std::optional<time_point> lease_expires_at, heartbeat_at, started_at, finished_at;
    std::string outcome, last_error;
    json output;
    std::optional<time_point> purged_at; ///< a dead letter an operator purged
    std::string purged_by;
  };
  struct item_row {
    int64_t id = 0, run_id = 0;
    std::optional<std::string> key;
    json payload;
    int open_branches = 0;
    std::optional<std::string> sink;
    json result;
    time_point created_at;
    std::optional<time_point> finished_at;
  };
  struct join_row {
    std::vector<std::string> expected;
    json inputs = json::object();
    bool fired = false;
  };

  void check_available(const char* what) const;
  /// A running message as claim() returns it.
  static claimed_message claimed_of(const message_row& m, time_point now);
  void append_attempt(const message_row& m, int attempt, int64_t epoch, const std::string& node,
                      time_point started, time_point now, attempt_result result,
                      const std::string& outcome, const std::string& model, const json& output,
                      const std::string& error, int64_t tokens = -1);
  template <class Effects> void apply_item_effects(const Effects& effects, time_point now);
  std::vector<rescued_message>
  rescue_where(int max_lost, const std::function<bool(const message_row&)>& match,
               const std::function<std::string(const std::string& owner)>& reason_for);
  void notify(const std::set<std::string>& stages);
  /// A dead letter (dead, not purged) that `filter` matches.
  bool is_dead_letter(const message_row& m, const dead_filter& filter) const;
  void record_action(const std::string& by, const char* action, const json& filter,
                     const std::vector<int64_t>& ids, time_point now);
  /// The run with its dead items counted (they are not kept per run).
  run_status with_dead_items(const run_status& run) const;

  clock_function clock_;
  ready_listener listener_;
  bool available_ = true;
  int64_t next_run_id_ = 1, next_item_id_ = 1, next_message_id_ = 1, next_attempt_id_ = 1;
  std::map<int64_t, run_status> runs_;
  std::map<int64_t, item_row> items_;
  std::map<std::string, int64_t> item_keys_;
  std::map<int64_t, message_row> messages_;
  std::map<std::pair<int64_t, std::string>, join_row> joins_;
  std::vector<attempt_record> attempts_;
  std::map<std::string, node_report> nodes_;
  /// Done messages removed by retention, per stage: counts() still counts them.
  std::map<std::string, int64_t> pruned_done_;
  std::vector<operator_action> operator_actions_;
};

} // namespace turing::persistence
