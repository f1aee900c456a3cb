// The skill pipeline end to end: the real turing binary on a real
// PostgreSQL, the simulated model server over HTTP, Lucy as a child process.
#define CAF_SUITE skill_pipeline
#include "persistence/pg_store.hpp"
#include "tests/e2e/e2e_support.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/test/unit_test.hpp>
#include <csignal>
#include <map>
#include <set>

using namespace turing::persistence;
using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

const std::set<std::string> sinks{"committed", "merged", "rejected", "dead"};

struct fixture {
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
    CAF_REQUIRE_EQUAL(rc, 0);
    pg_store s{dsn};
    return s.runs(false).back().id;
  }

  std::map<std::string, int64_t> sink_counts(int64_t run_id) {
    pg_store s{dsn};
    std::map<std::string, int64_t> out;
    for (const auto& c : s.sink_counts(run_id))
      out[c.sink] = c.items;
    return out;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(skill_pipeline_tests, fixture)

CAF_TEST(every_skill_ends_in_exactly_one_sink_and_the_run_drains) {
  model_simulator sim{dir, {"--latency-scale", "0.0005"}};
  auto config = write_owl_config(dir, dsn, sim.endpoint());
  auto run_id = enqueue(config, 300);
  std::string out;
  auto rc = run_turing(dir, {"run", "--config", config.string(), "--until-drained"}, &out);
  CAF_CHECK_EQUAL(rc, 0);
  if (rc != 0)
    CAF_MESSAGE(out);
  check_end_state(run_id, 300);
  auto sinks = sink_counts(run_id);
  CAF_CHECK(sinks["committed"] > 0);
  CAF_CHECK(sinks["merged"] > 0);
  CAF_CHECK(sinks["rejected"] > 0);
  CAF_CHECK_EQUAL(sinks["dead"], 0);
  // Clara A and Clara B disagree sometimes, so the arbitrator ran.
  pg_store s{dsn};
  int64_t arbitrated = 0;
  for (const auto& c : s.counts())
    if (c.stage == "arbitrator")
      arbitrated = c.done;
  CAF_CHECK(arbitrated > 0);
  CAF_CHECK(out.find("startup: found") != std::string::npos);
  std::string report;
  CAF_CHECK_EQUAL(run_turing(dir,
                             {"report", "--config", config.string(), "--sink", "committed",
                              "--group-by", "domain"},
                             &report),
                  0);
  CAF_CHECK(report.find("technology") != std::string::npos);
}

CAF_TEST(sigkill_at_any_moment_then_restart_finishes_every_skill_exactly_once) {
  model_simulator sim{dir, {"--latency-scale", "0.002"}};
  auto config = write_owl_config(dir, dsn, sim.endpoint(),
                                 {{"lease_ttl = \"15s\"", "lease_ttl = \"2s\""},
                                  {"heartbeat_interval = \"3s\"", "heartbeat_interval = \"500ms\""},
                                  {"rescue_interval = \"2s\"", "rescue_interval = \"500ms\""}});
  constexpr size_t items = 250;
  auto run_id = enqueue(config, items);
  pg_store s{dsn};
  auto completed = [&] {
    int64_t n = 0;
    for (const auto& c : s.counts())
      n += c.done;
    return n;
  };
  // Kill points spread over the run: early (Lucy/Alma), middle (Claras,
  // joins), late (arbitration and commits).
  for (int64_t kill_at : {40, 250, 550}) {
    auto node = start_turing(dir, {"run", "--config", config.string()},
                             "kill-" + std::to_string(kill_at) + ".log");
    bool reached = eventually([&] { return completed() >= kill_at; }, 90s);
    CAF_CHECK(reached);
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
  CAF_CHECK_EQUAL(sink_counts(run_id)["dead"], 0);
  // The kills left leases behind that the rescuer returned as lost attempts.
  int64_t lost = 0;
  for (const auto& a : s.attempts(run_id))
    lost += a.result == attempt_result::lost ? 1 : 0;
  CAF_CHECK(lost > 0);
}

CAF_TEST(a_hung_model_slows_only_its_stage_which_times_out_retries_and_dead_letters) {
  auto sim_config = dir.path / "sim.toml";
  std::ofstream{sim_config} << "latency_scale = 0.0005\n"
                               "[models.\"qwen2.5-coder:7b\"]\n"
                               "faults = { hang = 1.0 }\n";
  model_simulator sim{dir, {"--config", sim_config.string()}};
  // Clara B (qwen) hangs on every call: 1 s timeout, 2 attempts.
  auto config = write_owl_config(
      dir, dsn, sim.endpoint(),
      {{"model = \"qwen\"\nprompt_file", "model = \"qwen\"\nretry = { max_attempts = 2, backoff = "
                                         "\"100ms\" }\nprompt_file"}});
  {
    // The stage's own timeout line follows its routes; set it to 1 s.
    std::ifstream in{config};
    std::stringstream ss;
    ss << in.rdbuf();
    auto text = ss.str();
    auto at = text.find("[stages.clara_b]");
    auto t = text.find("timeout = \"20s\"", at);
    text.replace(t, std::string("timeout = \"20s\"").size(), "timeout = \"1s\"");
    std::ofstream{config} << text;
  }
  constexpr size_t items = 60;
  auto run_id = enqueue(config, items);
  std::string out;
  auto rc = run_turing(dir, {"run", "--config", config.string(), "--until-drained"}, &out);
  CAF_CHECK_EQUAL(rc, 0);
  check_end_state(run_id, items);
  pg_store s{dsn};
  std::map<std::string, stage_counts> by_stage;
  for (const auto& c : s.counts())
    by_stage[c.stage] = c;
  // Every item that reached the Claras died on Clara B; Clara A did all of them.
  auto reached = by_stage["clara_a"].done;
  CAF_CHECK(reached > 0);
  CAF_CHECK_EQUAL(by_stage["clara_b"].dead, reached);
  CAF_CHECK_EQUAL(by_stage["clara_b"].done, 0);
  CAF_CHECK_EQUAL(by_stage["commit"].done, 0);
  CAF_CHECK_EQUAL(sink_counts(run_id)["dead"], reached);
  int64_t timeouts = 0;
  for (const auto& a : s.attempts(run_id))
    if (a.stage == "clara_b" && a.result == attempt_result::timeout)
      ++timeouts;
  CAF_CHECK_EQUAL(timeouts, 2 * reached);
}

CAF_TEST(sigterm_drains_then_releases_in_flight_work_and_a_restart_resumes_it) {
  // Slow models and a short grace: some calls cannot finish and are released.
  model_simulator sim{dir, {"--latency-scale", "0.02"}};
  auto config = write_owl_config(dir, dsn, sim.endpoint(),
                                 {{"shutdown_grace = \"10s\"", "shutdown_grace = \"300ms\""}});
  constexpr size_t items = 120;
  auto run_id = enqueue(config, items);
  pg_store s{dsn};
  auto running_models = [&] {
    int64_t n = 0;
    for (const auto& c : s.counts())
      if (c.stage == "alma" || c.stage == "clara_a" || c.stage == "clara_b")
        n += c.running;
    return n;
  };
  auto node = start_turing(dir, {"run", "--config", config.string()}, "sigterm.log");
  CAF_REQUIRE(eventually([&] { return running_models() >= 4; }, 60s));
  node.signal(SIGTERM);
  CAF_CHECK_EQUAL(node.wait(20s), 0);
  auto log = node.output();
  CAF_CHECK(log.find("signal received") != std::string::npos);
  for (const auto& c : s.counts())
    CAF_CHECK_EQUAL(c.running, 0); // finished or released, nothing left leased
  int64_t released = 0;
  for (const auto& a : s.attempts(run_id))
    released += a.result == attempt_result::released ? 1 : 0;
  CAF_CHECK(released > 0);
  // A released message's attempt was not consumed: its next claim is the
  // same attempt number again.
  std::string out;
  CAF_CHECK_EQUAL(run_turing(dir, {"run", "--config", config.string(), "--until-drained"}, &out),
                  0);
  check_end_state(run_id, items);
  std::map<int64_t, std::vector<attempt_record>> by_message;
  for (const auto& a : s.attempts(run_id))
    by_message[a.message_id].push_back(a);
  int checked = 0;
  for (const auto& [id, list] : by_message)
    for (size_t i = 0; i + 1 < list.size(); ++i)
      if (list[i].result == attempt_result::released) {
        CAF_CHECK_EQUAL(list[i + 1].attempt, list[i].attempt);
        ++checked;
      }
  CAF_CHECK(checked > 0);
}

CAF_TEST(a_second_sigint_exits_at_once) {
  model_simulator sim{dir, {"--latency-scale", "0.02"}};
  auto config = write_owl_config(dir, dsn, sim.endpoint());
  enqueue(config, 60);
  pg_store s{dsn};
  auto node = start_turing(dir, {"run", "--config", config.string()}, "sigint.log");
  CAF_REQUIRE(eventually(
      [&] {
        for (const auto& c : s.counts())
          if (c.running > 0)
            return true;
        return false;
      },
      60s));
  node.signal(SIGINT);
  // Two signals sent at once merge into one pending signal: send the second
  // once the first is being handled.
  CAF_REQUIRE(
      eventually([&] { return node.output().find("signal received") != std::string::npos; }, 10s));
  node.signal(SIGINT);
  CAF_CHECK_EQUAL(node.wait(5s), 130);
}

CAF_TEST(an_invalid_config_is_rejected_naming_file_line_and_key) {
  auto config = dir.path / "broken.toml";
  std::ofstream{config} << "sinks = [\"done\"]\n"
                           "[stages.a]\n"
                           "handler = \"builtin\"\n"
                           "entry = true\n"
                           "function = \"owl.commit\"\n"
                           "concurency = 2\n"
                           "routes = { committed = \"done\" }\n";
  std::string out;
  auto rc = run_turing(dir, {"validate", "--config", config.string()}, &out);
  CAF_CHECK_EQUAL(rc, 2);
  CAF_CHECK(out.find("broken.toml:6") != std::string::npos);
  CAF_CHECK(out.find("stages.a.concurency") != std::string::npos);
  CAF_CHECK(out.find("concurrency") != std::string::npos);
}

CAF_TEST(an_unreachable_database_is_one_line_and_a_non_zero_exit) {
  auto config = dir.path / "nodb.toml";
  std::ofstream{config} << "sinks = [\"done\"]\n"
                           "[database]\n"
                           "url = \"host=/nonexistent dbname=x user=x\"\n"
                           "[stages.a]\n"
                           "handler = \"builtin\"\n"
                           "entry = true\n"
                           "function = \"owl.commit\"\n"
                           "routes = { committed = \"done\" }\n";
  std::string out;
  auto rc = run_turing(dir, {"status", "--config", config.string()}, &out);
  CAF_CHECK_EQUAL(rc, 1);
  CAF_CHECK(out.find("/nonexistent") != std::string::npos);
}

CAF_TEST_FIXTURE_SCOPE_END()
