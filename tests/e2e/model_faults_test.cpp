// Issue 11 end to end over HTTP against the simulator: a server answering
// 429 with Retry-After costs no attempts (one attempt per item, nothing is
// dead-lettered), a prompt beyond a model's context is answered by its
// fallback model, a hung call ends at the idle timeout, and a call that keeps
// streaming tokens runs on past it.
#define CAF_SUITE model_faults
#include "tests/e2e/skill_pipeline_fixture.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

using namespace turing::persistence;
using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;

/// One model stage "ask" on model "first", after `models`; by default one
/// attempt per item, so any attempt spent on a throttle would dead-letter it.
std::string pipeline(const std::string& dsn, const std::string& endpoint, const std::string& models,
                     const std::string& retry = "{ max_attempts = 1 }") {
  return "model_endpoint = \"" + endpoint + "\"\nsinks = [\"done\"]\n[database]\nurl = \"" + dsn +
         "\"\n[runtime]\npoll_interval = \"200ms\"\n" + models + R"(
[stages.ask]
handler = "model"
entry = true
model = "first"
concurrency = 4
prompt = "task: classify\nskill: {name}"
outcome = "answered"
required_fields = ["domain"]
timeout = "20s"
retry = )" +
         retry + R"(
routes = { answered = "done" }
)";
}

fs::path write_items(const temp_dir& dir, const std::vector<std::string>& names) {
  std::string lines;
  for (size_t i = 0; i < names.size(); ++i)
    lines += "{\"key\": \"s" + std::to_string(i) + "\", \"name\": \"" + names[i] + "\"}\n";
  return write_file(dir, "items.jsonl", lines);
}

