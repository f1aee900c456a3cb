// The skill pipeline end to end: the real turing binary on a real
// PostgreSQL, the simulated model server over HTTP, Lucy as a child process.
#define CAF_SUITE skill_pipeline
#include "persistence/migrations.hpp"
#include "tests/e2e/skill_pipeline_fixture.hpp"

#include <pqxx/pqxx>

using namespace turing::persistence;
using namespace turing::testing;
using namespace std::chrono_literals;

using fixture = turing::testing::skill_pipeline_fixture;

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

// Issue 4: `turing record` turns a real run (PostgreSQL, the HTTP model
// server with faults, Lucy as a process) into a scenario, and `turing replay`
// reaches the same end state per item in simulation: sink, result, and each
// stage's attempt results in order.
CAF_TEST(a_recorded_run_replays_in_simulation_to_the_same_end_state_per_item) {
  auto sim_config = dir.path / "sim.toml";
  std::ofstream{sim_config} << "latency_scale = 0.0005\n"
                               "[models.\"mistral-nemo:12b\"]\n"
                               "faults = { http_500 = 0.08, garbage = 0.08 }\n"
                               "[models.\"qwen2.5-coder:7b\"]\n"
                               "faults = { http_500 = 0.08, garbage = 0.08 }\n";
  model_simulator sim{dir, {"--config", sim_config.string()}};
  auto config = write_owl_config(dir, dsn, sim.endpoint());
  auto run_id = enqueue(config, 120);
  std::string out;
  CAF_REQUIRE_EQUAL(run_turing(dir, {"run", "--config", config.string(), "--until-drained"}, &out),
                    0);
  check_end_state(run_id, 120);

  auto recorded = dir.path / "recorded.toml";
  CAF_REQUIRE_EQUAL(run_turing(dir,
                               {"record", "--config", config.string(), "--run",
                                std::to_string(run_id), "--out", recorded.string()},
                               &out),
                    0);
  std::ifstream in{recorded};
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  // The faults were recorded, so the replay has failures and retries to reproduce.
  CAF_CHECK(text.find("http_status = 500") != std::string::npos);

  std::string replayed;
  auto rc = run_turing(dir, {"replay", recorded.string()}, &replayed);
  CAF_CHECK_EQUAL(rc, 0);
  CAF_CHECK(replayed.find("PASS  recorded_run_") != std::string::npos);
  if (rc != 0)
    CAF_MESSAGE(replayed.substr(0, 4000));

  // The comparison can fail: one item's recorded sink changed, and the
  // replay says which item differs.
  auto tampered = dir.path / "tampered.toml";
  auto at = text.find("[[expect.items]]");
  CAF_REQUIRE(at != std::string::npos);
  auto sink_at = text.find("sink = \"", at);
  CAF_REQUIRE(sink_at != std::string::npos);
  auto sink_end = text.find('\n', sink_at);
  text.replace(sink_at, sink_end - sink_at, "sink = \"rejected_by_nobody\"");
  std::ofstream{tampered} << text;
  CAF_CHECK_EQUAL(run_turing(dir, {"replay", "--once", tampered.string()}, &replayed), 1);
  CAF_CHECK(replayed.find("expected rejected_by_nobody") != std::string::npos);
}

