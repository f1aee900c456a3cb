// Runs a scenario: the real node tree (spawn_node: supervisors, pumps, lease
// keeper, rescuer, model endpoints) on CAF's deterministic test coordinator
// in virtual time, against the memory store or a real PostgreSQL.
#pragma once

#include "actors/builtin_registry.hpp"
#include "replay/scenario.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace turing::replay {

enum class store_kind { memory, postgres };

struct replay_options {
  store_kind store = store_kind::memory;
  /// postgres: the database to use; its `turing` schema is dropped and
  /// migrated afresh for every run.
  std::string connection_string;
  std::shared_ptr<const actors::builtin_registry> builtins;
  /// Runtime log lines from this level up join the trace ("info", "debug").
  std::string trace_level = "info";
  /// 0: virtual time on the test coordinator (deterministic). Else real
  /// time on CAF's threaded scheduler, every duration of the pipeline and
  /// the scenario multiplied by this (0.05: 20 times faster than written).
  double real_time_scale = 0;
};

/// One item's end state, comparable across stores and runs.
struct item_end_state {
  std::string sink;                  ///< "" while unfinished
  std::vector<std::string> attempts; ///< "<stage>:<result>" in order
  persistence::json result;
  friend bool operator==(const item_end_state& a, const item_end_state& b) {
    return a.sink == b.sink && a.attempts == b.attempts && a.result == b.result;
  }
};

struct replay_result {
  std::vector<std::string> trace;
  /// Every expectation or invariant that did not hold; empty = passed.
  std::vector<std::string> failures;
  /// By item key (or "#<id>" for items without one).
  std::map<std::string, item_end_state> end_state;
  double makespan_s = -1; ///< virtual seconds until every run finished; -1 if never
  double virtual_s = 0;   ///< virtual seconds simulated
  bool passed() const { return failures.empty(); }
};

replay_result run_scenario(const scenario& sc, const replay_options& options);

/// Whether the scenario can run in real time (a stall needs the harness to
/// hold an actor's mailbox, which only the test coordinator allows).
bool runs_in_real_time(const scenario& sc);

/// The builtins only scenarios use: sim.pass (outcome "ok", payload through),
/// sim.poison (throws for a payload with "poison": true, else like sim.pass).
void add_simulation_builtins(actors::builtin_registry& registry);

} // namespace turing::replay
