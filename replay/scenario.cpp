// Reading scenario files: TOML into a scenario, every problem named with its
// file, line and key, all of them at once.
#include "replay/scenario.hpp"

#include "config/duration.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

namespace turing::replay {

namespace {

/// The most items one enqueue may generate with `count`.
constexpr int64_t max_generated_items = 100000;

json to_json(const toml::node& n) {
  if (auto t = n.as_table()) {
    json out = json::object();
    for (const auto& [k, v] : *t)
      out[std::string(k.str())] = to_json(v);
    return out;
  }
  if (auto a = n.as_array()) {
    json out = json::array();
    for (const auto& v : *a)
      out.push_back(to_json(v));
    return out;
  }
  if (auto s = n.as_string())
    return s->get();
  if (auto i = n.as_integer())
    return i->get();
  if (auto f = n.as_floating_point())
    return f->get();
  if (auto b = n.as_boolean())
    return b->get();
  return nullptr; // dates and times have no JSON form
}

void replace_all(std::string& s, const std::string& what, const std::string& with) {
  for (size_t pos = 0; (pos = s.find(what, pos)) != std::string::npos; pos += with.size())
    s.replace(pos, what.size(), with);
}

json substitute_index(const json& j, int i) {
  if (j.is_string()) {
    auto s = j.get<std::string>();
    replace_all(s, "{i}", std::to_string(i));
    return s;
  }
  if (j.is_object() || j.is_array()) {
    json out = j;
    for (auto& v : out)
      v = substitute_index(v, i);
    return out;
  }
  return j;
}

class reader {
public:
  explicit reader(std::filesystem::path file) : file_(std::move(file)) {}

  std::vector<std::string> errors;

  void error(const toml::node* at, const std::string& key, const std::string& message) {
    std::string where = file_.string();
    if (at && at->source().begin.line > 0)
      where += ":" + std::to_string(at->source().begin.line);
    errors.push_back(where + ": " + (key.empty() ? "" : key + ": ") + message);
  }

  /// Flags keys this reader does not know: a typo must not silently do nothing.
  void only_keys(const toml::table& t, const std::string& path,
                 std::initializer_list<const char*> known) {
    std::set<std::string> ok(known.begin(), known.end());
    for (const auto& [k, v] : t)
      if (!ok.count(std::string(k.str())))
        error(&v, path.empty() ? std::string(k.str()) : path + "." + std::string(k.str()),
              "unknown key");
  }

  std::optional<std::string> str(const toml::table& t, const std::string& path, const char* key) {
    auto* n = t.get(key);
    if (!n)
      return std::nullopt;
    if (auto s = n->as_string())
      return s->get();
    error(n, join(path, key), "must be a string");
    return std::nullopt;
  }

  std::optional<int64_t> integer(const toml::table& t, const std::string& path, const char* key) {
    auto* n = t.get(key);
    if (!n)
      return std::nullopt;
    if (auto i = n->as_integer())
      return i->get();
    error(n, join(path, key), "must be an integer");
    return std::nullopt;
  }

  std::optional<bool> boolean(const toml::table& t, const std::string& path, const char* key) {
    auto* n = t.get(key);
    if (!n)
      return std::nullopt;
    if (auto b = n->as_boolean())
      return b->get();
    error(n, join(path, key), "must be true or false");
    return std::nullopt;
  }

  /// "5s", "250ms", "1m30s"; with a leading '-' where `signed_ok`.
  std::optional<millis> duration(const toml::table& t, const std::string& path, const char* key,
                                 bool signed_ok = false) {
    auto s = str(t, path, key);
    if (!s)
      return std::nullopt;
    bool negative = signed_ok && !s->empty() && (*s)[0] == '-';
    auto text = negative                                       ? s->substr(1)
                : (!s->empty() && (*s)[0] == '+' && signed_ok) ? s->substr(1)
                                                               : *s;
    auto d = config::parse_duration(text);
    if (!d) {
      error(t.get(key), join(path, key),
            "\"" + *s + "\" is not a duration (e.g. \"250ms\", \"5s\", \"1m30s\")");
      return std::nullopt;
    }
    return negative ? -*d : *d;
  }

  const toml::table* table(const toml::table& t, const std::string& path, const char* key) {
    auto* n = t.get(key);
    if (!n)
      return nullptr;
    if (auto tt = n->as_table())
      return tt;
    error(n, join(path, key), "must be a table");
    return nullptr;
  }

