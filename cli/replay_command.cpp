// `turing replay`: runs scenario files in the deterministic simulation, twice
// to show the trace repeats exactly, and optionally on a real PostgreSQL to
// show both stores reach the same end state.
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "persistence/embedded_cluster.hpp"
#include "persistence/pg_store.hpp"
#include "replay/simulation.hpp"

#include <chrono>
#include <iostream>
#include <spdlog/spdlog.h>

namespace turing::cli {

namespace {

void print_trace(const replay::replay_result& r) {
  for (const auto& line : r.trace)
    std::cout << "    " << line << "\n";
}

/// The first line where two traces differ, for the report.
std::string first_difference(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    auto x = i < a.size() ? a[i] : "(end of trace)";
    auto y = i < b.size() ? b[i] : "(end of trace)";
    if (x != y)
      return "line " + std::to_string(i + 1) + ":\n      first:  " + x + "\n      second: " + y;
  }
  return "";
}

std::string describe(const replay::item_end_state& e) {
  std::string s = "sink " + (e.sink.empty() ? std::string("(none)") : e.sink) + ", attempts [";
  for (size_t i = 0; i < e.attempts.size(); ++i)
    s += (i ? ", " : "") + e.attempts[i];
  return s + "], result " + e.result.dump();
}

/// Differences between two end states, one line per item.
std::vector<std::string> compare_end_states(const std::map<std::string, replay::item_end_state>& a,
                                            const std::map<std::string, replay::item_end_state>& b,
                                            const char* a_name, const char* b_name) {
  std::vector<std::string> out;
  for (const auto& [key, x] : a) {
    auto it = b.find(key);
    if (it == b.end())
      out.push_back("item " + key + ": only in " + a_name);
    else if (!(x == it->second))
      out.push_back("item " + key + ": " + a_name + ": " + describe(x) + "; " + b_name + ": " +
                    describe(it->second));
  }
  for (const auto& [key, y] : b)
    if (!a.count(key))
      out.push_back("item " + key + ": only in " + b_name);
  return out;
}

/// A real-time run against the deterministic reference: the same outcome
/// (sink and result) for every item, invariants kept, every run finished.
/// Timing expectations are reported, not judged: threads and scaling move
/// them by design.
int replay_in_real_time(const replay::scenario& sc, const std::string& title,
                        replay::replay_options ro, const cli::replay_options& o) {
  if (!replay::runs_in_real_time(sc)) {
    std::cout << "SKIP  " << title << ": a stall needs virtual time\n";
    return 0;
  }
  auto reference_options = ro;
  reference_options.store = replay::store_kind::memory;
  reference_options.real_time_scale = 0;
  auto reference = replay::run_scenario(sc, reference_options);
  ro.real_time_scale = o.real_time_scale;
  auto began = std::chrono::steady_clock::now();
  auto r = replay::run_scenario(sc, ro);
  auto wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  std::vector<std::string> problems, notes;
  for (const auto& f : r.failures)
    (f.rfind("invariant violated", 0) == 0 || f.rfind("run ", 0) == 0 ||
             f.rfind("timeline:", 0) == 0 || f.rfind("the pipeline", 0) == 0
         ? problems
         : notes)
        .push_back(f);
  for (const auto& [key, ref] : reference.end_state) {
    auto it = r.end_state.find(key);
    if (it == r.end_state.end())
      problems.push_back("item " + key + ": missing in the real-time run");
    else if (it->second.sink != ref.sink || it->second.result != ref.result)
      problems.push_back("item " + key + ": real time: " + describe(it->second) +
                         "; virtual: " + describe(ref));
  }
  const char* store = ro.store == replay::store_kind::memory ? "memory" : "postgres";
  char figures[160];
  std::snprintf(figures, sizeof figures, "%.2f s real for %.1f s of scenario time (x%.0f) on %s",
                wall_s, r.virtual_s, 1.0 / o.real_time_scale, store);
  if (!problems.empty()) {
    std::cout << "FAIL  " << title << ": " << figures << "\n";
    for (const auto& p : problems)
      std::cout << "    - " << p << "\n";
    print_trace(r);
    return 1;
  }
  std::cout << "PASS  " << title << ": " << figures << ", same outcome as the virtual run"
            << (notes.empty() ? "" : " (" + std::to_string(notes.size()) + " timing note(s))")
            << "\n";
  for (const auto& n : notes)
    std::cout << "    ~ " << n << "\n";
  if (o.print_trace)
    print_trace(r);
  return 0;
}

} // namespace

