// Recording: the audit log, attempt by attempt, written as scenario TOML.
#include "replay/recorder.hpp"

#include "config/duration.hpp"

#include <algorithm>
#include <map>
#include <sstream>
#include <stdexcept>

namespace turing::replay {

using namespace persistence;

namespace {

/// A TOML basic string: JSON's string escapes are all valid TOML escapes.
std::string quote(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string key_of(const item_record& item) {
  return item.key ? *item.key : "item-" + std::to_string(item.id);
}

} // namespace

recording record_run(store& st, int64_t run_id, const config::pipeline_config& pipeline,
                     const std::filesystem::path& config_file) {
  auto run = st.run(run_id);
  if (!run)
    throw std::invalid_argument("run " + std::to_string(run_id) + " does not exist");
  if (!run->finished())
    throw std::invalid_argument("run " + std::to_string(run_id) + " has not finished: " +
                                std::to_string(run->pending) + " item(s) pending");
  const auto* entry = pipeline.find_stage(run->entry_stage);
  if (!entry)
    throw std::invalid_argument("run " + std::to_string(run_id) + " entered stage " +
                                run->entry_stage + ", which the config does not have");

  recording rec;
  auto items = st.items(run_id);
  auto attempts = st.attempts(run_id);
  std::map<int64_t, std::string> keys;
  for (const auto& item : items)
    keys[item.id] = key_of(item);
  rec.items = static_cast<int64_t>(items.size());
  rec.attempts = static_cast<int64_t>(attempts.size());

  std::ostringstream out;
  out << "# Recorded by `turing record` from run " << run_id << " (" << run->label
      << "): " << items.size() << " item(s), " << attempts.size() << " attempt(s).\n"
      << "# Model and script attempts are scripted as they happened; builtins run for real.\n"
      << "name = " << quote("recorded_run_" + std::to_string(run_id)) << "\n"
      << "summary = " << quote("replay of run " + std::to_string(run_id) + " (" + run->label + ")")
      << "\n"
      << "pipeline_file = " << quote(std::filesystem::absolute(config_file).string()) << "\n"
      << "limit = \"24h\"\n\n";

  out << "[[enqueue]]\nstage = " << quote(run->entry_stage) << "\nlabel = " << quote(run->label)
      << "\nmax_attempts = " << entry->retry.max_attempts << "\n";
  for (const auto& item : items)
    out << "[[enqueue.items]]\nkey = " << quote(key_of(item))
        << "\npayload_json = " << quote(item.payload.dump()) << "\n";
  out << "\n";

  std::vector<std::string> notes;
  std::ostringstream models, scripts;
  for (const auto& a : attempts) {
    const auto* stage = pipeline.find_stage(a.stage);
    if (!stage)
      throw std::invalid_argument("attempt " + std::to_string(a.id) + " ran stage " + a.stage +
                                  ", which the config does not have");
    if (stage->handler == config::handler_kind::builtin)
      continue;
    if (a.result == attempt_result::late_result)
      continue; // the replayed timeout produces its own
    auto latency = std::max<millis>(
        millis{0}, std::chrono::duration_cast<millis>(a.finished_at - a.started_at));
    std::ostringstream rule;
    rule << "stage = " << quote(a.stage) << "\nitem = " << quote(keys[a.item_id])
         << "\nattempt = " << a.attempt << "\nlatency = \"" << config::format_duration(latency)
         << "\"\n";
    bool is_model = stage->handler == config::handler_kind::model;
    switch (a.result) {
    case attempt_result::completed:
      if (is_model)
        rule << "reply = " << quote(a.output.dump()) << "\n";
      else
        rule << "stdout = " << quote(json{{"outcome", a.outcome}, {"output", a.output}}.dump())
             << "\n";
      break;
    case attempt_result::failed:
      if (is_model)
        rule << "http_status = 500\n";
      else
        rule << "exit_status = 1\nstderr = " << quote(a.error) << "\n";
      break;
    case attempt_result::timeout:
      rule << "hang = true\n";
      break;
    default:
      // lost, crashed, released: the node's fate is not in the call; the
      // replay makes the attempt hang instead, so it is retried as then.
      rule << "hang = true\n";
      ++rec.approximated;
      notes.push_back("# attempt " + std::to_string(a.id) + " (" + a.stage + ", item " +
                      keys[a.item_id] + ") was " + to_string(a.result) + " on " + a.node +
                      ": replayed as a hang");
      break;
    }
    if (is_model)
      models << "[[models." << stage->model << ".calls]]\n" << rule.str();
    else
      scripts << "[[scripts." << a.stage << ".calls]]\n" << rule.str();
  }
  for (const auto& n : notes)
    out << n << "\n";
  out << models.str() << scripts.str() << "\n[expect]\nfinished = true\n";
  std::map<int64_t, std::vector<const attempt_record*>> by_item;
  for (const auto& a : attempts)
    by_item[a.item_id].push_back(&a);
  for (const auto& item : items) {
    out << "[[expect.items]]\nkey = " << quote(key_of(item))
        << "\nsink = " << quote(item.sink.value_or(""))
        << "\nresult_json = " << quote(item.result.dump()) << "\n";
    // Per stage, in order: fan-out branches interleave differently run to run.
    std::map<std::string, std::vector<std::string>> per_stage;
    for (const auto* a : by_item[item.id])
      if (a->result != attempt_result::late_result) // timing, not outcome
        per_stage[a->stage].push_back(to_string(a->result));
    out << "stage_results = {";
    bool first = true;
    for (const auto& [stage, results] : per_stage) {
      out << (first ? " " : ", ") << stage << " = [";
      for (size_t i = 0; i < results.size(); ++i)
        out << (i ? ", " : "") << quote(results[i]);
      out << "]";
      first = false;
    }
    out << " }\n";
  }
  rec.scenario_toml = out.str();
  return rec;
}

} // namespace turing::replay