  std::vector<const toml::table*> tables(const toml::table& t, const std::string& path,
                                         const char* key) {
    std::vector<const toml::table*> out;
    auto* n = t.get(key);
    if (!n)
      return out;
    auto* a = n->as_array();
    if (!a) {
      error(n, join(path, key), "must be an array of tables ([[" + join(path, key) + "]])");
      return out;
    }
    for (const auto& v : *a) {
      if (auto tt = v.as_table())
        out.push_back(tt);
      else
        error(&v, join(path, key), "every element must be a table");
    }
    return out;
  }

  std::vector<std::string> strings(const toml::table& t, const std::string& path, const char* key) {
    std::vector<std::string> out;
    auto* n = t.get(key);
    if (!n)
      return out;
    auto* a = n->as_array();
    if (!a) {
      error(n, join(path, key), "must be an array of strings");
      return out;
    }
    for (const auto& v : *a) {
      if (auto s = v.as_string())
        out.push_back(s->get());
      else
        error(&v, join(path, key), "every element must be a string");
    }
    return out;
  }

  std::map<std::string, int64_t> counts(const toml::table& t, const std::string& path,
                                        const char* key) {
    std::map<std::string, int64_t> out;
    if (auto* c = table(t, path, key))
      for (const auto& [k, v] : *c) {
        if (auto i = v.as_integer())
          out[std::string(k.str())] = i->get();
        else
          error(&v, join(join(path, key), std::string(k.str()).c_str()), "must be an integer");
      }
    return out;
  }

  std::optional<json> json_value(const toml::table& t, const std::string& path, const char* key,
                                 const char* json_key) {
    if (auto* n = t.get(key)) {
      if (t.get(json_key))
        error(n, join(path, key), std::string("give either ") + key + " or " + json_key);
      return to_json(*n);
    }
    if (auto s = str(t, path, json_key)) {
      auto j = json::parse(*s, nullptr, false);
      if (j.is_discarded()) {
        error(t.get(json_key), join(path, json_key), "is not valid JSON");
        return std::nullopt;
      }
      return j;
    }
    return std::nullopt;
  }

  call_rule rule(const toml::table& t, const std::string& path, bool is_model, bool with_match) {
    if (is_model && with_match)
      only_keys(t, path,
                {"stage", "item", "attempt", "call", "latency", "reply", "http_status", "hang",
                 "crash", "refused", "retry_after", "error_body", "latency_step", "tokens"});
    else if (is_model)
      only_keys(t, path,
                {"latency", "reply", "http_status", "hang", "crash", "refused", "retry_after",
                 "error_body", "latency_step", "tokens", "calls"});
    else if (with_match)
      only_keys(t, path,
                {"stage", "item", "attempt", "call", "latency", "stdout", "exit_status", "stderr",
                 "hang", "crash"});
    else
      only_keys(t, path, {"latency", "stdout", "exit_status", "stderr", "hang", "crash", "calls"});
    call_rule r;
    if (with_match) {
      r.stage = str(t, path, "stage");
      r.item = str(t, path, "item");
      if (auto a = integer(t, path, "attempt"))
        r.attempt = static_cast<int>(*a);
      if (auto c = integer(t, path, "call"))
        r.call = static_cast<int>(*c);
    }
    r.latency = duration(t, path, "latency");
    r.reply = str(t, path, is_model ? "reply" : "stdout");
    if (auto h = integer(t, path, "http_status"))
      r.http_status = static_cast<int>(*h);
    if (auto e = integer(t, path, "exit_status"))
      r.exit_status = static_cast<int>(*e);
    r.stderr_text = str(t, path, "stderr");
    r.hang = boolean(t, path, "hang");
    r.crash = boolean(t, path, "crash");
    if (is_model) {
      r.refused = boolean(t, path, "refused");
      r.retry_after = duration(t, path, "retry_after");
      r.latency_step = duration(t, path, "latency_step");
      r.error_body = str(t, path, "error_body");
      r.tokens = integer(t, path, "tokens");
    }
    return r;
  }

  simulated_handler handler(const toml::table& t, const std::string& path, bool is_model) {
    simulated_handler h;
    h.defaults = rule(t, path, is_model, false);
    int i = 0;
    for (const auto* c : tables(t, path, "calls"))
      h.calls.push_back(rule(*c, path + ".calls[" + std::to_string(i++) + "]", is_model, true));
    return h;
  }

