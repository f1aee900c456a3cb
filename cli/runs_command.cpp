// `turing runs` and `turing cancel`: every run's progress and state, and
// stopping a run (its live work dead-lettered, fenced by epoch, audited).
#include "cli/cli_context.hpp"
#include "cli/operations_cli.hpp"
#include "persistence/pg_store.hpp"
#include "persistence/store_error.hpp"

#include <cstdio>
#include <iostream>
#include <spdlog/spdlog.h>

namespace turing::cli {

namespace {

using persistence::json;

const char* state_of(const persistence::run_status& r) {
  if (r.cancelled())
    return "cancelled";
  return r.finished() ? "finished" : "running";
}

/// Finished items (any sink) as a share of the run's items; 100 for none.
double progress_percent(const persistence::run_status& r) {
  if (r.items_total == 0)
    return 100.0;
  return 100.0 * static_cast<double>(r.items_total - r.pending) /
         static_cast<double>(r.items_total);
}

} // namespace

int runs_command(const runs_options& o) {
  auto builtins = make_builtins();
  auto config = load_checked_config(o.config, builtins);
  auto db = open_database(config, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  auto runs = store.runs(o.unfinished);
  if (o.json) {
    json out = json::array();
    for (const auto& r : runs) {
      json j{{"id", r.id},
             {"label", r.label},
             {"entry_stage", r.entry_stage},
             {"created_at", utc_time(r.created_at)},
             {"items", r.items_total},
             {"done", r.items_total - r.pending - r.dead},
             {"dead", r.dead},
             {"pending", r.pending},
             {"progress", progress_percent(r)},
             {"state", state_of(r)},
             {"finished_at", r.finished_at ? json(utc_time(*r.finished_at)) : json()}};
      if (r.cancelled()) {
        j["cancelled_at"] = utc_time(*r.cancelled_at);
        j["cancelled_by"] = r.cancelled_by;
      }
      out.push_back(std::move(j));
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (runs.empty()) {
    std::cout << (o.unfinished ? "no unfinished runs\n" : "no runs\n");
    return 0;
  }
  char line[512];
  std::snprintf(line, sizeof line, "%6s  %-24s  %-24s  %8s  %8s  %8s  %8s  %s\n", "RUN", "LABEL",
                "CREATED", "ITEMS", "DONE", "DEAD", "PROGRESS", "STATE");
  std::cout << line;
  for (const auto& r : runs) {
    auto label = r.label.size() > 24 ? r.label.substr(0, 21) + "..." : r.label;
    std::snprintf(line, sizeof line, "%6lld  %-24s  %-24s  %8lld  %8lld  %8lld  %7.1f%%  %s",
                  static_cast<long long>(r.id), label.c_str(), utc_time(r.created_at).c_str(),
                  static_cast<long long>(r.items_total),
                  static_cast<long long>(r.items_total - r.pending - r.dead),
                  static_cast<long long>(r.dead), progress_percent(r), state_of(r));
    std::cout << line;
    if (r.cancelled())
      std::cout << " (by " << r.cancelled_by << " at " << utc_time(*r.cancelled_at) << ")";
    std::cout << "\n";
  }
  return 0;
}

int cancel_command(const cancel_options& o) {
  auto builtins = make_builtins();
  auto config = load_checked_config(o.config, builtins);
  auto db = open_database(config, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  auto by = acting_operator(o.by);
  persistence::operator_result result;
  try {
    result = store.cancel_run(o.run_id, by);
  } catch (const persistence::store_error& e) {
    if (e.code() == persistence::store_errc::invalid_argument)
      throw usage_error(e.what());
    spdlog::error("cancel: run {}: {}", o.run_id, e.what());
    return 1;
  }
  spdlog::info("cancel: run {} cancelled by {}; {} live message(s) dead-lettered", o.run_id, by,
               result.count());
  std::cout << "cancelled run " << o.run_id << ": " << result.count()
            << " message(s) dead-lettered\n";
  return 0;
}

} // namespace turing::cli
