// The operator's dead-letter workflow end to end: a hung model dead-letters a
// run's items; `turing dead list` shows why, with each attempt; once the model
// is healthy, `turing dead retry --run R` and `turing run --until-drained`
// bring every item to its sink; `turing check` holds; `turing audit` says who
// retried which messages, when.
#define CAF_SUITE dead_letters
#include "tests/e2e/skill_pipeline_fixture.hpp"

#include <nlohmann/json.hpp>

using namespace turing::persistence;
using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

/// One model stage "ask" on model "first": a call that sends nothing for 1 s
/// times out (idle_timeout); two attempts, then the dead letter.
std::string pipeline(const std::string& dsn, const std::string& endpoint,
                     const std::string& retry = "{ max_attempts = 2, backoff = \"100ms\" }") {
  return "model_endpoint = \"" + endpoint + "\"\nsinks = [\"done\"]\n[database]\nurl = \"" + dsn +
         R"("
[runtime]
poll_interval = "200ms"
[models.first]
api = "ollama"
model = "sim-first"
concurrency = 4
idle_timeout = "1s"
[stages.ask]
handler = "model"
entry = true
model = "first"
concurrency = 4
prompt = "task: classify\nskill: {name}"
outcome = "answered"
required_fields = ["domain"]
timeout = "20s"
routes = { answered = "done" }
retry = )" +
         retry + "\n";
}

/// The simulator with `config`, on `port` (0: any free one); waits until it listens.
std::unique_ptr<child_process> start_simulator(const temp_dir& dir, const fs::path& config,
                                               int port, const std::string& name, int& bound) {
  auto port_file = dir.path / (name + ".port");
  auto sim = std::make_unique<child_process>(
      std::vector<std::string>{TURING_MODEL_SIM_EXE, "--port", std::to_string(port), "--port-file",
                               port_file.string(), "--log-level", "warn", "--config",
                               config.string()},
      dir.path / (name + ".log"));
  CAF_REQUIRE(
      eventually([&] { return fs::exists(port_file) && fs::file_size(port_file) > 0; }, 20s));
  std::ifstream{port_file} >> bound;
  return sim;
}

/// `n` items keyed s0.. for stage ask.
fs::path write_items(const temp_dir& dir, int n) {
  std::string lines;
  for (int i = 0; i < n; ++i)
    lines += "{\"key\": \"s" + std::to_string(i) + "\", \"name\": \"rust compilers " +
             std::to_string(i) + "\"}\n";
  return write_file(dir, "items.jsonl", lines);
}

