// `turing status`: per stage what is ready, running (with its true age since
// start and since the last heartbeat), done and dead; the runs; the sinks.
#include "actors/latency_window.hpp"
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "config/duration.hpp"
#include "persistence/pg_store.hpp"

#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

namespace turing::cli {

namespace {

using persistence::time_point;

std::string age(std::optional<time_point> since, time_point now) {
  if (!since)
    return "-";
  auto d = std::chrono::duration_cast<config::millis>(now - *since);
  return config::format_duration(std::max(d, config::millis{0}));
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

nlohmann::json to_json(const persistence::stage_counts& c, time_point now) {
  auto ms = [&](std::optional<time_point> t) -> nlohmann::json {
    if (!t)
      return nullptr;
    return std::chrono::duration_cast<std::chrono::milliseconds>(now - *t).count();
  };
  return {{"stage", c.stage},
          {"ready", c.ready},
          {"delayed", c.delayed},
          {"retrying", c.retrying},
          {"running", c.running},
          {"expired", c.expired},
          {"done", c.done},
          {"dead", c.dead},
          {"oldest_running_age_ms", ms(c.oldest_started_at)},
          {"oldest_heartbeat_age_ms", ms(c.oldest_heartbeat_at)}};
}

} // namespace

/// A configured stage's recent latency and the timeout it has or would get.
struct stage_latency {
  actors::latency_window window;
  config::millis timeout{0};                 ///< what its pumps use now
  std::optional<config::millis> recommended; ///< fixed timeouts only
};

/// The same window and rule as the stage's pumps (actors/latency_window):
/// the newest completed attempts of the last 7 days.
stage_latency latency_of(persistence::store& store, const config::pipeline_config& config,
                         const config::stage_config& s) {
  stage_latency out;
  auto recent = store.recent_latencies(s.name, static_cast<int>(actors::latency_window_size),
                                       actors::latency_history_window);
  for (auto it = recent.rbegin(); it != recent.rend(); ++it)
    out.window.add(*it);
  if (s.auto_timeout) {
    out.timeout = actors::adaptive_deadline(*s.auto_timeout, out.window);
  } else {
    out.timeout = config.timeout_of(s);
    out.recommended = actors::recommended_timeout(out.window);
  }
  return out;
}

/// Seconds from `from` to `to`, 0 when `to` is not later.
double seconds_between(time_point from, time_point to) {
  return std::max(0.0, std::chrono::duration<double>(to - from).count());
}

std::string ms_text(std::optional<config::millis> d) {
  return d ? config::format_duration(*d) : "-";
}

int status_command(const status_options& options) {
  auto builtins = make_builtins();
  auto config = load_checked_config(options.config, builtins);
  auto db = open_database(config, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  auto counts = store.counts();
  auto runs = store.runs(false);
  auto sinks = store.sink_counts(std::nullopt);
  auto nodes = store.nodes();
  auto running_by_node = store.running_by_node();
  auto dead_lost = store.dead_from_lost_leases();
  std::map<std::string, stage_latency> latencies;
  for (const auto& s : config.stages)
    latencies[s.name] = latency_of(store, config, s);
  std::vector<std::string> model_stages;
  for (const auto& s : config.stages)
    if (s.handler == config::handler_kind::model)
      model_stages.push_back(s.name);
  auto usage = model_stages.empty()
                   ? std::map<std::string, persistence::pg_store::model_usage>{}
                   : store.model_usage_since(model_stages, std::chrono::minutes(1));
  auto now = persistence::wall_clock::now();

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

  // Stages whose model a live node cannot reach: that node's calls wait
  // (unspent) rather than fail, which the counts alone would not explain.
  struct model_wait {
    std::string node;
    std::string model;
    persistence::model_outage outage;
  };
  std::map<std::string, std::vector<model_wait>> waits; // by stage
  for (const auto& n : nodes)
    if (node_state(n, now) == "alive")
      for (const auto& [model, outage] : n.unavailable_models)
        for (const auto& s : config.stages)
          if (s.handler == config::handler_kind::model && s.model == model)
            waits[s.name].push_back({n.name, model, outage});

  if (options.json) {
    nlohmann::json out;
    out["database"] = db.description;
    for (const auto& r : rows) {
      auto j = to_json(r, now);
      j["configured"] = config.find_stage(r.stage) != nullptr;
      // Dead because their node kept losing them (not their own failures).
      j["dead_lost"] = dead_lost.count(r.stage) ? dead_lost.at(r.stage) : 0;
      if (auto* s = config.find_stage(r.stage)) {
        const auto& l = latencies[r.stage];
        auto q = [&](double x) -> nlohmann::json {
          auto v = l.window.quantile(x);
          return v ? nlohmann::json(v->count()) : nlohmann::json();
        };
        j["latency"] = {{"samples", l.window.size()},
                        {"p50_ms", q(0.5)},
                        {"p95_ms", q(0.95)},
                        {"p99_ms", q(0.99)}};
        j["timeout"] = {{"mode", s->auto_timeout ? "auto" : "fixed"},
                        {"current_ms", l.timeout.count()},
                        {"recommended_ms", l.recommended ? nlohmann::json(l.recommended->count())
                                                         : nlohmann::json()}};
      }
      j["waiting_for_models"] = nlohmann::json::array();
      for (const auto& w : waits[r.stage])
        j["waiting_for_models"].push_back(
            {{"model", w.model},
             {"node", w.node},
             {"since_ms_ago",
              std::chrono::duration_cast<std::chrono::milliseconds>(now - w.outage.since).count()},
             {"calls_waiting", w.outage.waiting},
             {"error", w.outage.error}});
      out["stages"].push_back(j);
    }
    out["models"] = nlohmann::json::array();
    for (const auto& m : config.models) {
      auto u = usage.count(m.name) ? usage.at(m.name) : persistence::pg_store::model_usage{};
      auto budget = [](int64_t b) { return b > 0 ? nlohmann::json(b) : nlohmann::json(); };
      out["models"].push_back({{"model", m.name},
                               {"gpu", m.gpu.empty() ? nlohmann::json() : nlohmann::json(m.gpu)},
                               {"concurrency", m.concurrency},
                               {"calls_last_minute", u.calls},
                               {"tokens_last_minute", u.tokens},
                               {"requests_per_minute", budget(m.requests_per_minute)},
                               {"tokens_per_minute", budget(m.tokens_per_minute)}});
    }
    out["runs"] = nlohmann::json::array();
    for (const auto& r : runs)
      out["runs"].push_back({{"id", r.id},
                             {"label", r.label},
                             {"entry_stage", r.entry_stage},
                             {"items", r.items_total},
                             {"pending", r.pending},
                             {"finished", r.finished()}});
    out["sinks"] = nlohmann::json::object();
    for (const auto& s : sinks)
      out["sinks"][s.sink] = s.items;
    out["nodes"] = nlohmann::json::array();
    for (const auto& n : nodes)
      out["nodes"].push_back(
          {{"name", n.name},
           {"state", node_state(n, now)},
           {"address", n.address.empty() ? nlohmann::json(nullptr) : nlohmann::json(n.address)},
           {"peers", n.peers},
           {"hosts",
            {{"stages", hosted_stages(config, n.name)}, {"models", hosted_models(config, n.name)}}},
           {"running_messages",
            running_by_node.count(n.name) ? running_by_node.at(n.name) : int64_t{0}},
           {"seen_ms_ago",
            std::chrono::duration_cast<std::chrono::milliseconds>(now - n.seen_at).count()},
           {"failed_stages", n.failed_stages},
           {"unavailable_models",
            [&] {
              auto models = nlohmann::json::object();
              for (const auto& [model, outage] : n.unavailable_models)
                models[model] = {
                    {"since_ms_ago",
                     std::chrono::duration_cast<std::chrono::milliseconds>(now - outage.since)
                         .count()},
                    {"calls_waiting", outage.waiting},
                    {"error", outage.error}};
              return models;
            }()},
           {"running_calls", [&] {
              auto calls = nlohmann::json::array();
              for (const auto& [model, list] : n.running_calls)
                for (const auto& c : list) {
                  auto secs = seconds_between(c.started_at, n.seen_at);
                  calls.push_back(
                      {{"model", model},
                       {"stage", c.stage},
                       {"message_id", c.message_id},
                       {"running_ms",
                        std::chrono::duration_cast<std::chrono::milliseconds>(now - c.started_at)
                            .count()},
                       {"tokens", c.tokens},
                       {"tokens_per_s", secs > 0 ? c.tokens / secs : 0.0}});
                }
              return calls;
            }()}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  std::ostringstream o;
  o << std::left << std::setw(16) << "stage" << std::right << std::setw(8) << "ready"
    << std::setw(9) << "delayed" << std::setw(9) << "retrying" << std::setw(9) << "running"
    << std::setw(9) << "expired" << std::setw(9) << "done" << std::setw(7) << "dead"
    << "  oldest running: since start / since heartbeat\n";
  int64_t live = 0;
  for (const auto& r : rows) {
    live += r.ready + r.delayed + r.running;
    o << std::left << std::setw(16) << r.stage << std::right << std::setw(8) << r.ready
      << std::setw(9) << r.delayed << std::setw(9) << r.retrying << std::setw(9) << r.running
      << std::setw(9) << r.expired << std::setw(9) << r.done << std::setw(7) << r.dead << "  "
      << age(r.oldest_started_at, now) << " / " << age(r.oldest_heartbeat_at, now);
    if (!config.find_stage(r.stage))
      o << "  (not in this config)";
    if (auto it = dead_lost.find(r.stage); it != dead_lost.end())
      o << "  (" << it->second << " dead lost with their node, not failed)";
    o << "\n";
    for (const auto& w : waits[r.stage])
      o << "    waiting for model " << w.model << " for " << age(w.outage.since, now) << " ("
        << w.node << ": " << w.outage.waiting << " call(s) waiting): " << w.outage.error << "\n";
  }
  o << (live == 0 ? "pipeline idle: nothing ready, delayed or running\n" : "");
  o << "latency of the last " << actors::latency_window_size
    << " completed attempts (7 days) and timeouts:\n";
  for (const auto& s : config.stages) {
    const auto& l = latencies[s.name];
    o << "  " << std::left << std::setw(16) << s.name << std::right << std::setw(5)
      << l.window.size() << " attempts  p50 " << ms_text(l.window.quantile(0.5)) << "  p95 "
      << ms_text(l.window.quantile(0.95)) << "  p99 " << ms_text(l.window.quantile(0.99))
      << "  timeout " << config::format_duration(l.timeout);
    if (s.auto_timeout)
      o << " (auto: p99 x " << s.auto_timeout->factor << ", floor "
        << config::format_duration(s.auto_timeout->floor) << ", ceiling "
        << config::format_duration(s.auto_timeout->ceiling)
        << (l.window.size() < actors::min_latency_samples ? ", midpoint until 20 attempts" : "")
        << ")";
    else if (l.recommended)
      o << " (recommended " << config::format_duration(*l.recommended) << ": p99 x 2)";
    o << "\n";
  }
  if (!config.models.empty())
    o << "models (calls answered and tokens in the last minute, all nodes; budget):\n";
  for (const auto& m : config.models) {
    auto u = usage.count(m.name) ? usage.at(m.name) : persistence::pg_store::model_usage{};
    o << "  " << std::left << std::setw(16) << m.name << std::right << std::setw(6) << u.calls
      << " calls";
    if (m.requests_per_minute > 0)
      o << " of " << m.requests_per_minute;
    o << std::setw(10) << u.tokens << " tokens";
    if (m.tokens_per_minute > 0)
      o << " of " << m.tokens_per_minute;
    o << "  concurrency " << m.concurrency;
    if (!m.gpu.empty())
      o << "  on gpu " << m.gpu;
    o << "\n";
  }
  o << "runs:\n";
  if (runs.empty())
    o << "  none\n";
  for (const auto& r : runs) {
    o << "  run " << r.id << " '" << r.label << "' into " << r.entry_stage << ": " << r.items_total
      << " items, " << r.pending << " pending";
    if (r.finished_at)
      o << ", finished after " << age(r.created_at, *r.finished_at);
    else
      o << ", running for " << age(r.created_at, now);
    o << "\n";
  }
  o << "sinks:";
  if (sinks.empty())
    o << " none yet";
  for (const auto& s : sinks)
    o << " " << s.sink << "=" << s.items;
  o << "\n";
  o << "nodes:";
  if (nodes.empty())
    o << " none has run yet";
  o << "\n";
  for (const auto& n : nodes) {
    auto state = node_state(n, now);
    o << "  " << n.name << ": " << state;
    if (state == "alive") {
      o << ", seen " << age(n.seen_at, now) << " ago, up " << age(n.started_at, now);
      auto running = running_by_node.find(n.name);
      o << ", " << (running == running_by_node.end() ? 0 : running->second) << " message(s) leased";
    }
    if (!n.address.empty()) {
      o << "; at " << n.address << ", peers: ";
      if (n.peers.empty())
        o << "none";
      for (size_t i = 0; i < n.peers.size(); ++i)
        o << (i ? ", " : "") << n.peers[i];
    }
    if (!config.nodes.empty()) {
      auto list = [](const std::vector<std::string>& names) {
        std::string out;
        for (const auto& x : names)
          out += (out.empty() ? "" : ", ") + x;
        return out.empty() ? std::string{"none"} : out;
      };
      o << "; runs stages " << list(hosted_stages(config, n.name)) << "; hosts models "
        << list(hosted_models(config, n.name));
    } else if (state == "stopped")
      o << " " << age(*n.stopped_at, now) << " ago";
    else
      o << ": not seen for " << age(n.seen_at, now) << " (killed or partitioned?)";
    o << "\n";
    for (const auto& [stage, reason] : n.failed_stages)
      o << "    stage " << stage << " FAILED: " << reason << "\n";
    for (const auto& [model, outage] : n.unavailable_models)
      o << "    model " << model << " UNAVAILABLE for " << age(outage.since, now) << ", "
        << outage.waiting << " call(s) waiting: " << outage.error << "\n";
    if (state == "alive")
      for (const auto& [model, calls] : n.running_calls)
        for (const auto& c : calls) {
          auto secs = seconds_between(c.started_at, n.seen_at);
          o << "    model " << model << " running for " << c.stage << " message " << c.message_id
            << ": " << age(c.started_at, now) << ", " << c.tokens << " tokens streamed ("
            << std::fixed << std::setprecision(1) << (secs > 0 ? c.tokens / secs : 0.0)
            << " tokens/s when last reported)\n";
          o.unsetf(std::ios::floatfield);
        }
  }
  std::cout << o.str();
  return 0;
}

} // namespace turing::cli
