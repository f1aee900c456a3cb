// The traced store: one trace line per decision the store took, in the
// order it took them, with virtual timestamps and ids.
#include "replay/traced_store.hpp"

#include "config/duration.hpp"

namespace turing::replay {

using namespace persistence;

void traced_store::reachable(const char* operation) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  if (!world_->database_down())
    return;
  if (world_->refused.insert(operation).second)
    world_->log(std::string("database down: ") + operation + " refused");
  throw store_error(store_errc::unavailable,
                    std::string("database unavailable (simulated outage): ") + operation);
}

void traced_store::maybe_in_doubt(const char* operation) {
  auto it = world_->in_doubt.find(operation);
  if (it == world_->in_doubt.end() || it->second <= 0)
    return;
  --it->second;
  world_->log(std::string("in-doubt commit: ") + operation +
              " committed, the caller is told the connection was lost");
  throw store_error(store_errc::unavailable,
                    std::string(operation) +
                        ": connection lost during commit; outcome unknown (simulated)");
}

enqueue_result traced_store::enqueue(const enqueue_request& request) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("enqueue");
  auto r = inner_->enqueue(request);
  for (const auto& item : inner_->items(r.run_id))
    if (item.key)
      world_->item_keys[item.id] = *item.key;
  world_->log("enqueue: run " + std::to_string(r.run_id) + ", stage " + request.stage + ": " +
              std::to_string(r.enqueued) + " new item(s), " + std::to_string(r.duplicates) +
              " duplicate(s) skipped");
  if (r.enqueued > 0 && world_->notify_ready)
    world_->notify_ready(request.stage);
  return r;
}

std::vector<claimed_message> traced_store::claim(const claim_request& request) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("claim");
  auto claimed = inner_->claim(request);
  for (const auto& m : claimed) {
    world_->messages[m.id] = {m.stage, m.item_id, m.attempt, m.max_attempts, world_->elapsed()};
    world_->log(request.node + " claims " + world_->describe(m.id) + ", epoch " +
                std::to_string(m.epoch));
  }
  maybe_in_doubt("claim");
  return claimed;
}

std::vector<lease> traced_store::heartbeat(const std::string& node,
                                           const std::vector<lease>& leases, millis lease_ttl) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("heartbeat");
  auto lost = inner_->heartbeat(node, leases, lease_ttl);
  for (const auto& l : lost)
    world_->log("heartbeat of " + node + ": lease of " + world_->describe(l.message_id) +
                ", epoch " + std::to_string(l.epoch) + " is lost");
  maybe_in_doubt("heartbeat");
  return lost;
}

std::vector<fence_result> traced_store::complete(const std::vector<completion>& batch) {
  return complete_claiming(batch, {}).results;
}

completion_outcome traced_store::complete_claiming(const std::vector<completion>& batch,
                                                   const handoff_claims& claims) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("complete");
  auto outcome = inner_->complete_claiming(batch, claims);
  const auto& results = outcome.results;
  for (size_t i = 0; i < batch.size() && i < results.size(); ++i) {
    const auto& c = batch[i];
    bool applied = results[i] == fence_result::applied;
    std::string targets;
    for (const auto& d : c.deliveries)
      targets += (targets.empty() ? "" : ", ") + d.target;
    world_->log(c.node + " completes " + world_->describe(c.fence.message_id) + ", epoch " +
                std::to_string(c.fence.epoch) + " -> " + c.outcome + ": " +
                (applied ? "applied" + (targets.empty() ? "" : ", delivered to " + targets)
                         : std::string("stale, recorded as a late result, not applied")));
    if (applied && world_->notify_ready)
      for (const auto& d : c.deliveries)
        if (d.type != delivery::kind::sink)
          world_->notify_ready(d.target);
  }
  for (const auto& m : outcome.claimed) {
    world_->messages[m.id] = {m.stage, m.item_id, m.attempt, m.max_attempts, world_->elapsed()};
    world_->log(claims.node + " is handed " + world_->describe(m.id) + ", epoch " +
                std::to_string(m.epoch) + " already claimed");
  }
  maybe_in_doubt("complete");
  return outcome;
}

std::vector<fence_result> traced_store::fail(const std::vector<failure>& batch) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("fail");
  auto results = inner_->fail(batch);
  for (size_t i = 0; i < batch.size() && i < results.size(); ++i) {
    const auto& f = batch[i];
    bool applied = results[i] == fence_result::applied;
    auto info = world_->messages.find(f.fence.message_id);
    bool last = !f.retryable || (info != world_->messages.end() &&
                                 info->second.attempt >= info->second.max_attempts);
    world_->log(f.node + " fails " + world_->describe(f.fence.message_id) + ", epoch " +
                std::to_string(f.fence.epoch) + " (" + to_string(f.result) + ": " + f.error +
                "): " +
                (!applied ? std::string("stale, recorded as a late result, not applied")
                 : last   ? std::string("applied, dead-lettered")
                          : "applied, retry in " + config::format_duration(f.retry_after)));
    if (applied && !last && world_->notify_ready && info != world_->messages.end())
      world_->notify_ready(info->second.stage);
  }
  maybe_in_doubt("fail");
  return results;
}