/// The JSON a command printed on stdout: from its first line that is "[",
/// "{" or "[]" (log lines on stderr, interleaved here, start "[2026-...").
json json_of(const std::string& out) {
  for (size_t at = 0; at < out.size();) {
    auto end = out.find('\n', at);
    auto line = out.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (line == "[" || line == "{" || line == "[]") {
      std::istringstream in{out.substr(at)}; // one value; log lines may follow it
      json j;
      in >> j;
      return j;
    }
    if (end == std::string::npos)
      break;
    at = end + 1;
  }
  CAF_MESSAGE("no JSON in: " << out);
  return json();
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(dead_letters_tests, skill_pipeline_fixture)

CAF_TEST(dead_letters_of_a_hung_model_are_retried_by_the_operator_and_reach_the_sink) {
  auto hung = write_file(dir, "hung.toml",
                         "latency_scale = 0.001\n[models.\"sim-first\"]\n"
                         "faults = { hang = 1.0 }\n");
  auto healthy = write_file(dir, "healthy.toml",
                            "latency_scale = 0.001\n[models.\"sim-first\"]\np50_ms = 200\n");
  int port = 0;
  auto sim = start_simulator(dir, hung, 0, "sim-hung", port);
  auto config =
      write_file(dir, "pipeline.toml", pipeline(dsn, "http://127.0.0.1:" + std::to_string(port)));
  auto items = write_items(dir, 4);
  std::string out;
  CAF_REQUIRE(turing_ok(
      dir, {"enqueue", "--config", config.string(), "--stage", "ask", "--file", items.string()},
      out));
  auto run_id = pg_store{dsn}.runs(false).back().id;
  auto run_arg = std::to_string(run_id);

  // Every call hangs: two attempts each, then the dead letter.
  CAF_REQUIRE(turing_ok(dir, {"run", "--config", config.string(), "--until-drained"}, out));
  CAF_REQUIRE_EQUAL(items_in(run_id, "dead"), 4);

  // dead list shows the reason and every attempt.
  CAF_REQUIRE(turing_ok(dir,
                        {"--log-level", "warn", "dead", "list", "--config", config.string(),
                         "--run", run_arg, "--json"},
                        out));
  auto dead = json_of(out);
  CAF_REQUIRE_EQUAL(dead.size(), 4u);
  std::vector<int64_t> dead_ids;
  for (const auto& d : dead) {
    dead_ids.push_back(d["message_id"].get<int64_t>());
    CAF_CHECK_EQUAL(d["stage"], "ask");
    CAF_CHECK_EQUAL(d["run"].get<int64_t>(), run_id);
    CAF_CHECK(d["reason"].get<std::string>().find("idle_timeout") != std::string::npos);
    CAF_REQUIRE_EQUAL(d["attempts"].size(), 2u);
    for (int n = 0; n < 2; ++n) {
      const auto& a = d["attempts"][n];
      CAF_CHECK_EQUAL(a["attempt"].get<int>(), n + 1);
      // An idle timeout is the call's failure (the stage's own timeout is 20 s).
      CAF_CHECK_EQUAL(a["result"], "failed");
      CAF_CHECK(!a["node"].get<std::string>().empty());
      CAF_CHECK(a["error"].get<std::string>().find("idle_timeout") != std::string::npos);
      CAF_CHECK(a["started_at"].get<std::string>() <= a["finished_at"].get<std::string>());
    }
  }
  std::string text;
  CAF_REQUIRE(turing_ok(dir, {"dead", "list", "--config", config.string()}, text));
  CAF_CHECK(text.find("4 dead letter(s)") != std::string::npos);
  CAF_CHECK(text.find("attempt 2 on ") != std::string::npos);

  // Retry and purge refuse to act on everything by accident.
  for (const char* action : {"retry", "purge"}) {
    CAF_CHECK_EQUAL(run_turing(dir, {"dead", action, "--config", config.string()}, &out), 2);
    CAF_CHECK(out.find("no filter given") != std::string::npos);
  }
  CAF_CHECK_EQUAL(items_in(run_id, "dead"), 4);

  // The model is healthy again (restarted on its port); the operator retries.
  sim->signal(SIGKILL);
  CAF_REQUIRE_EQUAL(sim->wait(10s), 128 + SIGKILL);
  int same_port = 0;
  sim = start_simulator(dir, healthy, port, "sim-healthy", same_port);
  CAF_REQUIRE_EQUAL(same_port, port);
  CAF_REQUIRE(turing_ok(
      dir, {"dead", "retry", "--config", config.string(), "--run", run_arg, "--by", "tester"},
      out));
  CAF_CHECK(out.find("retried 4 dead letter(s)") != std::string::npos);
  std::string runs;
  CAF_REQUIRE(turing_ok(
      dir, {"--log-level", "warn", "runs", "--config", config.string(), "--json", "--unfinished"},
      runs));
  auto unfinished = json_of(runs);
  CAF_REQUIRE_EQUAL(unfinished.size(), 1u);
  CAF_CHECK_EQUAL(unfinished[0]["state"], "running");
  CAF_CHECK_EQUAL(unfinished[0]["dead"].get<int64_t>(), 0);

  CAF_REQUIRE(turing_ok(dir, {"run", "--config", config.string(), "--until-drained"}, out));
  CAF_CHECK_EQUAL(items_in(run_id, "done"), 4);
  CAF_CHECK_EQUAL(items_in(run_id, "dead"), 0);
  CAF_CHECK(turing_ok(dir, {"check", "--config", config.string()}, out));
  CAF_REQUIRE(
      turing_ok(dir, {"--log-level", "warn", "runs", "--config", config.string(), "--json"}, runs));
  auto all_runs = json_of(runs);
  CAF_REQUIRE_EQUAL(all_runs.size(), 1u);
  CAF_CHECK_EQUAL(all_runs[0]["state"], "finished");
  CAF_CHECK_EQUAL(all_runs[0]["done"].get<int64_t>(), 4);
  CAF_CHECK_EQUAL(all_runs[0]["progress"].get<double>(), 100.0);
  CAF_REQUIRE(turing_ok(dir, {"dead", "list", "--config", config.string()}, text));
  CAF_CHECK(text.find("0 dead letter(s)") != std::string::npos);

  // The audit log says who retried which messages, and when.
  CAF_REQUIRE(
      turing_ok(dir, {"--log-level", "warn", "audit", "--config", config.string(), "--json"}, out));
  auto audit = json_of(out);
  CAF_REQUIRE_EQUAL(audit.size(), 1u);
  CAF_CHECK_EQUAL(audit[0]["action"], "retry");
  CAF_CHECK_EQUAL(audit[0]["by"], "tester");
  CAF_CHECK_EQUAL(audit[0]["filter"], (json{{"run", run_id}}));
  CAF_CHECK_EQUAL(audit[0]["count"].get<int64_t>(), 4);
  CAF_CHECK(audit[0]["message_ids"].get<std::vector<int64_t>>() == dead_ids);
  CAF_CHECK(!audit[0]["at"].get<std::string>().empty());
}

CAF_TEST(cancel_stops_a_run_while_a_node_runs_it_and_its_dead_letters_stay_dead) {
  auto hung = write_file(dir, "hung.toml",
                         "latency_scale = 0.001\n[models.\"sim-first\"]\n"
                         "faults = { hang = 1.0 }\n");
  int port = 0;
  auto sim = start_simulator(dir, hung, 0, "sim-hung", port);
  // Attempts enough that nothing dies by itself while the test looks.
  auto config = write_file(dir, "pipeline.toml",
                           pipeline(dsn, "http://127.0.0.1:" + std::to_string(port),
                                    "{ max_attempts = 50, backoff = \"100ms\" }"));
  std::string out;
  CAF_REQUIRE(turing_ok(dir,
                        {"enqueue", "--config", config.string(), "--stage", "ask", "--file",
                         write_items(dir, 6).string()},
                        out));
  pg_store s{dsn};
  auto run_id = s.runs(false).back().id;
  auto node = start_turing(dir, {"run", "--config", config.string(), "--until-drained"}, "run.log");
  auto running = [&] {
    for (const auto& c : s.counts())
      if (c.stage == "ask")
        return c.running;
    return int64_t{0};
  };
  CAF_REQUIRE(eventually([&] { return running() >= 4; }, 20s));
  CAF_REQUIRE(turing_ok(
      dir,
      {"cancel", "--config", config.string(), "--run", std::to_string(run_id), "--by", "tester"},
      out));
  CAF_CHECK(out.find("cancelled run " + std::to_string(run_id) + ": 6 message(s) dead-lettered") !=
            std::string::npos);
  // The node loses its leases, stops its calls, and drains.
  CAF_CHECK_EQUAL(node.wait(30s), 0);
  auto run = s.run(run_id).value();
  CAF_CHECK(run.finished());
  CAF_CHECK(run.cancelled());
  CAF_CHECK_EQUAL(run.cancelled_by, "tester");
  CAF_CHECK_EQUAL(items_in(run_id, "dead"), 6);
  for (const auto& a : s.attempts(run_id))
    CAF_CHECK(a.result != attempt_result::completed);
  CAF_CHECK(turing_ok(dir, {"check", "--config", config.string()}, out));
  std::string runs;
  CAF_REQUIRE(
      turing_ok(dir, {"--log-level", "warn", "runs", "--config", config.string(), "--json"}, runs));
  auto listed = json_of(runs); // a local: CAF's checks keep references to their arguments
  CAF_REQUIRE_EQUAL(listed.size(), 1u);
  CAF_CHECK_EQUAL(listed[0]["state"], "cancelled");
  CAF_CHECK_EQUAL(listed[0]["dead"].get<int64_t>(), 6);
  // Its dead letters stay dead: a retry naming the run is refused as bad input.
  CAF_CHECK_EQUAL(
      run_turing(dir,
                 {"dead", "retry", "--config", config.string(), "--run", std::to_string(run_id)},
                 &out),
      2);
  CAF_CHECK(out.find("was cancelled by tester") != std::string::npos);
  CAF_CHECK_EQUAL(items_in(run_id, "dead"), 6);
  CAF_REQUIRE(
      turing_ok(dir, {"--log-level", "warn", "audit", "--config", config.string(), "--json"}, out));
  auto audit = json_of(out);
  CAF_REQUIRE_EQUAL(audit.size(), 1u);
  CAF_CHECK_EQUAL(audit[0]["action"], "cancel");
  CAF_CHECK_EQUAL(audit[0]["by"], "tester");
  CAF_CHECK_EQUAL(audit[0]["count"].get<int64_t>(), 6);
}

CAF_TEST_FIXTURE_SCOPE_END()
