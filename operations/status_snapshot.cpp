// One picture of a pipeline, read from the store and the config: what
// `turing status --json` prints, `status --watch` draws and the dashboard polls.
#include "operations/status_snapshot.hpp"

#include "actors/latency_window.hpp"

#include <map>

namespace turing::operations {

namespace {

using nlohmann::json;
using persistence::time_point;

int64_t ms_between(time_point from, time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

int64_t epoch_ms(time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

/// The stages whose pumps `node` runs, by placement ([nodes]).
std::vector<std::string> hosted_stages(const config::pipeline_config& config,
                                       const std::string& node) {
  std::vector<std::string> out;
  for (const auto& s : config.stages)
    if (config.runs_stage(node, s.name))
      out.push_back(s.name);
  return out;
}

/// The models whose endpoints live on `node`: those placed there and those
/// placed nowhere (every node has their endpoint).
std::vector<std::string> hosted_models(const config::pipeline_config& config,
                                       const std::string& node) {
  std::vector<std::string> out;
  for (const auto& m : config.models)
    if (auto host = config.model_host(m.name); host.empty() || host == node)
      out.push_back(m.name);
  return out;
}

/// A node reports itself every few seconds while it runs.
std::string node_state(const persistence::node_report& n, time_point now) {
  if (n.stopped_at)
    return "stopped";
  return now - n.seen_at < std::chrono::seconds(30) ? "alive" : "silent";
}

/// The same window and rule as the stage's pumps (actors/latency_window):
/// the newest completed attempts of the last 7 days.
json latency_and_timeout(persistence::store& store, const config::pipeline_config& config,
                         const config::stage_config& s, json& timeout) {
  actors::latency_window window;
  auto recent = store.recent_latencies(s.name, static_cast<int>(actors::latency_window_size),
                                       actors::latency_history_window);
  for (auto it = recent.rbegin(); it != recent.rend(); ++it)
    window.add(*it);
  config::millis current{0};
  std::optional<config::millis> recommended;
  if (s.auto_timeout) {
    current = actors::adaptive_deadline(*s.auto_timeout, window);
  } else {
    current = config.timeout_of(s);
    recommended = actors::recommended_timeout(window);
  }
  timeout = {{"mode", s.auto_timeout ? "auto" : "fixed"},
             {"current_ms", current.count()},
             {"recommended_ms", recommended ? json(recommended->count()) : json()}};
  if (s.auto_timeout)
    timeout["auto"] = {{"factor", s.auto_timeout->factor},
                       {"floor_ms", s.auto_timeout->floor.count()},
                       {"ceiling_ms", s.auto_timeout->ceiling.count()},
                       {"warming_up", window.size() < actors::min_latency_samples}};
  auto q = [&](double x) -> json {
    auto v = window.quantile(x);
    return v ? json(v->count()) : json();
  };
  return {{"samples", window.size()}, {"p50_ms", q(0.5)}, {"p95_ms", q(0.95)}, {"p99_ms", q(0.99)}};
}

/// Failures of the handler itself: what a fail rate counts (lost leases and
/// late results are the runtime's, releases are shutdowns).
bool handler_failure(persistence::attempt_result r) {
  using persistence::attempt_result;
  return r == attempt_result::failed || r == attempt_result::timeout ||
         r == attempt_result::crashed;
}

json node_json(const persistence::node_report& n, const config::pipeline_config& config,
               const std::map<std::string, int64_t>& running_by_node, time_point now) {
  auto unavailable = json::object();
  for (const auto& [model, outage] : n.unavailable_models)
    unavailable[model] = {{"since_ms_ago", ms_between(outage.since, now)},
                          {"calls_waiting", outage.waiting},
                          {"error", outage.error}};
  auto calls = json::array();
  for (const auto& [model, list] : n.running_calls)
    for (const auto& c : list) {
      auto secs = std::max(0.0, std::chrono::duration<double>(n.seen_at - c.started_at).count());
      calls.push_back({{"model", model},
                       {"stage", c.stage},
                       {"message_id", c.message_id},
                       {"running_ms", ms_between(c.started_at, now)},
                       {"tokens", c.tokens},
                       {"tokens_per_s", secs > 0 ? c.tokens / secs : 0.0}});
    }
  auto running = running_by_node.find(n.name);
  return {{"name", n.name},
          {"state", node_state(n, now)},
          {"address", n.address.empty() ? json(nullptr) : json(n.address)},
          {"peers", n.peers},
          {"hosts",
           {{"stages", hosted_stages(config, n.name)}, {"models", hosted_models(config, n.name)}}},
          {"running_messages", running == running_by_node.end() ? int64_t{0} : running->second},
          {"started_ms_ago", ms_between(n.started_at, now)},
          {"seen_ms_ago", ms_between(n.seen_at, now)},
          {"stopped_ms_ago", n.stopped_at ? json(ms_between(*n.stopped_at, now)) : json()},
          {"failed_stages", n.failed_stages},
          {"unavailable_models", unavailable},
          {"running_calls", calls}};
}

} // namespace

json status_snapshot(persistence::pg_store& store, const config::pipeline_config& config,
                     const std::string& database_description, run_rate_tracker* rates) {
  auto counts = store.counts();
  auto runs = store.runs(false);
  auto sinks = store.sink_counts(std::nullopt);
  auto nodes = store.nodes();
  auto running_by_node = store.running_by_node();
  auto dead_lost = store.dead_from_lost_leases();
  auto recent = store.recent_attempt_tallies(std::chrono::minutes(1), recent_attempts_bound);
  std::vector<std::string> model_stages;
  for (const auto& s : config.stages)
    if (s.handler == config::handler_kind::model)
      model_stages.push_back(s.name);
  auto usage = model_stages.empty()
                   ? std::map<std::string, persistence::pg_store::model_usage>{}
                   : store.model_usage_since(model_stages, std::chrono::minutes(1));
  auto now = persistence::wall_clock::now();
  auto steady_now = run_rate_tracker::clock::now();

  json out;
  out["database"] = database_description;
  out["generated_at_ms"] = epoch_ms(now);
  out["placement"] = !config.nodes.empty(); // [nodes]: each node runs some stages

  // Every configured stage, in config order, then any the database has that
  // this config does not (a renamed or removed stage still holding work).
  std::vector<persistence::stage_counts> rows;
  for (const auto& s : config.stages) {
    persistence::stage_counts row;
    row.stage = s.name;
    for (const auto& c : counts)
      if (c.stage == s.name)
        row = c;
    rows.push_back(row);
  }
  for (const auto& c : counts)
    if (!config.find_stage(c.stage))
      rows.push_back(c);

  // Calls of a model a live node cannot reach wait (unspent) rather than
  // fail, which the counts alone would not explain.
  std::map<std::string, json> waits; // by stage
  for (const auto& n : nodes)
    if (node_state(n, now) == "alive")
      for (const auto& [model, outage] : n.unavailable_models)
        for (const auto& s : config.stages)
          if (s.handler == config::handler_kind::model && s.model == model)
            waits[s.name].push_back({{"model", model},
                                     {"node", n.name},
                                     {"since_ms_ago", ms_between(outage.since, now)},
                                     {"calls_waiting", outage.waiting},
                                     {"error", outage.error}});

  std::map<std::string, std::map<persistence::attempt_result, int64_t>> by_stage;
  std::map<std::string, std::map<persistence::attempt_result, int64_t>> by_model;
  std::map<std::pair<std::string, std::string>, int64_t> by_outcome; // (stage, outcome)
  for (const auto& t : recent) {
    by_stage[t.stage][t.result] += t.attempts;
    if (!t.model.empty())
      by_model[t.model][t.result] += t.attempts;
    if (t.result == persistence::attempt_result::completed)
      by_outcome[{t.stage, t.outcome}] += t.attempts;
  }
  auto last_minute = [](const std::map<persistence::attempt_result, int64_t>& m) {
    json j = json::object();
    int64_t finished = 0, failures = 0;
    for (auto r : {persistence::attempt_result::completed, persistence::attempt_result::failed,
                   persistence::attempt_result::timeout, persistence::attempt_result::crashed,
                   persistence::attempt_result::lost, persistence::attempt_result::late_result,
                   persistence::attempt_result::released}) {
      auto it = m.find(r);
      auto n = it == m.end() ? int64_t{0} : it->second;
      j[persistence::to_string(r)] = n;
      if (r == persistence::attempt_result::completed || handler_failure(r))
        finished += n;
      if (handler_failure(r))
        failures += n;
    }
    j["fail_rate"] = finished > 0 ? json(static_cast<double>(failures) / finished) : json();
    return j;
  };

  out["stages"] = json::array();
  for (const auto& r : rows) {
    auto ms = [&](std::optional<time_point> t) -> json {
      return t ? json(ms_between(*t, now)) : json();
    };
    json j = {{"stage", r.stage},
              {"ready", r.ready},
              {"delayed", r.delayed},
              {"retrying", r.retrying},
              {"running", r.running},
              {"expired", r.expired},
              {"done", r.done},
              {"dead", r.dead},
              {"oldest_running_age_ms", ms(r.oldest_started_at)},
              {"oldest_heartbeat_age_ms", ms(r.oldest_heartbeat_at)}};
    j["configured"] = config.find_stage(r.stage) != nullptr;
    // Dead because their node kept losing them (not their own failures).
    j["dead_lost"] = dead_lost.count(r.stage) ? dead_lost.at(r.stage) : 0;
    j["last_minute"] = last_minute(by_stage[r.stage]);
    if (auto* s = config.find_stage(r.stage)) {
      json timeout;
      j["latency"] = latency_and_timeout(store, config, *s, timeout);
      j["timeout"] = timeout;
      j["handler"] = std::string{config::to_string(s->handler)};
      j["entry"] = s->entry;
      j["concurrency"] = s->concurrency;
      j["model"] = s->model.empty() ? json() : json(s->model);
      j["join"] = s->join;
    }
    j["waiting_for_models"] = waits.count(r.stage) ? waits[r.stage] : json::array();
    out["stages"].push_back(j);
  }

  // Each route of the config, with the completions that took it in the last minute.
  out["edges"] = json::array();
  for (const auto& s : config.stages)
    for (const auto& [outcome, targets] : s.routes)
      for (const auto& t : targets) {
        std::string kind = "sink";
        if (t.type == config::route_target::kind::stage) {
          auto* target = config.find_stage(t.name);
          kind = target && !target->join.empty() ? "join" : "stage";
        }
        auto flow = by_outcome.find({s.name, outcome});
        out["edges"].push_back({{"from", s.name},
                                {"to", t.name},
                                {"outcome", outcome},
                                {"kind", kind},
                                {"last_minute", flow == by_outcome.end() ? 0 : flow->second}});
      }

  out["models"] = json::array();
  for (const auto& m : config.models) {
    auto u = usage.count(m.name) ? usage.at(m.name) : persistence::pg_store::model_usage{};
    auto budget = [](int64_t b) { return b > 0 ? json(b) : json(); };
    int64_t in_flight = 0;
    auto unavailable_on = json::array();
    for (const auto& n : nodes) {
      if (node_state(n, now) != "alive")
        continue;
      if (auto c = n.running_calls.find(m.name); c != n.running_calls.end())
        in_flight += static_cast<int64_t>(c->second.size());
      if (n.unavailable_models.count(m.name))
        unavailable_on.push_back(n.name);
    }
    auto errors = json::object();
    for (auto r : {persistence::attempt_result::failed, persistence::attempt_result::timeout,
                   persistence::attempt_result::crashed}) {
      auto it = by_model[m.name].find(r);
      errors[persistence::to_string(r)] = it == by_model[m.name].end() ? 0 : it->second;
    }
    out["models"].push_back(
        {{"model", m.name},
         {"gpu", m.gpu.empty() ? json() : json(m.gpu)},
         {"host", config.model_host(m.name).empty() ? json() : json(config.model_host(m.name))},
         {"concurrency", m.concurrency},
         {"in_flight", in_flight},
         {"calls_last_minute", u.calls},
         {"tokens_last_minute", u.tokens},
         {"errors_last_minute", errors},
         {"unavailable_on", unavailable_on},
         {"requests_per_minute", budget(m.requests_per_minute)},
         {"tokens_per_minute", budget(m.tokens_per_minute)}});
  }

  out["runs"] = json::array();
  for (const auto& r : runs) {
    auto done = r.items_total - r.pending;
    auto end = r.finished_at ? *r.finished_at : now;
    auto elapsed = std::max(0.0, std::chrono::duration<double>(end - r.created_at).count());
    json rate_last_minute;
    if (rates && !r.finished()) {
      rates->observe(r.id, done, steady_now);
      if (auto v = rates->rate(r.id))
        rate_last_minute = *v;
    }
    auto overall = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    auto pace = rate_last_minute.is_number() ? rate_last_minute.get<double>() : overall;
    json eta;
    if (r.finished())
      eta = 0;
    else if (pace > 0)
      eta = static_cast<double>(r.pending) / pace;
    out["runs"].push_back(
        {{"id", r.id},
         {"label", r.label},
         {"entry_stage", r.entry_stage},
         {"items", r.items_total},
         {"done", done},
         {"pending", r.pending},
         {"finished", r.finished()},
         {"cancelled_by", r.cancelled() ? json(r.cancelled_by) : json()},
         {"cancelled_at_ms", r.cancelled_at ? json(epoch_ms(*r.cancelled_at)) : json()},
         {"progress", r.items_total > 0 ? static_cast<double>(done) / r.items_total : 1.0},
         {"created_at_ms", epoch_ms(r.created_at)},
         {"finished_at_ms", r.finished_at ? json(epoch_ms(*r.finished_at)) : json()},
         {"elapsed_s", elapsed},
         {"items_per_s", overall},
         {"items_per_s_last_minute", rate_last_minute},
         {"eta_s", eta}});
  }

  out["sinks"] = json::object();
  for (const auto& s : sinks)
    out["sinks"][s.sink] = s.items;

  out["nodes"] = json::array();
  for (const auto& n : nodes)
    out["nodes"].push_back(node_json(n, config, running_by_node, now));
  return out;
}

} // namespace turing::operations
