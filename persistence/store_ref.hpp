// A store that forwards every call to another one: lets several store
// workers share one memory_store in a simulation (each worker owns a store).
#pragma once

#include "persistence/store.hpp"

namespace turing::persistence {

class store_ref final : public store {
public:
  explicit store_ref(store& target) : target_(target) {}

  enqueue_result enqueue(const enqueue_request& r) override { return target_.enqueue(r); }
  enqueue_result enqueue_all(const enqueue_request& r, item_source& items) override {
    return target_.enqueue_all(r, items);
  }
  std::vector<claimed_message> claim(const claim_request& r) override { return target_.claim(r); }
  std::vector<lease> heartbeat(const std::string& node, const std::vector<lease>& leases,
                               millis ttl) override {
    return target_.heartbeat(node, leases, ttl);
  }
  std::vector<fence_result> complete(const std::vector<completion>& b) override {
    return target_.complete(b);
  }
  completion_outcome complete_claiming(const std::vector<completion>& b,
                                       const handoff_claims& claims) override {
    return target_.complete_claiming(b, claims);
  }
  std::vector<fence_result> fail(const std::vector<failure>& b) override { return target_.fail(b); }
  std::vector<fence_result> release(const std::string& node,
                                    const std::vector<lease>& leases) override {
    return target_.release(node, leases);
  }
  std::vector<rescued_message> rescue_expired(const std::string& node,
                                              int max_lost = default_max_lost_attempts) override {
    return target_.rescue_expired(node, max_lost);
  }
  std::vector<rescued_message> rescue_node(const std::string& dead, const std::string& rescuer,
                                           int max_lost = default_max_lost_attempts) override {
    return target_.rescue_node(dead, rescuer, max_lost);
  }
  prune_result prune_history(millis older_than, int limit) override {
    return target_.prune_history(older_than, limit);
  }
  void report_node(const node_report& r) override { target_.report_node(r); }
  std::vector<node_report> nodes() override { return target_.nodes(); }
  std::vector<stage_counts> counts() override { return target_.counts(); }
  std::vector<stage_counts> live_counts() override { return target_.live_counts(); }
  std::optional<run_status> run(int64_t id) override { return target_.run(id); }
  std::vector<run_status> runs(bool unfinished) override { return target_.runs(unfinished); }
  std::vector<sink_count> sink_counts(std::optional<int64_t> id) override {
    return target_.sink_counts(id);
  }
  std::vector<item_record> items(int64_t id) override { return target_.items(id); }
  std::vector<attempt_record> attempts(std::optional<int64_t> id) override {
    return target_.attempts(id);
  }
  std::vector<sink_count> result_counts(int64_t id, const std::string& sink,
                                        const std::string& field) override {
    return target_.result_counts(id, sink, field);
  }
  std::vector<std::string> check_invariants() override { return target_.check_invariants(); }
  std::vector<millis> recent_latencies(const std::string& stage, int limit,
                                       millis window) override {
    return target_.recent_latencies(stage, limit, window);
  }
  std::optional<time_point> next_available_at(const std::string& stage) override {
    return target_.next_available_at(stage);
  }
  std::vector<dead_message> dead_messages(const dead_filter& f, int limit) override {
    return target_.dead_messages(f, limit);
  }
  operator_result retry_dead(const dead_filter& f, const std::string& by) override {
    return target_.retry_dead(f, by);
  }
  operator_result purge_dead(const dead_filter& f, const std::string& by) override {
    return target_.purge_dead(f, by);
  }
  operator_result cancel_run(int64_t run_id, const std::string& by) override {
    return target_.cancel_run(run_id, by);
  }
  std::vector<operator_action> operator_log(int limit) override {
    return target_.operator_log(limit);
  }

private:
  store& target_;
};

} // namespace turing::persistence