  std::optional<enqueue_spec> enqueue(const toml::table& t, const std::string& path) {
    only_keys(t, path,
              {"at", "stage", "label", "max_attempts", "count", "key_prefix", "payload",
               "payload_json", "items"});
    enqueue_spec e;
    auto stage = str(t, path, "stage");
    if (!stage) {
      error(&t, path + ".stage", "missing: the entry stage to enqueue into");
      return std::nullopt;
    }
    e.stage = *stage;
    e.label = str(t, path, "label").value_or("");
    e.max_attempts = static_cast<int>(integer(t, path, "max_attempts").value_or(3));
    auto count = integer(t, path, "count");
    auto prefix = str(t, path, "key_prefix").value_or("k");
    auto payload =
        json_value(t, path, "payload", "payload_json").value_or(json{{"name", "item {i}"}});
    // Generated items are held in memory; a mistyped count (or a fuzzer's)
    // must be an error, not an allocation that never ends.
    if (count && (*count < 0 || *count > max_generated_items)) {
      error(t.get("count"), path + ".count",
            "must be between 0 and " + std::to_string(max_generated_items));
      count.reset();
    }
    for (int64_t i = 0; count && i < *count; ++i)
      e.items.push_back(
          {prefix + std::to_string(i), substitute_index(payload, static_cast<int>(i))});
    int n = 0;
    for (const auto* it : tables(t, path, "items")) {
      auto ipath = path + ".items[" + std::to_string(n++) + "]";
      only_keys(*it, ipath, {"key", "payload", "payload_json"});
      persistence::new_item item;
      item.key = str(*it, ipath, "key");
      item.payload = json_value(*it, ipath, "payload", "payload_json").value_or(json::object());
      e.items.push_back(std::move(item));
    }
    if (e.items.empty())
      error(&t, path, "enqueues nothing: give count = N or [[...items]]");
    return e;
  }

  std::optional<timeline_event> event(const toml::table& t, const std::string& path) {
    timeline_event ev;
    auto at = duration(t, path, "at");
    if (!at) {
      error(&t, path + ".at", "missing: when the event happens (\"0s\", \"12s\", ...)");
      return std::nullopt;
    }
    ev.at = *at;
    static const std::map<std::string, event_kind> kinds{
        {"start_node", event_kind::start_node},   {"kill_node", event_kind::kill_node},
        {"stop_node", event_kind::stop_node},     {"crash", event_kind::crash_actor},
        {"stall", event_kind::stall_actor},       {"database_down", event_kind::database_down},
        {"clock_jump", event_kind::clock_jump},   {"enqueue", event_kind::enqueue},
        {"in_doubt", event_kind::in_doubt},       {"model_down", event_kind::model_down},
        {"freeze_node", event_kind::freeze_node}, {"partition", event_kind::partition}};
    std::vector<std::string> given;
    for (const auto& [k, v] : kinds)
      if (t.get(k))
        given.push_back(k);
    if (given.size() != 1) {
      error(&t, path,
            "needs exactly one action of start_node, kill_node, stop_node, freeze_node, "
            "partition, crash, stall, database_down, model_down, in_doubt, clock_jump, enqueue");
      return std::nullopt;
    }
    auto action = given[0];
    ev.kind = kinds.at(action);
    switch (ev.kind) {
    case event_kind::start_node:
    case event_kind::kill_node:
    case event_kind::stop_node:
      only_keys(t, path, {"at", action.c_str()});
      ev.node = str(t, path, action.c_str()).value_or("");
      break;
    case event_kind::freeze_node:
    case event_kind::partition: {
      only_keys(t, path, {"at", action.c_str(), "for"});
      ev.node = str(t, path, action.c_str()).value_or("");
      auto d = duration(t, path, "for");
      if (!d)
        error(&t, path + ".for",
              "missing: how long the node is " + std::string(ev.kind == event_kind::freeze_node
                                                                 ? "frozen"
                                                                 : "cut off from its peers"));
      ev.duration = d.value_or(millis{0});
      break;
    }
    case event_kind::crash_actor:
    case event_kind::stall_actor:
      only_keys(t, path, {"at", action.c_str(), "node", "for"});
      ev.actor = str(t, path, action.c_str()).value_or("");
      ev.node = str(t, path, "node").value_or("node-a");
      if (ev.kind == event_kind::stall_actor) {
        auto d = duration(t, path, "for");
        if (!d)
          error(&t, path + ".for", "missing: how long the actor stalls");
        ev.duration = d.value_or(millis{0});
      }
      break;
    case event_kind::database_down:
      only_keys(t, path, {"at", action.c_str()});
      ev.duration = duration(t, path, "database_down").value_or(millis{0});
      break;
    case event_kind::model_down: {
      only_keys(t, path, {"at", action.c_str(), "for"});
      ev.model = str(t, path, action.c_str()).value_or("");
      auto d = duration(t, path, "for");
      if (!d)
        error(&t, path + ".for", "missing: how long the model's server is down");
      ev.duration = d.value_or(millis{0});
      break;
    }
    case event_kind::in_doubt: {
      only_keys(t, path, {"at", action.c_str(), "times"});
      ev.operation = str(t, path, action.c_str()).value_or("");
      static const std::set<std::string> operations{"complete", "fail", "claim", "release",
                                                    "heartbeat"};
      if (!operations.count(ev.operation))
        error(&t, path + "." + action,
              "\"" + ev.operation +
                  "\" is not a store write: complete, fail, claim, release or "
                  "heartbeat");
      if (auto* times = t.get("times")) {
        auto n = times->value<int64_t>();
        if (!n || *n < 1)
          error(&t, path + ".times", "must be a whole number >= 1");
        else
          ev.times = static_cast<int>(*n);
      }
      break;
    }
    case event_kind::clock_jump:
      only_keys(t, path, {"at", action.c_str()});
      ev.jump = duration(t, path, "clock_jump", true).value_or(millis{0});
      break;
    case event_kind::enqueue:
      if (auto* e = table(t, path, "enqueue")) {
        auto spec = enqueue(*e, path + ".enqueue");
        if (!spec)
          return std::nullopt;
        ev.enqueue = std::move(*spec);
      }
      only_keys(t, path, {"at", "enqueue"});
      break;
    }
    return ev;
  }

