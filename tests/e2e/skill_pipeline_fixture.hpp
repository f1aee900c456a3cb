// The skill pipeline end-to-end fixture: a private database, the real
// turing binary, and the checks every run's end state must pass.
#pragma once

#include "persistence/pg_store.hpp"
#include "tests/e2e/e2e_support.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/test/unit_test.hpp>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace turing::testing {

using namespace turing::persistence;
using namespace std::chrono_literals;

inline const std::set<std::string> sinks{"committed", "merged", "rejected", "dead"};

struct skill_pipeline_fixture {
  temp_dir dir;
  std::string dsn = pg_test_cluster::instance().fresh_database();

  /// The end state every run must reach: each item finished in exactly one
  /// known sink, nothing ready or running, no item committed twice.
  void check_end_state(int64_t run_id, size_t items) {
    pg_store s{dsn};
    auto run = s.run(run_id).value();
    CAF_CHECK_EQUAL(run.items_total, static_cast<int64_t>(items));
    CAF_CHECK_EQUAL(run.pending, 0);
    for (const auto& c : s.counts()) {
      CAF_CHECK_EQUAL(c.ready + c.delayed + c.running, 0);
      if (c.ready + c.delayed + c.running != 0)
        CAF_MESSAGE("stage " << c.stage << " still has work");
    }
    auto all = s.items(run_id);
    CAF_CHECK_EQUAL(all.size(), items);
    size_t finished_in_known_sink = 0;
    for (const auto& i : all)
      if (i.finished && i.sink && sinks.count(*i.sink))
        ++finished_in_known_sink;
    CAF_CHECK_EQUAL(finished_in_known_sink, items);
    std::map<int64_t, int> commits;
    for (const auto& a : s.attempts(run_id))
      if (a.stage == "commit" && a.result == attempt_result::completed)
        ++commits[a.item_id];
    int twice = 0;
    for (const auto& [item, n] : commits)
      twice += n > 1 ? 1 : 0;
    CAF_CHECK_EQUAL(twice, 0);
    auto violations = s.check_invariants();
    for (const auto& v : violations)
      CAF_MESSAGE("invariant violated: " << v);
    CAF_CHECK(violations.empty());
  }

  int64_t enqueue(const std::filesystem::path& config, size_t n) {
    std::string out;
    auto file = write_skills(dir, n);
    auto rc = run_turing(
        dir, {"enqueue", "--config", config.string(), "--stage", "lucy", "--file", file.string()},
        &out);
    if (rc != 0)
      CAF_MESSAGE("turing enqueue exited " << rc << ":\n" << out);
    CAF_REQUIRE_EQUAL(rc, 0);
    pg_store s{dsn};
    return s.runs(false).back().id;
  }

  /// Runs the pipeline on `items` skills, SIGKILLs the node each time the
  /// number of completed messages passes a kill point, restarts it, and
  /// finally runs it until drained: every item must end exactly once.
  void sigkill_and_restart(size_t items, const std::vector<int64_t>& kill_points) {
    model_simulator sim{dir, {"--latency-scale", "0.002"}};
    auto config =
        write_owl_config(dir, dsn, sim.endpoint(),
                         {{"lease_ttl = \"15s\"", "lease_ttl = \"2s\""},
                          {"heartbeat_interval = \"3s\"", "heartbeat_interval = \"500ms\""},
                          {"rescue_interval = \"2s\"", "rescue_interval = \"500ms\""}});
    auto run_id = enqueue(config, items);
    pg_store s{dsn};
    auto completed = [&] {
      int64_t n = 0;
      for (const auto& c : s.counts())
        n += c.done;
      return n;
    };
    for (auto kill_at : kill_points) {
      auto node = start_turing(dir, {"run", "--config", config.string()},
                               "kill-" + std::to_string(kill_at) + ".log");
      CAF_CHECK(eventually([&] { return completed() >= kill_at; }, 120s));
      node.signal(SIGKILL);
      CAF_CHECK_EQUAL(node.wait(10s), 128 + SIGKILL);
      CAF_MESSAGE("killed at " << completed() << " completed messages");
    }
    std::string out;
    auto rc = run_turing(dir, {"run", "--config", config.string(), "--until-drained"}, &out);
    CAF_CHECK_EQUAL(rc, 0);
    if (rc != 0)
      CAF_MESSAGE(out);
    check_end_state(run_id, items);
    CAF_CHECK_EQUAL(items_in(run_id, "dead"), 0);
    // The kills left leases behind that the rescuer returned as lost attempts.
    int64_t lost = 0;
    for (const auto& a : s.attempts(run_id))
      lost += a.result == attempt_result::lost ? 1 : 0;
    CAF_CHECK(lost > 0);
  }

  std::map<std::string, int64_t> sink_counts(int64_t run_id) {
    pg_store s{dsn};
    std::map<std::string, int64_t> out;
    for (const auto& c : s.sink_counts(run_id))
      out[c.sink] = c.items;
    return out;
  }

  /// By value: CAF's check macros keep references to their arguments, which
  /// must not point into a temporary map.
  int64_t items_in(int64_t run_id, const std::string& sink) {
    auto counts = sink_counts(run_id);
    auto it = counts.find(sink);
    return it == counts.end() ? 0 : it->second;
  }
};

} // namespace turing::testing