std::vector<fence_result> traced_store::release(const std::string& node,
                                                const std::vector<lease>& leases) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("release");
  auto results = inner_->release(node, leases);
  for (size_t i = 0; i < leases.size() && i < results.size(); ++i) {
    world_->log(node + " releases " + world_->describe(leases[i].message_id) + ", epoch " +
                std::to_string(leases[i].epoch) + ": " +
                (results[i] == fence_result::applied ? "back to ready" : "stale"));
    auto info = world_->messages.find(leases[i].message_id);
    if (world_->notify_ready && info != world_->messages.end())
      world_->notify_ready(info->second.stage);
  }
  maybe_in_doubt("release");
  return results;
}

namespace {

void log_rescued(sim_world& world, const std::vector<rescued_message>& rescued,
                 const std::string& rescuer, const char* why) {
  for (const auto& r : rescued) {
    world.log("rescuer on " + rescuer + ": " + world.describe(r.message_id) + " of " +
              r.previous_owner + " " + why + " -> " + (r.dead ? "dead" : "ready"));
    if (!r.dead && world.notify_ready)
      world.notify_ready(r.stage);
  }
}

} // namespace

std::vector<rescued_message> traced_store::rescue_expired(const std::string& rescuer,
                                                          int max_lost) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("rescue_expired");
  auto rescued = inner_->rescue_expired(rescuer, max_lost);
  log_rescued(*world_, rescued, rescuer, "(lease expired)");
  return rescued;
}

std::vector<rescued_message> traced_store::rescue_node(const std::string& dead,
                                                       const std::string& rescuer, int max_lost) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("rescue_node");
  auto rescued = inner_->rescue_node(dead, rescuer, max_lost);
  log_rescued(*world_, rescued, rescuer, "(its node is gone)");
  return rescued;
}

prune_result traced_store::prune_history(millis older_than, int limit) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("prune_history");
  auto pruned = inner_->prune_history(older_than, limit);
  if (pruned.messages > 0)
    world_->log("retention removed " + std::to_string(pruned.messages) + " done message(s) and " +
                std::to_string(pruned.attempts) + " attempt(s) finished over " +
                config::format_duration(older_than) + " ago");
  return pruned;
}

void traced_store::report_node(const node_report& report) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("report_node");
  inner_->report_node(report);
}

std::vector<node_report> traced_store::nodes() {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("nodes");
  return inner_->nodes();
}

std::vector<stage_counts> traced_store::counts() {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("counts");
  return inner_->counts();
}

std::vector<stage_counts> traced_store::live_counts() {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("counts");
  return inner_->live_counts();
}

std::optional<run_status> traced_store::run(int64_t run_id) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("run");
  return inner_->run(run_id);
}

std::vector<run_status> traced_store::runs(bool unfinished_only) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("runs");
  return inner_->runs(unfinished_only);
}

std::vector<sink_count> traced_store::sink_counts(std::optional<int64_t> run_id) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("sink_counts");
  return inner_->sink_counts(run_id);
}

std::vector<item_record> traced_store::items(int64_t run_id) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("items");
  return inner_->items(run_id);
}

std::vector<attempt_record> traced_store::attempts(std::optional<int64_t> run_id) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("attempts");
  return inner_->attempts(run_id);
}

std::vector<sink_count> traced_store::result_counts(int64_t run_id, const std::string& sink,
                                                    const std::string& field) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("result_counts");
  return inner_->result_counts(run_id, sink, field);
}

std::vector<std::string> traced_store::check_invariants() {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("check_invariants");
  return inner_->check_invariants();
}

std::vector<millis> traced_store::recent_latencies(const std::string& stage, int limit,
                                                   millis window) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("recent_latencies");
  return inner_->recent_latencies(stage, limit, window);
}

std::optional<time_point> traced_store::next_available_at(const std::string& stage) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("next_available_at");
  return inner_->next_available_at(stage);
}

// Operators' actions: not part of any scenario's timeline, forwarded as they are.

std::vector<dead_message> traced_store::dead_messages(const dead_filter& filter, int limit) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("dead_messages");
  return inner_->dead_messages(filter, limit);
}

operator_result traced_store::retry_dead(const dead_filter& filter, const std::string& by) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("retry_dead");
  return inner_->retry_dead(filter, by);
}

operator_result traced_store::purge_dead(const dead_filter& filter, const std::string& by) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("purge_dead");
  return inner_->purge_dead(filter, by);
}

operator_result traced_store::cancel_run(int64_t run_id, const std::string& by) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("cancel_run");
  return inner_->cancel_run(run_id, by);
}

std::vector<operator_action> traced_store::operator_log(int limit) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  reachable("operator_log");
  return inner_->operator_log(limit);
}

} // namespace turing::replay
