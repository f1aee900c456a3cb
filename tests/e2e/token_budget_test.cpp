// Issue 11's budgets end to end over HTTP against the simulator: a model
// with tokens_per_minute never spends more in any 60 s window, counted from
// the tokens the replies report and recorded in the attempts table, and the
// calls held back for the budget spend no attempt.
#define CAF_SUITE token_budget
#include "tests/e2e/skill_pipeline_fixture.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

using namespace turing::persistence;
using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;

} // namespace

CAF_TEST_FIXTURE_SCOPE(token_budget_tests, skill_pipeline_fixture)

CAF_TEST(the_tokens_per_minute_budget_is_never_exceeded_in_any_60_s_window) {
  constexpr int64_t budget = 150;
  model_simulator sim{dir, {"--latency-scale", "0.0005"}};
  auto config = write_file(dir, "pipeline.toml", "model_endpoint = \"" + sim.endpoint() + R"("
sinks = ["done"]
[database]
url = ")" + dsn + R"("
[runtime]
poll_interval = "200ms"
[models.first]
api = "ollama"
model = "sim-first"
concurrency = 4
tokens_per_minute = 150
[stages.ask]
handler = "model"
entry = true
model = "first"
prompt = "task: classify\nskill: {name}"
outcome = "answered"
required_fields = ["domain"]
timeout = "20s"
retry = { max_attempts = 1 }
routes = { answered = "done" }
)");
  std::string lines;
  for (int i = 0; i < 8; ++i)
    lines += "{\"key\": \"s" + std::to_string(i) + "\", \"name\": \"python scripting " +
             std::to_string(i) + "\"}\n";
  auto items = write_file(dir, "items.jsonl", lines);
  std::string out;
  CAF_REQUIRE(turing_ok(
      dir, {"enqueue", "--config", config.string(), "--stage", "ask", "--file", items.string()},
      out));
  CAF_REQUIRE(turing_ok(dir, {"run", "--config", config.string(), "--until-drained"}, out));
  pg_store s{dsn};
  auto run_id = s.runs(false).back().id;
  int done = 0;
  for (const auto& i : s.items(run_id))
    done += i.finished && i.sink == std::optional<std::string>{"done"} ? 1 : 0;
  CAF_CHECK_EQUAL(done, 8);
  std::vector<attempt_record> answered;
  int64_t total = 0;
  for (const auto& a : s.attempts(run_id)) {
    CAF_CHECK(a.result == attempt_result::completed); // waiting spent no attempt
    CAF_CHECK(a.tokens > 0);                          // the replies' counts, recorded
    total += std::max<int64_t>(a.tokens, 0);
    answered.push_back(a);
  }
  CAF_CHECK_EQUAL(answered.size(), 8u);
  // Eight calls cost more than one minute's budget, so it had to hold some back.
  CAF_MESSAGE("tokens: " << total << " over 8 calls, budget " << budget << " a minute");
  CAF_REQUIRE(total > budget);
  std::sort(answered.begin(), answered.end(),
            [](const auto& x, const auto& y) { return x.finished_at < y.finished_at; });
  int64_t most = 0;
  for (size_t i = 0; i < answered.size(); ++i) {
    int64_t sum = 0;
    for (size_t j = i;
         j < answered.size() && answered[j].finished_at < answered[i].finished_at + 60s; ++j)
      sum += answered[j].tokens;
    most = std::max(most, sum);
  }
  CAF_MESSAGE("the busiest 60 s spent " << most << " tokens");
  CAF_CHECK(most <= budget);
  CAF_CHECK(answered.back().finished_at - answered.front().finished_at >= 60s);
  // turing status shows the model's use against its budget.
  std::string status;
  CAF_REQUIRE(turing_ok(dir, {"status", "--config", config.string(), "--json"}, status));
  auto model = nlohmann::json::parse(status.substr(status.find('{')))["models"][0];
  CAF_CHECK_EQUAL(model["model"], "first");
  CAF_CHECK_EQUAL(model["tokens_per_minute"], budget);
  CAF_CHECK(model["tokens_last_minute"].get<int64_t>() <= budget);
}

CAF_TEST_FIXTURE_SCOPE_END()
