// The live view of `turing status --watch` and the progress bar of
// `turing run` on a terminal, drawn from the status snapshot.
#include "operations/watch_view.hpp"

#include "operations/status_text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace turing::operations {

using nlohmann::json;

namespace {

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string pad_right(std::string s, std::size_t n) {
  if (s.size() > n)
    s = s.substr(0, n);
  return s + std::string(n - s.size(), ' ');
}

std::string pad_left(std::string s, std::size_t n) {
  if (s.size() > n)
    return s;
  return std::string(n - s.size(), ' ') + s;
}

std::string count(const json& v) {
  return v.is_number() ? v.dump() : std::string{"-"};
}

std::string percent(const json& fraction) {
  return fraction.is_number() ? fixed(fraction.get<double>() * 100.0, 1) + "%" : "-";
}

} // namespace

std::string progress_bar(double fraction, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  auto filled = static_cast<int>(std::floor(fraction * width));
  return "[" + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(width - filled), '.') + "] " +
         pad_left(std::to_string(static_cast<int>(std::floor(fraction * 100.0))), 3) + "%";
}

std::string eta_text(const json& seconds) {
  if (!seconds.is_number() || seconds.get<double>() < 0)
    return "-";
  auto s = static_cast<int64_t>(std::ceil(seconds.get<double>()));
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>((s % 3600) / 60));
  return buf;
}

std::string run_progress_line(const json& run, int bar_width) {
  std::ostringstream o;
  o << "run " << run["id"] << " '" << run["label"].get<std::string>() << "' "
    << progress_bar(run["progress"].get<double>(), bar_width) << "  " << run["done"] << "/"
    << run["items"];
  auto by = run.find("cancelled_by"); // absent in snapshots of older versions
  if (by != run.end() && by->is_string()) {
    o << "  cancelled by " << by->get<std::string>();
    return o.str();
  }
  if (run["finished"].get<bool>()) {
    o << "  done in " << eta_text(run["elapsed_s"]) << ", "
      << fixed(run["items_per_s"].get<double>(), 1) << " items/s";
    return o.str();
  }
  const auto& recent = run["items_per_s_last_minute"];
  auto rate = recent.is_number() ? recent.get<double>() : run["items_per_s"].get<double>();
  o << "  " << fixed(rate, 1) << " items/s  ETA " << eta_text(run["eta_s"]);
  return o.str();
}

std::vector<std::string> watch_frame(const json& snapshot, int width) {
  width = std::max(width, 60);
  std::vector<std::string> lines;
  auto add = [&](std::string line) {
    if (static_cast<int>(line.size()) > width)
      line.resize(static_cast<std::size_t>(width));
    lines.push_back(std::move(line));
  };

  add("turing status --watch  " + snapshot.value("database", std::string{}) +
      "  (q or Ctrl-C quits)");
  add("");
  add("RUNS");
  const auto& runs = snapshot["runs"];
  // Unfinished runs first, then the most recent finished ones, newest first.
  std::vector<const json*> shown;
  for (auto it = runs.rbegin(); it != runs.rend(); ++it)
    if (!(*it)["finished"].get<bool>())
      shown.push_back(&*it);
  for (auto it = runs.rbegin(); it != runs.rend() && shown.size() < 5; ++it)
    if ((*it)["finished"].get<bool>())
      shown.push_back(&*it);
  if (shown.empty())
    add("  none");
  auto bar_width = std::clamp(width - 70, 10, 40);
  for (const auto* r : shown)
    add("  " + run_progress_line(*r, bar_width));
  add("");

  add(pad_right("STAGES", 18) + pad_left("ready", 8) + pad_left("running", 9) +
      pad_left("retrying", 9) + pad_left("dead", 7) + pad_left("done", 9) + pad_left("p50", 8) +
      pad_left("p95", 8) + pad_left("fail", 8) + pad_left("deadline", 10));
  for (const auto& s : snapshot["stages"]) {
    json p50, p95, deadline;
    if (s.contains("latency")) {
      p50 = s["latency"]["p50_ms"];
      p95 = s["latency"]["p95_ms"];
      deadline = s["timeout"]["current_ms"];
    }
    auto ready = s["ready"].get<int64_t>() + s["delayed"].get<int64_t>();
    std::string line =
        "  " + pad_right(s["stage"].get<std::string>(), 16) + pad_left(std::to_string(ready), 8) +
        pad_left(count(s["running"]), 9) + pad_left(count(s["retrying"]), 9) +
        pad_left(count(s["dead"]), 7) + pad_left(count(s["done"]), 9) +
        pad_left(duration_text(p50), 8) + pad_left(duration_text(p95), 8) +
        pad_left(percent(s["last_minute"]["fail_rate"]), 8) + pad_left(duration_text(deadline), 10);
    if (!s["waiting_for_models"].empty())
      line += "  waiting for " + s["waiting_for_models"][0]["model"].get<std::string>();
    add(line);
  }

  if (!snapshot["models"].empty()) {
    add("");
    add(pad_right("MODELS", 18) + pad_left("in flight", 12) + pad_left("calls/s", 9) +
        pad_left("tokens/s", 10) + pad_left("failed", 8) + pad_left("timeout", 9) +
        pad_left("crashed", 9));
    for (const auto& m : snapshot["models"]) {
      const auto& e = m["errors_last_minute"];
      std::string line = "  " + pad_right(m["model"].get<std::string>(), 16) +
                         pad_left(count(m["in_flight"]) + "/" + count(m["concurrency"]), 12) +
                         pad_left(fixed(m["calls_last_minute"].get<double>() / 60.0, 1), 9) +
                         pad_left(fixed(m["tokens_last_minute"].get<double>() / 60.0, 0), 10) +
                         pad_left(count(e["failed"]), 8) + pad_left(count(e["timeout"]), 9) +
                         pad_left(count(e["crashed"]), 9);
      if (!m["unavailable_on"].empty())
        line += "  UNAVAILABLE";
      add(line);
    }
  }

  add("");
  add("NODES");
  if (snapshot["nodes"].empty())
    add("  none has run yet");
  for (const auto& n : snapshot["nodes"]) {
    auto state = n["state"].get<std::string>();
    std::string line = "  " + pad_right(n["name"].get<std::string>(), 16) + " " + state;
    if (state == "alive")
      line += ", " + count(n["running_messages"]) + " leased, seen " +
              duration_text(n["seen_ms_ago"]) + " ago";
    for (const auto& [stage, reason] : n["failed_stages"].items())
      line += "; stage " + stage + " FAILED";
    add(line);
  }
  if (snapshot.contains("error"))
    add("database: " + snapshot["error"].get<std::string>() + " (retrying)");
  return lines;
}

} // namespace turing::operations
