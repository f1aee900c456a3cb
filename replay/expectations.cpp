// Expectations: end state per item, counts, timing bounds in virtual time,
// trace contents, and the invariants every scenario must keep.
#include "replay/expectations.hpp"

#include "config/duration.hpp"

#include <algorithm>

namespace turing::replay {

using namespace persistence;

namespace {

std::string key_of(const item_record& item) {
  return item.key ? *item.key : "#" + std::to_string(item.id);
}

/// Whether `actual` has every field of `expected` with an equal value.
bool contains_fields(const json& actual, const json& expected) {
  if (!expected.is_object())
    return actual == expected;
  if (!actual.is_object())
    return false;
  for (const auto& [k, v] : expected.items())
    if (!actual.contains(k) || !contains_fields(actual.at(k), v))
      return false;
  return true;
}

std::string seconds(millis d) {
  return config::format_duration(d);
}

} // namespace

std::map<std::string, item_end_state> end_state_of(store& st, const sim_world&) {
  std::map<std::string, item_end_state> out;
  std::map<int64_t, std::string> keys;
  for (const auto& run : st.runs(false))
    for (const auto& item : st.items(run.id)) {
      auto& e = out[key_of(item)];
      e.sink = item.sink.value_or("");
      e.result = item.result;
      keys[item.id] = key_of(item);
    }
  for (const auto& a : st.attempts(std::nullopt))
    out[keys[a.item_id]].attempts.push_back(a.stage + ":" + to_string(a.result));
  return out;
}

void check_expectations(const scenario& sc, store& st, const sim_world& world, replay_result& out) {
  const auto& x = sc.expect;
  auto fail = [&](const std::string& what) { out.failures.push_back(what); };

  for (const auto& v : st.check_invariants())
    fail("invariant violated: " + v);

  std::vector<item_record> items;
  for (const auto& run : st.runs(false)) {
    if (x.finished && !run.finished())
      fail("run " + std::to_string(run.id) + " did not finish: " + std::to_string(run.pending) +
           " item(s) pending at the end (" + std::to_string(out.virtual_s) + " s virtual)");
    for (auto& item : st.items(run.id))
      items.push_back(std::move(item));
  }
  auto attempts = st.attempts(std::nullopt);
  std::map<int64_t, std::vector<const attempt_record*>> by_item;
  for (const auto& a : attempts)
    by_item[a.item_id].push_back(&a);

  std::map<std::string, int64_t> sinks;
  for (const auto& item : items)
    if (item.sink)
      ++sinks[*item.sink];
  for (const auto& [sink, n] : x.sinks)
    if (sinks[sink] != n)
      fail("sink " + sink + ": " + std::to_string(sinks[sink]) + " item(s), expected " +
           std::to_string(n));

  std::map<std::string, int64_t> results;
  for (const auto& a : attempts)
    ++results[to_string(a.result)];
  for (const auto& [result, n] : x.attempts)
    if (results[result] != n)
      fail("attempts with result " + result + ": " + std::to_string(results[result]) +
           ", expected " + std::to_string(n));

  auto compare_counts = [&](const std::map<std::string, int64_t>& expected,
                            const std::map<std::string, int64_t>& actual, const char* what) {
    for (const auto& [name, n] : expected) {
      auto it = actual.find(name);
      auto got = it == actual.end() ? 0 : it->second;
      if (got != n)
        fail(std::string(what) + " " + name + ": " + std::to_string(got) + ", expected " +
             std::to_string(n));
    }
  };
  compare_counts(x.model_calls, world.model_calls, "model calls of");
  compare_counts(x.peak_model_calls, world.peak_in_flight, "most calls in flight at once of model");
  compare_counts(x.script_runs, world.script_runs, "script runs of stage");
  for (const auto& [model, most] : x.max_stage_switches) {
    auto it = world.stage_switches.find(model);
    auto got = it == world.stage_switches.end() ? 0 : it->second;
    if (got > most)
      fail("model " + model + " switched between stages " + std::to_string(got) +
           " times, at most " + std::to_string(most) + " expected");
  }

  for (const auto& [gpu, most] : x.max_loads) {
    auto it = world.gpu_loads.find(gpu);
    auto got = it == world.gpu_loads.end() ? 0 : it->second;
    if (got > most)
      fail("GPU " + gpu + " loaded a model " + std::to_string(got) + " times, at most " +
           std::to_string(most) + " expected");
  }
  for (const auto& [gpu, least] : x.min_loads) {
    auto it = world.gpu_loads.find(gpu);
    auto got = it == world.gpu_loads.end() ? 0 : it->second;
    if (got < least)
      fail("GPU " + gpu + " loaded a model " + std::to_string(got) + " times, at least " +
           std::to_string(least) + " expected");
  }
  for (const auto& [model, most] : x.max_call_wait) {
    auto it = world.longest_call_wait.find(model);
    auto got = it == world.longest_call_wait.end() ? millis{0}
                                                   : std::chrono::duration_cast<millis>(it->second);
    if (got > most)
      fail("a call of model " + model + " waited " + seconds(got) +
           " from its claim to its start, at most " + seconds(most) + " expected");
  }

  // The most in any 60 s window [t, t + 60 s) that starts at an event.
  auto busiest_minute = [](std::vector<std::pair<caf::timespan, int64_t>> events) {
    std::sort(events.begin(), events.end());
    int64_t most = 0, sum = 0;
    size_t end = 0;
    for (size_t begin = 0; begin < events.size(); ++begin) {
      while (end < events.size() &&
             events[end].first < events[begin].first + std::chrono::minutes(1))
        sum += events[end++].second;
      most = std::max(most, sum);
      sum -= events[begin].second;
    }
    return most;
  };
  // "a+b": the models of one API key, counted together.
  auto models_of = [](const std::string& key) {
    std::vector<std::string> out;
    size_t from = 0;
    for (auto plus = key.find('+'); plus != std::string::npos; plus = key.find('+', from)) {
      out.push_back(key.substr(from, plus - from));
      from = plus + 1;
    }
    out.push_back(key.substr(from));
    return out;
  };
  for (const auto& [model, most] : x.max_requests_per_minute) {
    std::vector<std::pair<caf::timespan, int64_t>> starts;
    for (const auto& m : models_of(model))
      if (auto it = world.call_starts.find(m); it != world.call_starts.end())
        for (auto t : it->second)
          starts.emplace_back(t, 1);
    if (auto got = busiest_minute(starts); got > most)
      fail("model " + model + " started " + std::to_string(got) +
           " calls within one minute, at most " + std::to_string(most) + " expected");
  }
  for (const auto& [model, most] : x.max_tokens_per_minute) {
    std::vector<std::pair<caf::timespan, int64_t>> answers;
    for (const auto& m : models_of(model))
      if (auto it = world.answered_tokens.find(m); it != world.answered_tokens.end())
        answers.insert(answers.end(), it->second.begin(), it->second.end());
    auto got = busiest_minute(answers);
    if (got > most)
      fail("model " + model + " answered " + std::to_string(got) +
           " tokens within one minute, at most " + std::to_string(most) + " expected");
  }

  if (x.makespan_min || x.makespan_max) {
    if (out.makespan_s < 0)
      fail("makespan: the runs never finished");
    else {
      auto makespan = millis{static_cast<int64_t>(out.makespan_s * 1000)};
      if (x.makespan_min && makespan < *x.makespan_min)
        fail("makespan " + seconds(makespan) + " is shorter than " + seconds(*x.makespan_min));
      if (x.makespan_max && makespan > *x.makespan_max)
        fail("makespan " + seconds(makespan) + " is longer than " + seconds(*x.makespan_max));
    }
  }

  size_t from = 0;
  for (const auto& needle : x.trace_contains) {
    auto it = std::find_if(
        out.trace.begin() + static_cast<std::ptrdiff_t>(from), out.trace.end(),
        [&](const std::string& line) { return line.find(needle) != std::string::npos; });
    if (it == out.trace.end()) {
      fail("trace: no line with \"" + needle + "\"" +
           (from > 0 ? " after the previous expected line" : ""));
    } else {
      from = static_cast<size_t>(it - out.trace.begin()); // the next may share this line
    }
  }
  for (const auto& needle : x.trace_lacks)
    for (const auto& line : out.trace)
      if (line.find(needle) != std::string::npos) {
        fail("trace: unexpected line " + line);
        break;
      }

  auto find_item = [&](const std::string& key) -> const item_record* {
    for (const auto& item : items)
      if (key_of(item) == key)
        return &item;
    return nullptr;
  };
  for (const auto& e : x.items) {
    const auto* item = find_item(e.key);
    if (!item) {
      fail("item " + e.key + ": not found");
      continue;
    }
    const auto& its = by_item[item->id];
    if (e.sink && item->sink.value_or("(none)") != *e.sink)
      fail("item " + e.key + ": sink " + item->sink.value_or("(none)") + ", expected " + *e.sink);
    if (e.results) {
      std::vector<std::string> got;
      for (const auto* a : its)
        got.push_back(to_string(a->result));
      if (got != *e.results) {
        std::string g, w;
        for (const auto& s : got)
          g += (g.empty() ? "" : ", ") + s;
        for (const auto& s : *e.results)
          w += (w.empty() ? "" : ", ") + s;
        fail("item " + e.key + ": attempts [" + g + "], expected [" + w + "]");
      }
    }
    for (const auto& [stage, expected] : e.stage_results) {
      std::vector<std::string> got;
      for (const auto* a : its)
        if (a->stage == stage && a->result != attempt_result::late_result)
          got.push_back(to_string(a->result)); // late results are timing, not outcome
      if (got != expected) {
        std::string g, w;
        for (const auto& s : got)
          g += (g.empty() ? "" : ", ") + s;
        for (const auto& s : expected)
          w += (w.empty() ? "" : ", ") + s;
        fail("item " + e.key + ": stage " + stage + " attempts [" + g + "], expected [" + w + "]");
      }
    }
    if (e.result && !contains_fields(item->result, *e.result))
      fail("item " + e.key + ": result " + item->result.dump() + " lacks " + e.result->dump());
    if (e.error_contains &&
        (its.empty() || its.back()->error.find(*e.error_contains) == std::string::npos))
      fail("item " + e.key + ": last attempt's error \"" + (its.empty() ? "" : its.back()->error) +
           "\" does not say \"" + *e.error_contains + "\"");
  }

  for (const auto& e : x.attempt_checks) {
    const auto* item = find_item(e.item);
    if (!item) {
      fail("attempt check: item " + e.item + " not found");
      continue;
    }
    const auto& its = by_item[item->id];
    if (e.n < 1 || static_cast<size_t>(e.n) > its.size()) {
      fail("item " + e.item + ": has " + std::to_string(its.size()) + " attempt(s), no attempt " +
           std::to_string(e.n));
      continue;
    }
    const auto& a = *its[static_cast<size_t>(e.n - 1)];
    auto what = "item " + e.item + " attempt " + std::to_string(e.n) + ": ";
    auto took = world.scenario_time(a.finished_at - a.started_at);
    if (e.stage && a.stage != *e.stage)
      fail(what + "stage " + a.stage + ", expected " + *e.stage);
    if (e.result && to_string(a.result) != *e.result)
      fail(what + "result " + to_string(a.result) + ", expected " + *e.result);
    if (e.node && a.node != *e.node)
      fail(what + "node " + a.node + ", expected " + *e.node);
    if (e.min_duration && took < *e.min_duration)
      fail(what + "took " + seconds(took) + ", less than " + seconds(*e.min_duration));
    if (e.max_duration && took > *e.max_duration)
      fail(what + "took " + seconds(took) + ", more than " + seconds(*e.max_duration));
    auto finished = world.scenario_time(a.finished_at - world.base);
    if (e.finished_before && finished >= *e.finished_before)
      fail(what + "finished at " + seconds(finished) + ", not before " +
           seconds(*e.finished_before));
    if (e.error_contains && a.error.find(*e.error_contains) == std::string::npos)
      fail(what + "error \"" + a.error + "\" does not say \"" + *e.error_contains + "\"");
  }
}

} // namespace turing::replay