/// Enqueues `items` at "ask" and runs until drained; returns the run's id.
int64_t enqueue_and_drain(const temp_dir& dir, const std::string& dsn, const fs::path& config,
                          const fs::path& items, std::string& out) {
  CAF_REQUIRE(turing_ok(
      dir, {"enqueue", "--config", config.string(), "--stage", "ask", "--file", items.string()},
      out));
  CAF_REQUIRE(turing_ok(dir, {"run", "--config", config.string(), "--until-drained"}, out));
  return pg_store{dsn}.runs(false).back().id;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(model_faults_tests, skill_pipeline_fixture)

CAF_TEST(a_server_answering_429_with_retry_after_dead_letters_nothing) {
  // A fifth of the calls are throttled with "Retry-After: 1".
  auto sim_config = write_file(dir, "sim.toml", R"(
latency_scale = 0.001
[models."sim-first"]
p50_ms = 2000
p95_ms = 5000
max_ms = 10000
retry_after_s = 1
faults = { http_429 = 0.2 }
)");
  model_simulator sim{dir, {"--config", sim_config.string()}};
  auto config = write_file(dir, "pipeline.toml",
                           pipeline(dsn, sim.endpoint(),
                                    "[models.first]\napi = \"ollama\"\nmodel = \"sim-first\"\n"
                                    "concurrency = 4\n"));
  std::vector<std::string> names;
  for (int i = 0; i < 30; ++i)
    names.push_back("python scripting " + std::to_string(i));
  auto items = write_items(dir, names);
  std::string out;
  auto run_id = enqueue_and_drain(dir, dsn, config, items, out);
  pg_store s{dsn};
  int done = 0;
  for (const auto& i : s.items(run_id))
    done += i.finished && i.sink == std::optional<std::string>{"done"} ? 1 : 0;
  CAF_CHECK_EQUAL(done, 30);
  int completed = 0, other = 0;
  for (const auto& a : s.attempts(run_id))
    (a.result == attempt_result::completed ? completed : other) += 1;
  CAF_CHECK_EQUAL(completed, 30);
  CAF_CHECK_EQUAL(other, 0);
  // turing status reads the stage's latency from the same attempts.
  std::string status;
  CAF_REQUIRE(turing_ok(dir, {"status", "--config", config.string(), "--json"}, status));
  auto stage = nlohmann::json::parse(status.substr(status.find('{')))["stages"][0];
  CAF_CHECK_EQUAL(stage["latency"]["samples"], 30);
  CAF_CHECK(stage["latency"]["p50_ms"].get<int64_t>() <= stage["latency"]["p99_ms"].get<int64_t>());
  CAF_CHECK_EQUAL(stage["timeout"]["mode"], "fixed");
  CAF_CHECK_EQUAL(stage["timeout"]["current_ms"], 20000);
  auto p99 = stage["latency"]["p99_ms"].get<int64_t>();
  auto recommended = stage["timeout"]["recommended_ms"].get<int64_t>();
  auto expected = std::max<int64_t>(1000, 2 * p99);
  CAF_CHECK_EQUAL(recommended, expected);
  // The server did throttle, and turing said so.
  CAF_CHECK(out.find("throttled by its server") != std::string::npos);
  CAF_CHECK(out.find("HTTP 429") != std::string::npos);
  if (done != 30)
    CAF_MESSAGE(out);
}

CAF_TEST(a_prompt_beyond_the_context_is_answered_by_the_fallback_model) {
  // sim-small takes prompts of up to 70 characters; sim-large any.
  auto sim_config = write_file(dir, "sim.toml", R"(
latency_scale = 0.001
[models."sim-small"]
context_chars = 70
[models."sim-large"]
p50_ms = 1000
)");
  model_simulator sim{dir, {"--config", sim_config.string()}};
  auto config = write_file(dir, "pipeline.toml",
                           pipeline(dsn, sim.endpoint(),
                                    "[models.first]\napi = \"ollama\"\nmodel = \"sim-small\"\n"
                                    "concurrency = 2\nfallback_model = \"large\"\n"
                                    "[models.large]\napi = \"ollama\"\nmodel = \"sim-large\"\n"
                                    "concurrency = 2\n"));
  auto items = write_items(dir, {"go", "rust", std::string(200, 'x') + " compilers",
                                 std::string(300, 'y') + " databases"});
  std::string out;
  auto run_id = enqueue_and_drain(dir, dsn, config, items, out);
  pg_store s{dsn};
  std::map<int64_t, std::string> key_of;
  for (const auto& i : s.items(run_id)) {
    key_of[i.id] = i.key.value_or("");
    CAF_CHECK(i.finished && i.sink == std::optional<std::string>{"done"});
  }
  std::map<std::string, std::string> model_of;
  for (const auto& a : s.attempts(run_id)) {
    CAF_CHECK(a.result == attempt_result::completed);
    model_of[key_of[a.item_id]] = a.model;
  }
  CAF_CHECK_EQUAL(model_of["s0"], "first");
  CAF_CHECK_EQUAL(model_of["s1"], "first");
  CAF_CHECK_EQUAL(model_of["s2"], "large");
  CAF_CHECK_EQUAL(model_of["s3"], "large");
  CAF_CHECK(out.find("overflows its context; the call goes to fallback model large") !=
            std::string::npos);
}

CAF_TEST(a_hung_call_ends_at_the_idle_timeout_long_before_the_stage_timeout) {
  // A third of the calls hang (the server never sends a byte); the stage's
  // timeout is 20 s, the model's idle_timeout 1 s.
  auto sim_config = write_file(dir, "sim.toml", R"(
latency_scale = 0.001
[models."sim-first"]
p50_ms = 2000
faults = { hang = 0.3 }
)");
  model_simulator sim{dir, {"--config", sim_config.string()}};
  auto config = write_file(
      dir, "pipeline.toml",
      pipeline(dsn, sim.endpoint(),
               "[models.first]\napi = \"ollama\"\nmodel = \"sim-first\"\nconcurrency = 4\n"
               "idle_timeout = \"1s\"\n",
               // Retries enough that every item gets through.
               "{ max_attempts = 8, backoff = \"100ms\" }"));
  std::vector<std::string> names;
  for (int i = 0; i < 12; ++i)
    names.push_back("rust compilers " + std::to_string(i));
  auto items = write_items(dir, names);
  std::string out;
  auto run_id = enqueue_and_drain(dir, dsn, config, items, out);
  pg_store s{dsn};
  int hung = 0;
  for (const auto& a : s.attempts(run_id)) {
    if (a.result == attempt_result::completed)
      continue;
    ++hung;
    CAF_CHECK(a.error.find("(idle_timeout)") != std::string::npos);
    CAF_CHECK(a.finished_at - a.started_at < 5s); // not the stage's 20 s
    if (a.error.find("(idle_timeout)") == std::string::npos)
      CAF_MESSAGE(a.error);
  }
  CAF_CHECK(hung > 0);
  int done = 0;
  for (const auto& i : s.items(run_id))
    done += i.finished && i.sink == std::optional<std::string>{"done"} ? 1 : 0;
  CAF_CHECK_EQUAL(done, 12);
}

CAF_TEST(a_call_that_keeps_streaming_tokens_outlives_its_idle_timeout) {
  // Calls of about 2.5 s, streamed token by token, under a 1 s idle_timeout.
  auto sim_config = write_file(dir, "sim.toml", R"(
latency_scale = 1.0
[models."sim-first"]
p50_ms = 2500
p95_ms = 2600
max_ms = 3000
)");
  model_simulator sim{dir, {"--config", sim_config.string()}};
  auto config = write_file(
      dir, "pipeline.toml",
      pipeline(dsn, sim.endpoint(),
               "[models.first]\napi = \"ollama\"\nmodel = \"sim-first\"\nconcurrency = 4\n"
               "idle_timeout = \"1s\"\n"));
  std::string out;
  auto run_id =
      enqueue_and_drain(dir, dsn, config, write_items(dir, {"go", "rust", "sql", "kotlin"}), out);
  pg_store s{dsn};
  for (const auto& a : s.attempts(run_id)) {
    CAF_CHECK(a.result == attempt_result::completed);
    CAF_CHECK(a.finished_at - a.started_at > 2s); // longer than the idle timeout, alive
    if (a.result != attempt_result::completed)
      CAF_MESSAGE(a.error);
  }
  CAF_CHECK_EQUAL(s.attempts(run_id).size(), 4u);
}

CAF_TEST(status_shows_the_tokens_per_second_of_a_running_call) {
  // One call of about 12 s, streamed token by token.
  auto sim_config = write_file(dir, "sim.toml", R"(
latency_scale = 1.0
[models."sim-first"]
p50_ms = 12000
p95_ms = 12100
max_ms = 12500
)");
  model_simulator sim{dir, {"--config", sim_config.string()}};
  auto config = write_file(
      dir, "pipeline.toml",
      pipeline(dsn, sim.endpoint(),
               "[models.first]\napi = \"ollama\"\nmodel = \"sim-first\"\nconcurrency = 4\n"));
  std::string out;
  CAF_REQUIRE(turing_ok(dir,
                        {"enqueue", "--config", config.string(), "--stage", "ask", "--file",
                         write_items(dir, {"python scripting"}).string()},
                        out));
  auto run = start_turing(dir, {"run", "--config", config.string(), "--until-drained"}, "run.log");
  // The node reports its calls in flight with the tokens streamed so far.
  pg_store s{dsn};
  auto streaming = [&] {
    for (const auto& n : s.nodes())
      for (const auto& [model, calls] : n.running_calls)
        for (const auto& c : calls)
          if (model == "first" && c.stage == "ask" && c.tokens > 0)
            return true;
    return false;
  };
  CAF_REQUIRE(eventually(streaming, 11s));
  std::string status;
  CAF_REQUIRE(turing_ok(dir, {"status", "--config", config.string(), "--json"}, status));
  auto calls = nlohmann::json::parse(status.substr(status.find('{')))["nodes"][0]["running_calls"];
  CAF_REQUIRE_EQUAL(calls.size(), 1u);
  CAF_CHECK_EQUAL(calls[0]["model"], "first");
  CAF_CHECK_EQUAL(calls[0]["stage"], "ask");
  CAF_CHECK(calls[0]["tokens"].get<int64_t>() > 0);
  CAF_CHECK(calls[0]["tokens_per_s"].get<double>() > 0);
  std::string text;
  CAF_REQUIRE(turing_ok(dir, {"status", "--config", config.string()}, text));
  CAF_CHECK(text.find("model first running for ask message") != std::string::npos);
  CAF_CHECK(text.find("tokens/s") != std::string::npos);
  CAF_CHECK_EQUAL(run.wait(30s), 0);
}

CAF_TEST_FIXTURE_SCOPE_END()