  expectations expect(const toml::table& t) {
    const std::string path = "expect";
    only_keys(t, path,
              {"config_error", "finished", "sinks", "attempts", "model_calls", "peak_model_calls",
               "script_runs", "max_stage_switches", "max_loads", "min_loads", "max_call_wait",
               "max_requests_per_minute", "max_tokens_per_minute", "makespan_min", "makespan_max",
               "trace_contains", "trace_lacks", "items", "attempt"});
    expectations x;
    x.config_error = str(t, path, "config_error");
    x.finished = boolean(t, path, "finished").value_or(!x.config_error);
    x.sinks = counts(t, path, "sinks");
    x.attempts = counts(t, path, "attempts");
    for (const auto& [k, v] : x.attempts)
      if (!persistence::parse_attempt_result(k))
        error(t.get("attempts"), "expect.attempts." + k,
              "not an attempt result (completed, failed, timeout, lost, crashed, late_result, "
              "released)");
    x.model_calls = counts(t, path, "model_calls");
    x.peak_model_calls = counts(t, path, "peak_model_calls");
    x.script_runs = counts(t, path, "script_runs");
    x.max_stage_switches = counts(t, path, "max_stage_switches");
    x.max_loads = counts(t, path, "max_loads");
    x.max_requests_per_minute = counts(t, path, "max_requests_per_minute");
    x.max_tokens_per_minute = counts(t, path, "max_tokens_per_minute");
    x.min_loads = counts(t, path, "min_loads");
    if (auto* w = table(t, path, "max_call_wait"))
      for (const auto& [k, v] : *w)
        if (auto d = duration(*w, path + ".max_call_wait", std::string(k.str()).c_str()))
          x.max_call_wait[std::string(k.str())] = *d;
    x.makespan_min = duration(t, path, "makespan_min");
    x.makespan_max = duration(t, path, "makespan_max");
    x.trace_contains = strings(t, path, "trace_contains");
    x.trace_lacks = strings(t, path, "trace_lacks");
    int n = 0;
    for (const auto* it : tables(t, path, "items")) {
      auto ipath = "expect.items[" + std::to_string(n++) + "]";
      only_keys(
          *it, ipath,
          {"key", "sink", "results", "stage_results", "result", "result_json", "error_contains"});
      item_expectation e;
      auto key = str(*it, ipath, "key");
      if (!key)
        error(it, ipath + ".key", "missing: the item's key");
      e.key = key.value_or("");
      e.sink = str(*it, ipath, "sink");
      if (it->get("results"))
        e.results = strings(*it, ipath, "results");
      e.result = json_value(*it, ipath, "result", "result_json");
      if (auto* sr = table(*it, ipath, "stage_results"))
        for (const auto& [stage, v] : *sr) {
          (void)v;
          auto name = std::string(stage.str());
          e.stage_results[name] = strings(*sr, ipath + ".stage_results", name.c_str());
        }
      e.error_contains = str(*it, ipath, "error_contains");
      x.items.push_back(std::move(e));
    }
    n = 0;
    for (const auto* it : tables(t, path, "attempt")) {
      auto ipath = "expect.attempt[" + std::to_string(n++) + "]";
      only_keys(*it, ipath,
                {"item", "n", "stage", "result", "node", "min_duration", "max_duration",
                 "finished_before", "error_contains"});
      attempt_expectation a;
      auto item = str(*it, ipath, "item");
      if (!item)
        error(it, ipath + ".item", "missing: the item's key");
      a.item = item.value_or("");
      a.n = static_cast<int>(integer(*it, ipath, "n").value_or(1));
      a.stage = str(*it, ipath, "stage");
      a.result = str(*it, ipath, "result");
      a.node = str(*it, ipath, "node");
      a.min_duration = duration(*it, ipath, "min_duration");
      a.max_duration = duration(*it, ipath, "max_duration");
      a.finished_before = duration(*it, ipath, "finished_before");
      a.error_contains = str(*it, ipath, "error_contains");
      x.attempt_checks.push_back(std::move(a));
    }
    return x;
  }

