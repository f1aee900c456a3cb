// `turing status` as plain text, rendered from the status snapshot.
#include "operations/status_text.hpp"

#include "actors/latency_window.hpp"
#include "config/duration.hpp"

#include <iomanip>
#include <sstream>

namespace turing::operations {

using nlohmann::json;

std::string duration_text(const json& ms) {
  if (!ms.is_number())
    return "-";
  return config::format_duration(config::millis{std::max<int64_t>(0, ms.get<int64_t>())});
}

namespace {

/// A JSON scalar as text. Streaming a json value directly would take the
/// stream's width as its indentation (nlohmann) instead of padding it.
std::string text(const json& j) {
  return j.is_string() ? j.get<std::string>() : j.dump();
}

std::string list_text(const json& names) {
  std::string out;
  for (const auto& x : names)
    out += (out.empty() ? "" : ", ") + x.get<std::string>();
  return out.empty() ? std::string{"none"} : out;
}

void stages_table(std::ostringstream& o, const json& snapshot) {
  o << std::left << std::setw(16) << "stage" << std::right << std::setw(8) << "ready"
    << std::setw(9) << "delayed" << std::setw(9) << "retrying" << std::setw(9) << "running"
    << std::setw(9) << "expired" << std::setw(9) << "done" << std::setw(7) << "dead"
    << "  oldest running: since start / since heartbeat\n";
  int64_t live = 0;
  for (const auto& r : snapshot["stages"]) {
    live += r["ready"].get<int64_t>() + r["delayed"].get<int64_t>() + r["running"].get<int64_t>();
    o << std::left << std::setw(16) << r["stage"].get<std::string>() << std::right << std::setw(8)
      << text(r["ready"]) << std::setw(9) << text(r["delayed"]) << std::setw(9)
      << text(r["retrying"]) << std::setw(9) << text(r["running"]) << std::setw(9)
      << text(r["expired"]) << std::setw(9) << text(r["done"]) << std::setw(7) << text(r["dead"])
      << "  " << duration_text(r["oldest_running_age_ms"]) << " / "
      << duration_text(r["oldest_heartbeat_age_ms"]);
    if (!r["configured"].get<bool>())
      o << "  (not in this config)";
    if (auto lost = r["dead_lost"].get<int64_t>(); lost > 0)
      o << "  (" << lost << " dead lost with their node, not failed)";
    o << "\n";
    for (const auto& w : r["waiting_for_models"])
      o << "    waiting for model " << w["model"].get<std::string>() << " for "
        << duration_text(w["since_ms_ago"]) << " (" << w["node"].get<std::string>() << ": "
        << text(w["calls_waiting"]) << " call(s) waiting): " << w["error"].get<std::string>()
        << "\n";
  }
  o << (live == 0 ? "pipeline idle: nothing ready, delayed or running\n" : "");
}

void latency_table(std::ostringstream& o, const json& snapshot) {
  o << "latency of the last " << actors::latency_window_size
    << " completed attempts (7 days) and timeouts:\n";
  for (const auto& s : snapshot["stages"]) {
    if (!s.contains("latency"))
      continue;
    const auto& l = s["latency"];
    const auto& t = s["timeout"];
    o << "  " << std::left << std::setw(16) << s["stage"].get<std::string>() << std::right
      << std::setw(5) << text(l["samples"]) << " attempts  p50 " << duration_text(l["p50_ms"])
      << "  p95 " << duration_text(l["p95_ms"]) << "  p99 " << duration_text(l["p99_ms"])
      << "  timeout " << duration_text(t["current_ms"]);
    if (t.contains("auto"))
      o << " (auto: p99 x " << t["auto"]["factor"].get<double>() << ", floor "
        << duration_text(t["auto"]["floor_ms"]) << ", ceiling "
        << duration_text(t["auto"]["ceiling_ms"])
        << (t["auto"]["warming_up"].get<bool>() ? ", midpoint until 20 attempts" : "") << ")";
    else if (t["recommended_ms"].is_number())
      o << " (recommended " << duration_text(t["recommended_ms"]) << ": p99 x 2)";
    o << "\n";
  }
}

void models_table(std::ostringstream& o, const json& snapshot) {
  if (!snapshot["models"].empty())
    o << "models (calls answered and tokens in the last minute, all nodes; budget):\n";
  for (const auto& m : snapshot["models"]) {
    o << "  " << std::left << std::setw(16) << m["model"].get<std::string>() << std::right
      << std::setw(6) << text(m["calls_last_minute"]) << " calls";
    if (m["requests_per_minute"].is_number())
      o << " of " << text(m["requests_per_minute"]);
    o << std::setw(10) << text(m["tokens_last_minute"]) << " tokens";
    if (m["tokens_per_minute"].is_number())
      o << " of " << text(m["tokens_per_minute"]);
    o << "  concurrency " << text(m["concurrency"]) << ", " << text(m["in_flight"]) << " in flight";
    if (m["gpu"].is_string())
      o << "  on gpu " << m["gpu"].get<std::string>();
    o << "\n";
  }
}

void runs_and_sinks(std::ostringstream& o, const json& snapshot) {
  o << "runs:\n";
  if (snapshot["runs"].empty())
    o << "  none\n";
  for (const auto& r : snapshot["runs"]) {
    o << "  run " << text(r["id"]) << " '" << r["label"].get<std::string>() << "' into "
      << r["entry_stage"].get<std::string>() << ": " << text(r["items"]) << " items, "
      << text(r["pending"]) << " pending";
    auto elapsed_ms = json(static_cast<int64_t>(r["elapsed_s"].get<double>() * 1000));
    auto by = r.find("cancelled_by"); // absent in snapshots of older versions
    if (by != r.end() && by->is_string())
      o << ", cancelled by " << by->get<std::string>() << " after " << duration_text(elapsed_ms);
    else if (r["finished"].get<bool>())
      o << ", finished after " << duration_text(elapsed_ms);
    else
      o << ", running for " << duration_text(elapsed_ms);
    o << "\n";
  }
  o << "sinks:";
  if (snapshot["sinks"].empty())
    o << " none yet";
  for (const auto& [sink, items] : snapshot["sinks"].items())
    o << " " << sink << "=" << items;
  o << "\n";
}

void nodes_table(std::ostringstream& o, const json& snapshot, bool placed) {
  o << "nodes:";
  if (snapshot["nodes"].empty())
    o << " none has run yet";
  o << "\n";
  for (const auto& n : snapshot["nodes"]) {
    auto state = n["state"].get<std::string>();
    o << "  " << n["name"].get<std::string>() << ": " << state;
    if (state == "alive")
      o << ", seen " << duration_text(n["seen_ms_ago"]) << " ago, up "
        << duration_text(n["started_ms_ago"]) << ", " << text(n["running_messages"])
        << " message(s) leased";
    if (n["address"].is_string()) {
      o << "; at " << n["address"].get<std::string>() << ", peers: " << list_text(n["peers"]);
    }
    if (placed)
      o << "; runs stages " << list_text(n["hosts"]["stages"]) << "; hosts models "
        << list_text(n["hosts"]["models"]);
    else if (state == "stopped")
      o << " " << duration_text(n["stopped_ms_ago"]) << " ago";
    else if (state != "alive")
      o << ": not seen for " << duration_text(n["seen_ms_ago"]) << " (killed or partitioned?)";
    o << "\n";
    for (const auto& [stage, reason] : n["failed_stages"].items())
      o << "    stage " << stage << " FAILED: " << reason.get<std::string>() << "\n";
    for (const auto& [model, outage] : n["unavailable_models"].items())
      o << "    model " << model << " UNAVAILABLE for " << duration_text(outage["since_ms_ago"])
        << ", " << text(outage["calls_waiting"])
        << " call(s) waiting: " << outage["error"].get<std::string>() << "\n";
    if (state == "alive")
      for (const auto& c : n["running_calls"])
        o << "    model " << c["model"].get<std::string>() << " running for "
          << c["stage"].get<std::string>() << " message " << text(c["message_id"]) << ": "
          << duration_text(c["running_ms"]) << ", " << text(c["tokens"]) << " tokens streamed ("
          << std::fixed << std::setprecision(1) << c["tokens_per_s"].get<double>()
          << " tokens/s when last reported)\n"
          << std::defaultfloat;
  }
}

} // namespace

std::string status_text(const json& snapshot) {
  std::ostringstream o;
  stages_table(o, snapshot);
  latency_table(o, snapshot);
  models_table(o, snapshot);
  runs_and_sinks(o, snapshot);
  bool placed = snapshot.value("placement", false);
  nodes_table(o, snapshot, placed);
  return o.str();
}

} // namespace turing::operations