CAF_TEST(sigkill_at_any_moment_then_restart_finishes_every_skill_exactly_once) {
  // Kill points spread over the run: early (Lucy/Alma), middle (Claras,
  // joins), late (arbitration and commits).
  sigkill_and_restart(250, {40, 250, 550});
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
  CAF_CHECK_EQUAL(items_in(run_id, "dead"), reached);
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
  for (const auto& [id, list] : by_message) {
    // Late results (a call that answered after its release) are audit rows,
    // not claims: the next claim is the next row that is not one.
    std::vector<attempt_record> claims;
    for (const auto& a : list)
      if (a.result != attempt_result::late_result)
        claims.push_back(a);
    for (size_t i = 0; i + 1 < claims.size(); ++i)
      if (claims[i].result == attempt_result::released) {
        CAF_CHECK_EQUAL(claims[i + 1].attempt, claims[i].attempt);
        ++checked;
      }
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

CAF_TEST(an_items_file_with_a_line_postgresql_refuses_enqueues_nothing_and_names_the_line) {
  // Issue 8, defect 3: line 5,001 holds a string PostgreSQL refuses; before,
  // the first 5,000 items were committed and turing exited with a raw SQLSTATE.
  auto config = write_owl_config(dir, dsn, "http://127.0.0.1:9");
  {
    pqxx::connection c{dsn};
    migrate(c);
  }
  auto file = dir.path / "items.jsonl";
  {
    std::ofstream out{file};
    for (int i = 1; i <= 6000; ++i) {
      if (i == 5001)
        out << "{\"key\": \"k5001\", \"name\": \"nul \\u0000 here\"}\n";
      else
        out << "{\"key\": \"k" << i << "\", \"name\": \"skill " << i << "\"}\n";
    }
  }
  std::string out;
  auto rc = run_turing(
      dir, {"enqueue", "--config", config.string(), "--stage", "lucy", "--file", file.string()},
      &out);
  CAF_CHECK_EQUAL(rc, 2);
  CAF_CHECK(out.find("items.jsonl:5001:") != std::string::npos);
  CAF_CHECK(out.find("U+0000") != std::string::npos);
  CAF_CHECK(out.find("nothing was enqueued") != std::string::npos);
  CAF_MESSAGE(out);
  pg_store s{dsn};
  CAF_CHECK(s.runs(false).empty());
  // The same file without the bad line goes in whole, as one run.
  {
    std::ofstream fixed{file};
    for (int i = 1; i <= 6000; ++i)
      fixed << "{\"key\": \"k" << i << "\", \"name\": \"skill " << i << "\"}\n";
  }
  rc = run_turing(
      dir, {"enqueue", "--config", config.string(), "--stage", "lucy", "--file", file.string()},
      &out);
  CAF_CHECK_EQUAL(rc, 0);
  auto runs = s.runs(false);
  CAF_REQUIRE_EQUAL(runs.size(), 1u);
  CAF_CHECK_EQUAL(runs[0].items_total, 6000);
}

CAF_TEST(enqueue_takes_keys_from_the_key_field_and_skips_keys_it_has) {
  // Lines go to PostgreSQL as they are; the key is read there, as the check
  // read it: a string, or an integer's digits (past INT64_MAX too).
  auto config = write_owl_config(dir, dsn, "http://127.0.0.1:9");
  {
    pqxx::connection c{dsn};
    migrate(c);
  }
  auto file = dir.path / "keyed.jsonl";
  std::ofstream{file} << "{\"id\": \"s-1\", \"name\": \"a\"}\n"
                      << "  \n"
                      << "{\"id\": 42, \"name\": \"b\"}\n"
                      << "{\"id\": 18446744073709551615, \"name\": \"c\"}\n"
                      << "{\"name\": \"no key\", \"n\": 1.50}\n"
                      << "{\"id\": \"s-1\", \"name\": \"a again\"}\n";
  std::string out;
  auto args = std::vector<std::string>{"enqueue", "--config",    config.string(), "--stage", "lucy",
                                       "--file",  file.string(), "--key-field",   "id"};
  CAF_REQUIRE_EQUAL(run_turing(dir, args, &out), 0);
  CAF_CHECK(out.find("enqueued 4 into lucy (1 duplicates skipped)") != std::string::npos);
  CAF_REQUIRE_EQUAL(run_turing(dir, args, &out), 0);
  CAF_CHECK(out.find("enqueued 0 into lucy (5 duplicates skipped)") == std::string::npos);
  CAF_CHECK(out.find("enqueued 1 into lucy (4 duplicates skipped)") != std::string::npos);
  CAF_MESSAGE(out);
  pg_store s{dsn};
  auto runs = s.runs(false);
  CAF_REQUIRE_EQUAL(runs.size(), 2u);
  auto first = std::min(runs[0].id, runs[1].id);
  auto items = s.items(first);
  CAF_REQUIRE_EQUAL(items.size(), 4u);
  CAF_CHECK_EQUAL(items[0].key.value_or(""), "s-1");
  CAF_CHECK_EQUAL(items[0].payload["name"], "a");
  CAF_CHECK_EQUAL(items[1].key.value_or(""), "42");
  CAF_CHECK_EQUAL(items[2].key.value_or(""), "18446744073709551615");
  CAF_CHECK(!items[3].key.has_value());
  CAF_CHECK_EQUAL(items[3].payload["n"], 1.5);
}

CAF_TEST(an_item_over_max_payload_enqueues_nothing_and_names_its_line_and_size) {
  // Issue 10: the limit is checked before anything is written.
  auto config = write_owl_config(dir, dsn, "http://127.0.0.1:9",
                                 {{"[runtime]\n", "[runtime]\nmax_payload = \"4KB\"\n"}});
  {
    pqxx::connection c{dsn};
    migrate(c);
  }
  auto file = dir.path / "big.jsonl";
  {
    std::ofstream out{file};
    out << "{\"key\": \"k1\", \"name\": \"small\"}\n";
    out << "{\"key\": \"k2\", \"name\": \"" << std::string(5000, 'x') << "\"}\n";
    out << "{\"key\": \"k3\", \"name\": \"" << std::string(4000, 'y')
        << "\"}\n"; // 4,022 bytes: fits
  }
  std::string out;
  auto rc = run_turing(
      dir, {"enqueue", "--config", config.string(), "--stage", "lucy", "--file", file.string()},
      &out);
  CAF_MESSAGE(out);
  CAF_CHECK_EQUAL(rc, 2);
  CAF_CHECK(out.find("big.jsonl:2: item is 4.9 KB (5022 bytes), over runtime.max_payload 4 KB") !=
            std::string::npos);
  CAF_CHECK(out.find("big.jsonl:3:") == std::string::npos);
  CAF_CHECK(out.find("nothing was enqueued") != std::string::npos);
  pg_store s{dsn};
  CAF_CHECK(s.runs(false).empty());
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