  static std::string join(const std::string& path, const char* key) {
    return path.empty() ? key : path + "." + key;
  }

private:
  std::filesystem::path file_;
};

} // namespace

call_effect resolve(const simulated_handler& handler, const call_key& key) {
  call_effect e;
  millis step{0};
  auto apply = [&](const call_rule& r) {
    if (r.latency)
      e.latency = *r.latency;
    if (r.latency_step)
      step = *r.latency_step;
    if (r.reply)
      e.reply = *r.reply;
    if (r.http_status)
      e.http_status = *r.http_status;
    if (r.exit_status)
      e.exit_status = *r.exit_status;
    if (r.stderr_text)
      e.stderr_text = *r.stderr_text;
    if (r.hang)
      e.hang = *r.hang;
    if (r.crash)
      e.crash = *r.crash;
    if (r.refused)
      e.refused = *r.refused;
    if (r.retry_after)
      e.retry_after = *r.retry_after;
    if (r.error_body)
      e.error_body = *r.error_body;
    if (r.tokens)
      e.tokens = *r.tokens;
  };
  apply(handler.defaults);
  for (const auto& r : handler.calls) {
    if ((r.stage && *r.stage != key.stage) || (r.item && *r.item != key.item) ||
        (r.attempt && *r.attempt != key.attempt) || (r.call && *r.call != key.call))
      continue;
    apply(r);
    break;
  }
  if (step.count() > 0 && key.call > 1)
    e.latency += step * (key.call - 1);
  return e;
}

scenario parse_scenario(const std::string& toml_text, const std::filesystem::path& file) {
  toml::table root;
  try {
    root = toml::parse(toml_text, file.string());
  } catch (const toml::parse_error& e) {
    throw scenario_error(file.string() + ":" + std::to_string(e.source().begin.line) + ":" +
                         std::to_string(e.source().begin.column) + ": " +
                         std::string(e.description()));
  }
  reader r{file};
  scenario s;
  s.file = file;
  r.only_keys(root, "",
              {"name", "incident", "summary", "expected_failure", "pipeline", "pipeline_file",
               "nodes", "enqueue", "timeline", "models", "scripts", "gpus", "settle", "limit",
               "expect"});
  s.name = r.str(root, "", "name").value_or(file.stem().string());
  s.incident = static_cast<int>(r.integer(root, "", "incident").value_or(0));
  s.summary = r.str(root, "", "summary").value_or("");
  s.expected_failure = r.str(root, "", "expected_failure").value_or("");
  auto base = file.parent_path();
  if (auto* p = r.table(root, "", "pipeline")) {
    std::ostringstream text;
    text << *p;
    s.pipeline_toml = text.str();
    s.pipeline_name = file.string() + " [pipeline]";
    s.pipeline_dir = base;
    if (root.get("pipeline_file"))
      r.error(root.get("pipeline_file"), "pipeline_file",
              "give either [pipeline] or pipeline_file");
  } else if (auto pf = r.str(root, "", "pipeline_file")) {
    auto path = std::filesystem::path(*pf).is_absolute() ? std::filesystem::path(*pf) : base / *pf;
    std::ifstream in{path};
    if (!in) {
      r.error(root.get("pipeline_file"), "pipeline_file", "cannot read " + path.string());
    } else {
      std::ostringstream text;
      text << in.rdbuf();
      s.pipeline_toml = text.str();
      s.pipeline_name = path.string();
      s.pipeline_dir = path.parent_path();
    }
  } else {
    r.error(nullptr, "pipeline", "missing: a [pipeline] table or pipeline_file = \"...\"");
  }
  if (root.get("nodes"))
    s.nodes = r.strings(root, "", "nodes");
  int n = 0;
  for (const auto* e : r.tables(root, "", "enqueue")) {
    auto path = "enqueue[" + std::to_string(n++) + "]";
    if (auto spec = r.enqueue(*e, path)) {
      timeline_event ev;
      ev.kind = event_kind::enqueue;
      ev.at = r.duration(*e, path, "at").value_or(millis{0});
      ev.enqueue = std::move(*spec);
      s.timeline.push_back(std::move(ev));
    }
  }
  n = 0;
  for (const auto* e : r.tables(root, "", "timeline"))
    if (auto ev = r.event(*e, "timeline[" + std::to_string(n++) + "]"))
      s.timeline.push_back(std::move(*ev));
  std::stable_sort(s.timeline.begin(), s.timeline.end(),
                   [](const auto& a, const auto& b) { return a.at < b.at; });
  if (auto* m = r.table(root, "", "models"))
    for (const auto& [k, v] : *m) {
      auto name = std::string(k.str());
      if (auto t = v.as_table())
        s.models[name] = r.handler(*t, "models." + name, true);
      else
        r.error(&v, "models." + name, "must be a table");
    }
  if (auto* m = r.table(root, "", "scripts"))
    for (const auto& [k, v] : *m) {
      auto name = std::string(k.str());
      if (auto t = v.as_table())
        s.scripts[name] = r.handler(*t, "scripts." + name, false);
      else
        r.error(&v, "scripts." + name, "must be a table");
    }
  if (auto* g = r.table(root, "", "gpus"))
    for (const auto& [k, v] : *g) {
      auto name = std::string(k.str());
      auto path = "gpus." + name;
      auto t = v.as_table();
      if (!t) {
        r.error(&v, path, "must be a table");
        continue;
      }
      r.only_keys(*t, path, {"models", "max_loaded", "load"});
      simulated_gpu gpu;
      gpu.models = r.strings(*t, path, "models");
      if (gpu.models.empty())
        r.error(t, path + ".models", "missing: the models this GPU holds");
      gpu.max_loaded = static_cast<int>(r.integer(*t, path, "max_loaded").value_or(1));
      if (gpu.max_loaded < 1)
        r.error(t->get("max_loaded"), path + ".max_loaded", "must be at least 1");
      gpu.load = r.duration(*t, path, "load").value_or(millis{0});
      for (const auto& m : gpu.models)
        for (const auto& [other, o] : s.gpus)
          if (std::find(o.models.begin(), o.models.end(), m) != o.models.end())
            r.error(t, path + ".models", "model " + m + " is on GPU " + other + " already");
      s.gpus[name] = std::move(gpu);
    }
  s.settle = r.duration(root, "", "settle").value_or(s.settle);
  s.limit = r.duration(root, "", "limit").value_or(s.limit);
  if (auto* x = r.table(root, "", "expect"))
    s.expect = r.expect(*x);
  else
    r.error(nullptr, "expect", "missing: a scenario without expectations proves nothing");
  if (!r.errors.empty()) {
    std::string all;
    for (const auto& e : r.errors)
      all += (all.empty() ? "" : "\n") + e;
    throw scenario_error(all);
  }
  return s;
}

scenario load_scenario(const std::filesystem::path& file) {
  std::ifstream in{file};
  if (!in)
    throw scenario_error(file.string() + ": cannot read the scenario file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_scenario(text.str(), file);
}

} // namespace turing::replay