int replay_command(const replay_options& o) {
  auto registry = std::make_shared<actors::builtin_registry>(make_builtins());
  replay::add_simulation_builtins(*registry);

  std::optional<persistence::embedded_cluster> cluster;
  std::string connection_string = o.database_url;
  // Each replay drops the database's turing schema: never let that be a
  // database that holds real work.
  if (!connection_string.empty() && connection_string.find("replay") == std::string::npos)
    throw usage_error("replay: --database " + persistence::describe_connection(connection_string) +
                      " does not name a replay database; each replay drops its turing schema, so "
                      "the database name must contain \"replay\" (e.g. turing_replay)");
  bool needs_postgres = o.store == "postgres" || o.compare_stores;
  if (needs_postgres && connection_string.empty()) {
    persistence::embedded_cluster_options options;
    options.data_dir = o.data_dir;
    options.database = "turing_replay";
    cluster = persistence::embedded_cluster::ensure_running(options);
    connection_string = cluster->connection_string();
    spdlog::info("replay: PostgreSQL: embedded cluster at {}: {}", cluster->cluster_dir().string(),
                 cluster->found_state());
  }

  int passed = 0, failed = 0, expected_failures = 0, unusable = 0;
  for (const auto& file : o.files) {
    replay::scenario sc;
    try {
      sc = replay::load_scenario(file);
    } catch (const replay::scenario_error& e) {
      std::cout << "ERROR " << file.string() << ":\n" << e.what() << "\n";
      ++unusable;
      ++failed;
      continue;
    }
    replay::replay_options ro;
    ro.builtins = registry;
    ro.trace_level = o.trace_level;
    ro.store = o.store == "postgres" ? replay::store_kind::postgres : replay::store_kind::memory;
    ro.connection_string = connection_string;

    std::string title =
        sc.name + (sc.incident ? " (incident " + std::to_string(sc.incident) + ")" : "");
    if (o.real_time_scale > 0) {
      if (replay_in_real_time(sc, title, ro, o) == 0)
        ++passed;
      else
        ++failed;
      continue;
    }
    auto began = std::chrono::steady_clock::now();
    auto first = replay::run_scenario(sc, ro);
    std::vector<std::string> problems = first.failures;
    bool identical = true;
    if (o.repeat_check) {
      auto second = replay::run_scenario(sc, ro);
      if (second.trace != first.trace) {
        identical = false;
        problems.push_back("the second run's trace differs from the first's at " +
                           first_difference(first.trace, second.trace));
      }
    }
    if (o.compare_stores) {
      auto other = ro;
      other.store = ro.store == replay::store_kind::memory ? replay::store_kind::postgres
                                                           : replay::store_kind::memory;
      auto r = replay::run_scenario(sc, other);
      const char* a = ro.store == replay::store_kind::memory ? "memory" : "postgres";
      const char* b = ro.store == replay::store_kind::memory ? "postgres" : "memory";
      for (const auto& d : compare_end_states(first.end_state, r.end_state, a, b))
        problems.push_back("stores disagree: " + d);
      for (const auto& f : r.failures)
        problems.push_back(std::string("on ") + b + ": " + f);
      // Same virtual clock, same decisions: the stores must tell the same story.
      if (r.trace != first.trace)
        problems.push_back(std::string("the ") + b + " store's trace differs from the " + a +
                           " store's at " + first_difference(first.trace, r.trace));
    }
    auto wall_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();

    char figures[200];
    std::snprintf(
        figures, sizeof figures, "%.1f s virtual, makespan %s, %zu trace lines, %.0f ms",
        first.virtual_s,
        first.makespan_s < 0 ? "-" : (std::to_string(first.makespan_s).substr(0, 6) + " s").c_str(),
        first.trace.size(), wall_ms);
    bool ok = problems.empty();
    if (!sc.expected_failure.empty()) {
      if (ok) {
        std::cout << "XPASS " << title << ": passes although marked expected_failure (\""
                  << sc.expected_failure << "\"); remove the marker\n";
        ++failed;
      } else {
        std::cout << "XFAIL " << title << ": fails as expected: " << sc.expected_failure << "\n";
        for (const auto& p : problems)
          std::cout << "    - " << p << "\n";
        ++expected_failures;
      }
      if (o.print_trace)
        print_trace(first);
      continue;
    }
    if (ok) {
      std::cout << "PASS  " << title << ": " << figures
                << (o.repeat_check && identical ? ", trace identical twice" : "")
                << (o.compare_stores ? ", memory and postgres agree (same trace)" : "") << "\n";
      ++passed;
      if (o.print_trace)
        print_trace(first);
    } else {
      std::cout << "FAIL  " << title << ": " << figures << "\n";
      for (const auto& p : problems)
        std::cout << "    - " << p << "\n";
      std::cout << "  trace (" << (ro.store == replay::store_kind::memory ? "memory" : "postgres")
                << " store):\n";
      print_trace(first);
      ++failed;
    }
  }
  std::cout << passed << " passed, " << failed << " failed, " << expected_failures
            << " expected failure(s)\n";
  if (cluster && cluster->started_here())
    persistence::embedded_cluster::stop(o.data_dir);
  if (unusable > 0)
    return 2; // a scenario file we could not read is bad input
  return failed == 0 ? 0 : 1;
}

} // namespace turing::cli
