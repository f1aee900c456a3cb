// The in-memory store: maps for tables, one operation at a time, the same
// fencing, joins, audit and counting rules as pg_store.
#include "persistence/memory_store.hpp"

#include "persistence/detail/item_effects.hpp"
#include "persistence/detail/refusals.hpp"
#include "persistence/next_payload.hpp"
#include "persistence/payload_size.hpp"

#include <algorithm>
#include <cctype>
#include <tuple>

namespace turing::persistence {

memory_store::memory_store(clock_function clock) : clock_(std::move(clock)) {}

void memory_store::check_available(const char* what) const {
  if (!available_)
    throw store_error(store_errc::unavailable,
                      std::string(what) + ": database unavailable (simulated outage)");
}

claimed_message memory_store::claimed_of(const message_row& m, time_point now) {
  claimed_message c;
  c.id = m.id;
  c.item_id = m.item_id;
  c.run_id = m.run_id;
  c.stage = m.stage;
  c.payload = m.payload;
  c.attempt = m.attempt;
  c.max_attempts = m.max_attempts;
  c.lost = m.lost;
  c.epoch = m.epoch;
  c.started_at = now;
  return c;
}

void memory_store::notify(const std::set<std::string>& stages) {
  if (listener_)
    for (const auto& s : stages)
      listener_(s);
}

void memory_store::append_attempt(const message_row& m, int attempt, int64_t epoch,
                                  const std::string& node, time_point started, time_point now,
                                  attempt_result result, const std::string& outcome,
                                  const std::string& model, const json& output,
                                  const std::string& error, int64_t tokens) {
  attempt_record a;
  a.id = next_attempt_id_++;
  a.message_id = m.id;
  a.item_id = m.item_id;
  a.run_id = m.run_id;
  a.stage = m.stage;
  a.attempt = attempt;
  a.epoch = epoch;
  a.node = node;
  a.started_at = started;
  a.finished_at = std::max(now, started);
  a.result = result;
  a.outcome = outcome;
  a.model = model;
  a.output = output;
  a.error = error;
  a.tokens = tokens;
  attempts_.push_back(std::move(a));
}

template <class Effects>
void memory_store::apply_item_effects(const Effects& effects, time_point now) {
  for (const auto& [item_id, e] : effects) {
    auto& item = items_.at(item_id);
    if (item.finished_at)
      continue;
    item.open_branches += e.branch_delta;
    if (e.dead) {
      item.sink = dead_sink;
    } else if (e.sink && item.sink != std::optional<std::string>{dead_sink}) {
      item.sink = e.sink;
      item.result = e.result;
    }
    if (item.open_branches == 0) {
      item.finished_at = std::max(now, item.created_at);
      auto& run = runs_.at(item.run_id);
      run.pending -= 1;
      if (run.pending == 0)
        run.finished_at = std::max(now, run.created_at);
    }
  }
}

// -- enqueue and claim ----------------------------------------------------------

enqueue_result memory_store::enqueue(const enqueue_request& request) {
  check_available("enqueue");
  if (request.stage.empty())
    throw store_error(store_errc::invalid_argument, "enqueue: no stage given");
  if (request.max_attempts < 1)
    throw store_error(store_errc::invalid_argument, "enqueue: max_attempts must be >= 1");
  detail::refuse_unstorable(request.items);
  if (request.run_id && !runs_.count(*request.run_id))
    throw store_error(store_errc::invalid_argument,
                      "enqueue: run " + std::to_string(*request.run_id) + " does not exist");
  if (request.run_id && runs_.at(*request.run_id).cancelled())
    throw store_error(store_errc::invalid_argument,
                      "enqueue: run " + std::to_string(*request.run_id) + " was cancelled by " +
                          runs_.at(*request.run_id).cancelled_by);
  auto now = clock_();
  enqueue_result out;
  if (request.run_id) {
    out.run_id = *request.run_id;
  } else {
    run_status run;
    run.id = out.run_id = next_run_id_++;
    run.label = request.label;
    run.entry_stage = request.stage;
    run.created_at = now;
    run.finished_at = now;
    runs_[run.id] = run;
  }
  for (const auto& item : request.items) {
    if (item.key && item_keys_.count(*item.key)) {
      ++out.duplicates;
      continue;
    }
    item_row row;
    row.id = next_item_id_++;
    row.run_id = out.run_id;
    row.key = item.key;
    row.payload = item.payload;
    row.open_branches = 1;
    row.created_at = now;
    if (item.key)
      item_keys_[*item.key] = row.id;
    message_row m;
    m.id = next_message_id_++;
    m.run_id = out.run_id;
    m.item_id = row.id;
    m.stage = request.stage;
    m.payload = item.payload;
    m.max_attempts = request.max_attempts;
    m.available_at = now;
    items_[row.id] = std::move(row);
    messages_[m.id] = std::move(m);
    ++out.enqueued;
  }
  auto& run = runs_[out.run_id];
  run.items_total += out.enqueued;
  run.pending += out.enqueued;
  if (run.pending > 0)
    run.finished_at.reset();
  else if (!run.finished_at)
    run.finished_at = now;
  if (out.enqueued > 0)
    notify({request.stage});
  return out;
}

std::vector<claimed_message> memory_store::claim(const claim_request& request) {
  check_available("claim");
  if (request.limit < 1)
    throw store_error(store_errc::invalid_argument, "claim: limit must be >= 1");
  auto now = clock_();
  std::vector<message_row*> ready;
  for (auto& [id, m] : messages_)
    if (m.stage == request.stage && m.state == message_state::ready && m.available_at <= now)
      ready.push_back(&m);
  std::stable_sort(ready.begin(), ready.end(), [](const auto* a, const auto* b) {
    return std::tie(a->available_at, a->id) < std::tie(b->available_at, b->id);
  });
  if (ready.size() > static_cast<size_t>(request.limit))
    ready.resize(request.limit);
  if (request.max_bytes > 0) {
    int64_t before = 0;
    size_t taken = 0;
    // Taken in order while the total stays within the budget; the first always.
    for (; taken < ready.size(); ++taken) {
      auto bytes = static_cast<int64_t>(json_text_size(ready[taken]->payload));
      if (taken > 0 && before + bytes > request.max_bytes)
        break;
      before += bytes;
    }
    ready.resize(taken);
  }
  std::vector<claimed_message> out;
  for (auto* m : ready) {
    m->state = message_state::running;
    m->attempt += 1;
    m->epoch += 1;
    m->owner_node = request.node;
    m->started_at = now;
    m->heartbeat_at = now;
    m->lease_expires_at = now + request.lease_ttl;
    out.push_back(claimed_of(*m, now));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

std::vector<lease> memory_store::heartbeat(const std::string& node,
                                           const std::vector<lease>& leases, millis lease_ttl) {
  check_available("heartbeat");
  auto now = clock_();
  std::vector<lease> lost;
  for (const auto& l : leases) {
    auto it = messages_.find(l.message_id);
    bool finished =
        it != messages_.end() && it->second.epoch == l.epoch &&
        (it->second.state == message_state::done || it->second.state == message_state::dead);
    if (finished)
      continue; // ended under this lease, not lost: its owner is just late to say so
    if (it == messages_.end() || it->second.epoch != l.epoch ||
        it->second.state != message_state::running || it->second.owner_node != node) {
      lost.push_back(l);
      continue;
    }
    it->second.heartbeat_at = now;
    it->second.lease_expires_at = now + lease_ttl;
  }
  return lost;
}

// -- results --------------------------------------------------------------------

std::vector<fence_result> memory_store::complete(const std::vector<completion>& batch) {
  return complete_claiming(batch, {}).results;
}

completion_outcome memory_store::complete_claiming(const std::vector<completion>& batch,
                                                   const handoff_claims& claims) {
  check_available("complete");
  detail::refuse_unstorable(batch);
  auto now = clock_();
  completion_outcome outcome;
  auto& results = outcome.results;
  auto claimable = claims.limits;
  std::set<int64_t> completed_now; ///< by this call (a batch may hold one twice)
  detail::item_effects effects;
  std::set<std::string> ready_stages;
  // Late results are recorded after the applied ones, as pg_store does.
  std::vector<std::function<void()>> late;
  for (const auto& c : batch) {
    auto it = messages_.find(c.fence.message_id);
    bool current = it != messages_.end() && it->second.epoch == c.fence.epoch &&
                   it->second.state == message_state::running;
    if (!current && it != messages_.end() && it->second.epoch == c.fence.epoch &&
        it->second.state == message_state::done) {
      // Applied already (a retried in-doubt write, or the same completion
      // twice in one batch): the handoff happened exactly once. What that
      // earlier try handed off claimed for this node, nobody runs: the
      // retry hands it over, as far as its claims go.
      results.push_back(fence_result::applied);
      if (!claims.limits.empty() && !completed_now.count(c.fence.message_id))
        for (auto& [id, child] : messages_) {
          auto budget = claimable.find(child.stage);
          if (child.parent_id == c.fence.message_id && child.state == message_state::running &&
              child.owner_node == claims.node && child.epoch == 1 && child.attempt == 1 &&
              budget != claimable.end() && budget->second > 0) {
            --budget->second;
            outcome.claimed.push_back(claimed_of(child, *child.started_at));
          }
        }
      continue;
    }
    if (!current) {
      results.push_back(fence_result::stale);
      if (it != messages_.end())
        late.push_back([this, &m = it->second, &c, now] {
          append_attempt(m, c.attempt, c.fence.epoch, c.node, c.started_at, now,
                         attempt_result::late_result, c.outcome, c.model, c.output,
                         "late result: epoch " + std::to_string(c.fence.epoch) +
                             " is no longer current; nothing applied",
                         c.tokens);
        });
      continue;
    }
    results.push_back(fence_result::applied);
    completed_now.insert(c.fence.message_id);
    auto& m = it->second;
    m.state = message_state::done;
    m.lease_expires_at.reset();
    m.finished_at = std::max(now, *m.started_at);
    m.outcome = c.outcome;
    m.output = c.output;
    append_attempt(m, m.attempt, m.epoch, *m.owner_node, *m.started_at, now,
                   attempt_result::completed, c.outcome, c.model, c.output, "", c.tokens);
    effects.branch_ended(m.item_id);
    auto start_message = [&](const std::string& stage, const json& payload, int max_attempts,
                             bool may_claim) {
      message_row n;
      n.id = next_message_id_++;
      n.run_id = m.run_id;
      n.item_id = m.item_id;
      n.parent_id = m.id;
      n.stage = stage;
      n.payload = payload;
      n.max_attempts = max_attempts;
      n.available_at = now;
      effects.branch_started(m.item_id);
      auto budget = claimable.find(stage);
      if (may_claim && budget != claimable.end() && budget->second > 0) {
        --budget->second;
        n.state = message_state::running;
        n.attempt = 1;
        n.epoch = 1;
        n.owner_node = claims.node;
        n.started_at = now;
        n.heartbeat_at = now;
        n.lease_expires_at = now + claims.lease_ttl;
        outcome.claimed.push_back(claimed_of(n, now));
      } else {
        ready_stages.insert(stage);
      }
      messages_[n.id] = std::move(n);
    };
    // Derived here, once, as pg_store derives it in SQL.
    json derived = c.derived_payloads ? next_payload(m.payload, c.output) : json();
    for (const auto& d : c.deliveries) {
      const json& payload = c.derived_payloads ? derived : d.payload;
      switch (d.type) {
      case delivery::kind::stage:
        start_message(d.target, payload, d.max_attempts, true);
        break;
      case delivery::kind::join: {
        auto& j = joins_[{m.item_id, d.target}];
        if (j.expected.empty())
          j.expected = d.join_inputs;
        j.inputs[m.stage] = payload;
        bool all_in = std::all_of(j.expected.begin(), j.expected.end(),
                                  [&](const auto& s) { return j.inputs.contains(s); });
        if (all_in && !j.fired) {
          j.fired = true;
          start_message(d.target, j.inputs, d.max_attempts, false);
        }
        break;
      }
      case delivery::kind::sink:
        effects.reached_sink(m.item_id, d.target, payload);
        break;
      }
    }
  }
  for (auto& record : late)
    record();
  apply_item_effects(effects, now);
  notify(ready_stages);
  return outcome;
}

std::vector<fence_result> memory_store::fail(const std::vector<failure>& batch) {
  check_available("fail");
  for (const auto& f : batch)
    if (f.result != attempt_result::failed && f.result != attempt_result::timeout &&
        f.result != attempt_result::crashed)
      throw store_error(store_errc::invalid_argument,
                        std::string("fail: result must be failed, timeout or crashed, not ") +
                            to_string(f.result));
  auto now = clock_();
  std::vector<fence_result> results;
  detail::item_effects effects;
  std::set<std::string> ready_stages;
  std::vector<std::function<void()>> late; // recorded last, as pg_store does
  for (const auto& f : batch) {
    auto it = messages_.find(f.fence.message_id);
    bool current = it != messages_.end() && it->second.epoch == f.fence.epoch &&
                   it->second.state == message_state::running;
    if (!current && it != messages_.end() && it->second.failed_epoch == f.fence.epoch &&
        it->second.epoch == f.fence.epoch) {
      results.push_back(fence_result::applied); // a retried in-doubt write
      continue;
    }
    if (!current) {
      results.push_back(fence_result::stale);
      if (it != messages_.end())
        late.push_back([this, &m = it->second, &f, now] {
          append_attempt(
              m, f.attempt, f.fence.epoch, f.node, f.started_at, now, attempt_result::late_result,
              "", f.model, json(),
              storable_text(std::string("late ") + to_string(f.result) + ": " + f.error));
        });
      continue;
    }
    results.push_back(fence_result::applied);
    auto& m = it->second;
    bool retry = f.retryable && m.attempt - m.lost < m.max_attempts;
    append_attempt(m, m.attempt, m.epoch, f.node, *m.started_at, now, f.result, "", f.model, json(),
                   storable_text(f.error));
    m.failed_epoch = m.epoch;
    m.lease_expires_at.reset();
    m.last_error = storable_text(f.error);
    if (retry) {
      m.state = message_state::ready;
      m.owner_node.reset();
      m.available_at = now + f.retry_after;
      if (f.retry_after.count() == 0)
        ready_stages.insert(m.stage);
    } else {
      m.state = message_state::dead;
      m.finished_at = std::max(now, *m.started_at);
      effects.dead_branch(m.item_id);
    }
  }
  for (auto& record : late)
    record();
  apply_item_effects(effects, now);
  notify(ready_stages);
  return results;
}

std::vector<fence_result> memory_store::release(const std::string& node,
                                                const std::vector<lease>& leases) {
  check_available("release");
  auto now = clock_();
  std::vector<fence_result> results;
  std::set<std::string> ready_stages;
  for (const auto& l : leases) {
    auto it = messages_.find(l.message_id);
    if (it != messages_.end() && it->second.epoch == l.epoch &&
        it->second.state == message_state::ready &&
        std::any_of(attempts_.begin(), attempts_.end(), [&](const attempt_record& a) {
          return a.message_id == l.message_id && a.epoch == l.epoch &&
                 a.result == attempt_result::released && a.node == node;
        })) {
      // Released under this very epoch already: an earlier try of this
      // write committed although its caller was told it failed.
      results.push_back(fence_result::applied);
      continue;
    }
    if (it == messages_.end() || it->second.epoch != l.epoch ||
        it->second.state != message_state::running || it->second.owner_node != node) {
      results.push_back(fence_result::stale);
      continue;
    }
    results.push_back(fence_result::applied);
    auto& m = it->second;
    append_attempt(m, m.attempt, m.epoch, node, *m.started_at, now, attempt_result::released, "",
                   "", json(), "released at shutdown of " + node);
    m.state = message_state::ready;
    m.attempt -= 1;
    m.owner_node.reset();
    m.lease_expires_at.reset();
    m.available_at = now;
    ready_stages.insert(m.stage);
  }
  notify(ready_stages);
  return results;
}

std::vector<rescued_message>
memory_store::rescue_where(int max_lost, const std::function<bool(const message_row&)>& match,
                           const std::function<std::string(const std::string&)>& reason_for) {
  auto now = clock_();
  std::vector<rescued_message> out;
  detail::item_effects effects;
  std::set<std::string> ready_stages;
  for (auto& [id, m] : messages_) {
    if (m.state != message_state::running || !match(m))
      continue;
    auto owner = *m.owner_node;
    m.lost += 1;
    bool dead = m.lost >= max_lost;
    auto reason = dead ? lost_too_often(m.lost, max_lost, reason_for(owner)) : reason_for(owner);
    append_attempt(m, m.attempt, m.epoch, owner, *m.started_at, now, attempt_result::lost, "", "",
                   json(), reason);
    m.lease_expires_at.reset();
    m.available_at = now;
    m.last_error = reason;
    if (dead) {
      m.state = message_state::dead;
      m.finished_at = std::max(now, *m.started_at);
      effects.dead_branch(m.item_id);
    } else {
      m.state = message_state::ready;
      m.owner_node.reset();
      ready_stages.insert(m.stage);
    }
    out.push_back({m.id, m.stage, owner, dead});
  }
  apply_item_effects(effects, now);
  notify(ready_stages);
  return out;
}

std::vector<rescued_message> memory_store::rescue_expired(const std::string& rescuer_node,
                                                          int max_lost) {
  check_available("rescue_expired");
  auto now = clock_();
  return rescue_where(
      max_lost, [now](const message_row& m) { return *m.lease_expires_at < now; },
      [&](const std::string& owner) {
        return "lease expired: owner " + owner + " stopped heartbeating; rescued by " +
               rescuer_node;
      });
}

std::vector<rescued_message> memory_store::rescue_node(const std::string& dead_node,
                                                       const std::string& rescuer_node,
                                                       int max_lost) {
  check_available("rescue_node");
  return rescue_where(
      max_lost, [&](const message_row& m) { return m.owner_node == dead_node; },
      [&](const std::string& owner) {
        return "owner " + owner + " is gone; rescued by " + rescuer_node;
      });
}

// -- reports --------------------------------------------------------------------

void memory_store::report_node(const node_report& report) {
  check_available("report_node");
  auto now = clock_();
  auto& n = nodes_[report.name];
  n = report;
  n.seen_at = std::max(now, report.started_at);
}

prune_result memory_store::prune_history(millis older_than, int limit) {
  check_available("prune_history");
  auto cutoff = clock_() - older_than;
  // An item with a dead letter keeps its history until the letter is
  // retried or purged: a retried message is assembled from its parents.
  std::set<int64_t> items_with_dead_letters;
  for (const auto& [id, m] : messages_)
    if (m.state == message_state::dead && !m.purged_at)
      items_with_dead_letters.insert(m.item_id);
  std::vector<const message_row*> victims;
  for (const auto& [id, m] : messages_) {
    if (m.state != message_state::done || !(*m.finished_at < cutoff) ||
        items_with_dead_letters.count(m.item_id))
      continue;
    auto item = items_.find(m.item_id);
    if (item != items_.end() && item->second.finished_at && *item->second.finished_at < cutoff)
      victims.push_back(&m);
  }
  // Oldest first, as pg_store's index scan; by id among equals.
  std::sort(victims.begin(), victims.end(), [](const message_row* a, const message_row* b) {
    return std::tie(*a->finished_at, a->id) < std::tie(*b->finished_at, b->id);
  });
  if (victims.size() > static_cast<size_t>(std::max(limit, 0)))
    victims.resize(static_cast<size_t>(std::max(limit, 0)));
  std::set<int64_t> ids;
  for (const auto* m : victims)
    ids.insert(m->id);
  prune_result out;
  auto before = attempts_.size();
  attempts_.erase(std::remove_if(attempts_.begin(), attempts_.end(),
                                 [&](const attempt_record& a) { return ids.count(a.message_id); }),
                  attempts_.end());
  out.attempts = static_cast<int64_t>(before - attempts_.size());
  for (auto id : ids) {
    auto it = messages_.find(id);
    pruned_done_[it->second.stage] += 1;
    messages_.erase(it);
    ++out.messages;
  }
  return out;
}

std::vector<node_report> memory_store::nodes() {
  check_available("nodes");
  std::vector<node_report> out;
  for (const auto& [name, n] : nodes_)
    out.push_back(n);
  return out;
}

std::vector<stage_counts> memory_store::counts() {
  check_available("counts");
  auto now = clock_();
  std::map<std::string, stage_counts> by_stage;
  for (const auto& [id, m] : messages_) {
    auto& c = by_stage[m.stage];
    c.stage = m.stage;
    switch (m.state) {
    case message_state::ready:
      (m.available_at <= now ? c.ready : c.delayed) += 1;
      if (m.attempt > 0)
        c.retrying += 1;
      break;
    case message_state::running:
      c.running += 1;
      if (*m.lease_expires_at < now)
        c.expired += 1;
      if (!c.oldest_started_at || *m.started_at < *c.oldest_started_at)
        c.oldest_started_at = m.started_at;
      if (!c.oldest_heartbeat_at || *m.heartbeat_at < *c.oldest_heartbeat_at)
        c.oldest_heartbeat_at = m.heartbeat_at;
      break;
    case message_state::done:
      c.done += 1;
      break;
    case message_state::dead:
      (m.purged_at ? c.purged : c.dead) += 1;
      break;
    }
  }
  for (const auto& [stage, pruned] : pruned_done_) {
    auto& c = by_stage[stage];
    c.stage = stage;
    c.done += pruned;
  }
  std::vector<stage_counts> out;
  for (auto& [stage, c] : by_stage)
    out.push_back(std::move(c));
  return out;
}

std::optional<run_status> memory_store::run(int64_t run_id) {
  check_available("run");
  auto it = runs_.find(run_id);
  if (it == runs_.end())
    return std::nullopt;
  return with_dead_items(it->second);
}

run_status memory_store::with_dead_items(const run_status& run) const {
  auto out = run;
  out.dead = 0;
  for (const auto& [id, i] : items_)
    if (i.run_id == run.id && i.finished_at && i.sink == std::optional<std::string>{dead_sink})
      out.dead += 1;
  return out;
}

std::vector<run_status> memory_store::runs(bool unfinished_only) {
  check_available("runs");
  std::vector<run_status> out;
  for (const auto& [id, r] : runs_)
    if (!unfinished_only || r.pending > 0)
      out.push_back(with_dead_items(r));
  return out;
}

std::vector<sink_count> memory_store::sink_counts(std::optional<int64_t> run_id) {
  check_available("sink_counts");
  std::map<std::string, int64_t> by_sink;
  for (const auto& [id, i] : items_)
    if (i.finished_at && (!run_id || i.run_id == *run_id))
      by_sink[i.sink.value_or("")] += 1;
  std::vector<sink_count> out;
  for (const auto& [sink, n] : by_sink)
    out.push_back({sink, n});
  return out;
}

std::vector<item_record> memory_store::items(int64_t run_id) {
  check_available("items");
  std::vector<item_record> out;
  for (const auto& [id, i] : items_) {
    if (i.run_id != run_id)
      continue;
    item_record r;
    r.id = i.id;
    r.run_id = i.run_id;
    r.key = i.key;
    r.payload = i.payload;
    r.open_branches = i.open_branches;
    r.sink = i.sink;
    r.result = i.result;
    r.finished = i.finished_at.has_value();
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<attempt_record> memory_store::attempts(std::optional<int64_t> run_id) {
  check_available("attempts");
  std::vector<attempt_record> out;
  for (const auto& a : attempts_)
    if (!run_id || a.run_id == *run_id)
      out.push_back(a);
  return out;
}

std::vector<sink_count> memory_store::result_counts(int64_t run_id, const std::string& sink,
                                                    const std::string& field) {
  check_available("result_counts");
  std::map<std::string, int64_t> by_value;
  for (const auto& [id, i] : items_) {
    if (i.run_id != run_id || !i.finished_at || i.sink != std::optional<std::string>{sink})
      continue;
    auto it = i.result.is_object() ? i.result.find(field) : i.result.end();
    by_value[it != i.result.end() && it->is_string() ? it->get<std::string>() : ""] += 1;
  }
  std::vector<sink_count> out;
  for (const auto& [value, n] : by_value)
    out.push_back({value, n});
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.items > b.items; });
  return out;
}

std::vector<std::string> memory_store::check_invariants() {
  check_available("check_invariants");
  std::vector<std::string> out;
  auto id = [](int64_t x) { return std::to_string(x); };
  std::map<int64_t, int64_t> unfinished_per_run, items_per_run;
  for (const auto& [iid, i] : items_) {
    items_per_run[i.run_id] += 1;
    if (i.finished_at && !i.sink)
      out.push_back("item " + id(iid) + " finished without a sink");
    if (!i.finished_at)
      unfinished_per_run[i.run_id] += 1;
  }
  for (const auto& [rid, r] : runs_) {
    if (r.pending != unfinished_per_run[rid])
      out.push_back("run " + id(rid) + " has pending " + id(r.pending) + " but " +
                    id(unfinished_per_run[rid]) + " unfinished items");
    if (r.cancelled())
      for (const auto& [mid, m] : messages_)
        if (m.run_id == rid &&
            (m.state == message_state::ready || m.state == message_state::running))
          out.push_back("run " + id(rid) + " was cancelled but its message " + id(mid) + " is " +
                        to_string(m.state));
    if (r.items_total != items_per_run[rid])
      out.push_back("run " + id(rid) + " has items_total " + id(r.items_total) + " but " +
                    id(items_per_run[rid]) + " items");
  }
  std::map<int64_t, std::vector<const attempt_record*>> by_message;
  for (const auto& a : attempts_) {
    by_message[a.message_id].push_back(&a);
    if (a.finished_at < a.started_at)
      out.push_back("attempt " + id(a.id) + " finished before it started");
  }
  for (const auto& [mid, m] : messages_) {
    const auto& list = by_message[mid];
    int completed = 0;
    int64_t last_epoch = -1;
    for (const auto* a : list) {
      if (a->result == attempt_result::completed) {
        ++completed;
        if (a->epoch != m.epoch)
          out.push_back("message " + id(mid) + " was completed under epoch " + id(a->epoch) +
                        " but its current epoch is " + id(m.epoch));
      }
      if (a->result != attempt_result::late_result) {
        if (a->epoch < last_epoch)
          out.push_back("attempt " + id(a->id) + " of message " + id(mid) +
                        " goes back from epoch " + id(last_epoch) + " to " + id(a->epoch));
        last_epoch = std::max(last_epoch, a->epoch);
      }
    }
    if (completed > 1)
      out.push_back("message " + id(mid) + " completed " + id(completed) + " times");
    if (m.state == message_state::done && completed == 0)
      out.push_back("message " + id(mid) + " is done without a completed attempt");
  }
  // Exactly-once handoff: one message per (item, stage) from one completion
  // (or from the enqueue), and no item dead while a copy of its dead message completed.
  std::map<std::tuple<int64_t, std::string, int64_t>, std::vector<const message_row*>> handoffs;
  for (const auto& [mid, m] : messages_)
    handoffs[{m.item_id, m.stage, m.parent_id.value_or(0)}].push_back(&m);
  for (const auto& [key, copies] : handoffs) {
    const auto& [item, stage, parent] = key;
    if (copies.size() < 2)
      continue;
    out.push_back("item " + id(item) + " has " + id(static_cast<int64_t>(copies.size())) +
                  " messages for stage " + stage + " from one handoff (" +
                  (parent ? "message " + id(parent) : std::string("the enqueue")) + ")");
    auto done = std::find_if(copies.begin(), copies.end(),
                             [](const auto* m) { return m->state == message_state::done; });
    auto it = items_.find(item);
    if (done != copies.end() && it != items_.end() && it->second.sink == dead_sink)
      out.push_back("item " + id(item) + " is dead although message " + id((*done)->id) +
                    " of stage " + stage + ", a copy of its dead message, completed");
  }
  for (const auto& [iid, i] : items_) {
    if (i.finished_at)
      continue;
    bool live = false;
    for (const auto& [mid, m] : messages_)
      if (m.item_id == iid &&
          (m.state == message_state::ready || m.state == message_state::running))
        live = true;
    for (const auto& [key, j] : joins_)
      if (key.first == iid && !j.fired)
        live = true;
    if (!live)
      out.push_back("item " + id(iid) + " is unfinished but has no live message or waiting join");
  }
  return out;
}

std::vector<stage_counts> memory_store::live_counts() {
  auto all = counts();
  all.erase(std::remove_if(all.begin(), all.end(),
                           [](const stage_counts& c) {
                             return c.ready + c.delayed + c.running + c.dead == 0;
                           }),
            all.end());
  for (auto& c : all) { // what the census does not read
    c.retrying = c.expired = c.done = 0;
    c.oldest_started_at.reset();
    c.oldest_heartbeat_at.reset();
  }
  return all;
}

std::vector<millis> memory_store::recent_latencies(const std::string& stage, int limit,
                                                   millis window) {
  check_available("recent_latencies");
  std::vector<const attempt_record*> recent;
  auto since = clock_() - window;
  for (const auto& a : attempts_)
    if (a.stage == stage && a.result == attempt_result::completed && a.finished_at > since)
      recent.push_back(&a);
  // Newest first, as PostgreSQL orders them: by finish time, then id.
  std::stable_sort(recent.begin(), recent.end(), [](const auto* x, const auto* y) {
    return std::tie(x->finished_at, x->id) > std::tie(y->finished_at, y->id);
  });
  std::vector<millis> out;
  for (const auto* a : recent) {
    if (static_cast<int>(out.size()) >= limit)
      break;
    out.push_back(std::chrono::duration_cast<millis>(a->finished_at - a->started_at));
  }
  return out;
}

std::optional<time_point> memory_store::next_available_at(const std::string& stage) {
  check_available("next_available_at");
  std::optional<time_point> out;
  for (const auto& [id, m] : messages_)
    if (m.stage == stage && m.state == message_state::ready && (!out || m.available_at < *out))
      out = m.available_at;
  return out;
}

// -- operators' actions on dead letters and runs ---------------------------------

namespace {

std::string lowered(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

} // namespace

bool memory_store::is_dead_letter(const message_row& m, const dead_filter& f) const {
  return m.state == message_state::dead && !m.purged_at && (!f.stage || m.stage == *f.stage) &&
         (!f.run_id || m.run_id == *f.run_id) &&
         (!f.reason || f.reason->empty() ||
          lowered(m.last_error).find(lowered(*f.reason)) != std::string::npos);
}

void memory_store::record_action(const std::string& by, const char* action, const json& filter,
                                 const std::vector<int64_t>& ids, time_point now) {
  operator_action a;
  a.id = static_cast<int64_t>(operator_actions_.size()) + 1;
  a.at = now;
  a.by = by;
  a.action = action;
  a.filter = filter;
  a.message_ids = ids;
  a.count = static_cast<int64_t>(ids.size());
  operator_actions_.push_back(std::move(a));
}

std::vector<dead_message> memory_store::dead_messages(const dead_filter& filter, int limit) {
  check_available("dead_messages");
  std::vector<dead_message> out;
  std::map<int64_t, size_t> at;
  for (const auto& [id, m] : messages_) {
    if (static_cast<int>(out.size()) >= limit)
      break;
    if (!is_dead_letter(m, filter))
      continue;
    dead_message d;
    d.id = m.id;
    d.run_id = m.run_id;
    d.item_id = m.item_id;
    d.stage = m.stage;
    d.item_key = items_.at(m.item_id).key;
    d.epoch = m.epoch;
    d.died_at = *m.finished_at;
    d.reason = m.last_error;
    at[id] = out.size();
    out.push_back(std::move(d));
  }
  for (const auto& a : attempts_)
    if (auto it = at.find(a.message_id); it != at.end())
      out[it->second].attempts.push_back(a);
  return out;
}

operator_result memory_store::retry_dead(const dead_filter& filter, const std::string& by) {
  check_available("retry_dead");
  if (filter.run_id) {
    auto run = runs_.find(*filter.run_id);
    if (run != runs_.end() && run->second.cancelled())
      throw store_error(store_errc::invalid_argument,
                        "retry: run " + std::to_string(*filter.run_id) + " was cancelled by " +
                            run->second.cancelled_by + "; its dead letters stay dead");
  }
  auto now = clock_();
  operator_result out;
  std::set<std::string> ready_stages;
  std::map<int64_t, int> reopened_branches;
  for (auto& [id, m] : messages_) {
    if (!is_dead_letter(m, filter))
      continue;
    if (runs_.at(m.run_id).cancelled()) {
      ++out.skipped_cancelled;
      continue;
    }
    // A fresh message: its old owner's late result is fenced by the epoch.
    m.state = message_state::ready;
    m.attempt = 0;
    m.lost = 0;
    m.epoch += 1;
    m.owner_node.reset();
    m.lease_expires_at.reset();
    m.available_at = now;
    m.finished_at.reset();
    out.message_ids.push_back(id);
    reopened_branches[m.item_id] += 1;
    ready_stages.insert(m.stage);
  }
  for (const auto& [item_id, n] : reopened_branches) {
    auto& item = items_.at(item_id);
    if (item.finished_at) {
      item.finished_at.reset();
      auto& run = runs_.at(item.run_id);
      run.pending += 1;
      run.finished_at.reset();
    }
    item.open_branches += n;
    bool still_dead = std::any_of(messages_.begin(), messages_.end(), [&](const auto& entry) {
      return entry.second.item_id == item_id && entry.second.state == message_state::dead;
    });
    if (item.sink == std::optional<std::string>{dead_sink} && !still_dead)
      item.sink.reset();
  }
  if (!out.message_ids.empty())
    record_action(by, "retry", filter.to_json(), out.message_ids, now);
  notify(ready_stages);
  return out;
}

operator_result memory_store::purge_dead(const dead_filter& filter, const std::string& by) {
  check_available("purge_dead");
  auto now = clock_();
  operator_result out;
  for (auto& [id, m] : messages_) {
    if (!is_dead_letter(m, filter))
      continue;
    m.purged_at = now;
    m.purged_by = by;
    out.message_ids.push_back(id);
  }
  if (!out.message_ids.empty())
    record_action(by, "purge", filter.to_json(), out.message_ids, now);
  return out;
}

operator_result memory_store::cancel_run(int64_t run_id, const std::string& by) {
  check_available("cancel_run");
  auto it = runs_.find(run_id);
  if (it == runs_.end())
    throw store_error(store_errc::invalid_argument,
                      "cancel: run " + std::to_string(run_id) + " does not exist");
  if (it->second.finished() && !it->second.cancelled())
    throw store_error(store_errc::invalid_argument,
                      "cancel: run " + std::to_string(run_id) + " has finished; nothing to cancel");
  auto now = clock_();
  operator_result out;
  detail::item_effects effects;
  for (auto& [id, m] : messages_) {
    if (m.run_id != run_id ||
        (m.state != message_state::ready && m.state != message_state::running))
      continue;
    if (m.state == message_state::running)
      m.epoch += 1; // the owner's result is late now
    m.state = message_state::dead;
    m.lease_expires_at.reset();
    m.finished_at = std::max(now, m.started_at.value_or(now));
    m.last_error = "run cancelled by " + by;
    effects.dead_branch(m.item_id);
    out.message_ids.push_back(id);
  }
  apply_item_effects(effects, now);
  auto& run = runs_.at(run_id);
  if (!run.cancelled_at) {
    run.cancelled_at = now;
    run.cancelled_by = by;
  }
  record_action(by, "cancel", json{{"run", run_id}}, out.message_ids, now);
  return out;
}

std::vector<operator_action> memory_store::operator_log(int limit) {
  check_available("operator_log");
  std::vector<operator_action> out;
  for (auto it = operator_actions_.rbegin();
       it != operator_actions_.rend() && static_cast<int>(out.size()) < limit; ++it)
    out.push_back(*it);
  return out;
}

} // namespace turing::persistence
