// The scenario harness itself: scenario files are read strictly (every
// problem named with file, line and key), call rules resolve as documented,
// and a scenario whose expectations do not hold fails, naming what differs.
#define CAF_SUITE scenario_harness
#include "replay/scenario.hpp"
#include "replay/simulation.hpp"

#include <caf/test/unit_test.hpp>

using namespace turing;
using namespace turing::replay;

namespace {

const char* pipeline = R"toml(
[pipeline]
model_endpoint = "http://simulated.invalid:1"
sinks = ["done"]
runtime = { poll_interval = "1s" }
models.m = { api = "ollama", model = "sim", concurrency = 2 }
[pipeline.stages.ask]
handler = "model"
entry = true
model = "m"
prompt = "skill: {name}"
outcome = "answered"
required_fields = ["domain"]
timeout = "5s"
retry = { max_attempts = 2, backoff = "1s", backoff_max = "1s", jitter = 0.0 }
routes = { answered = "done" }

[[enqueue]]
stage = "ask"
count = 2
max_attempts = 2

[models.m]
reply = '{"domain": "technology"}'
)toml";

std::string error_of(const std::string& text) {
  try {
    parse_scenario(text, "bad.toml");
  } catch (const scenario_error& e) {
    return e.what();
  }
  return "";
}

replay_result run(const std::string& text) {
  auto registry = std::make_shared<actors::builtin_registry>();
  add_simulation_builtins(*registry);
  replay_options o;
  o.builtins = registry;
  return run_scenario(parse_scenario(text, "/tmp/inline.toml"), o);
}

bool mentions(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines)
    if (l.find(needle) != std::string::npos)
      return true;
  return false;
}

} // namespace

CAF_TEST(unknown_keys_and_bad_values_are_named_with_file_line_and_key) {
  auto e = error_of(std::string(pipeline) + "[expect]\nsinks = { done = 2 }\nsink = 3\n" +
                    "[[timeline]]\nat = \"soon\"\nkill_node = \"node-a\"\n");
  CAF_MESSAGE(e);
  CAF_CHECK(e.find("bad.toml:") != std::string::npos);
  CAF_CHECK(e.find("expect.sink: unknown key") != std::string::npos);
  CAF_CHECK(e.find("\"soon\" is not a duration") != std::string::npos);
}

CAF_TEST(an_event_needs_exactly_one_action_and_a_time) {
  auto e = error_of(std::string(pipeline) + "[expect]\n[[timeline]]\nat = \"1s\"\n" +
                    "kill_node = \"a\"\nstart_node = \"b\"\n[[timeline]]\nstop_node = \"a\"\n");
  CAF_CHECK(e.find("needs exactly one action") != std::string::npos);
  CAF_CHECK(e.find("timeline[1].at: missing") != std::string::npos);
}

CAF_TEST(a_scenario_without_expectations_or_pipeline_is_rejected) {
  CAF_CHECK(error_of(pipeline).find("expect: missing") != std::string::npos);
  CAF_CHECK(error_of("[expect]\n").find("pipeline: missing") != std::string::npos);
  CAF_CHECK(error_of("name = [").find("bad.toml:1") != std::string::npos);
}

CAF_TEST(call_rules_match_first_and_fall_back_to_the_defaults) {
  simulated_handler h;
  h.defaults.reply = "default";
  h.defaults.latency = millis{250};
  call_rule first;
  first.item = "k1";
  first.attempt = 1;
  first.hang = true;
  call_rule second;
  second.item = "k1";
  second.reply = "second";
  h.calls = {first, second};
  auto a = resolve(h, {"ask", "k1", 1, 1});
  CAF_CHECK(a.hang);
  CAF_CHECK_EQUAL(a.reply, "default");
  auto b = resolve(h, {"ask", "k1", 2, 2});
  CAF_CHECK(!b.hang);
  CAF_CHECK_EQUAL(b.reply, "second");
  CAF_CHECK_EQUAL(b.latency.count(), 250);
  auto c = resolve(h, {"ask", "k0", 1, 3});
  CAF_CHECK_EQUAL(c.reply, "default");
}

CAF_TEST(a_scenario_whose_expectations_hold_passes_and_repeats_its_trace) {
  auto text = std::string(pipeline) + "[expect]\nsinks = { done = 2 }\n"
                                      "[[expect.items]]\nkey = \"k1\"\nsink = \"done\"\n"
                                      "results = [\"completed\"]\n";
  auto first = run(text);
  for (const auto& f : first.failures)
    CAF_MESSAGE(f);
  CAF_CHECK(first.passed());
  CAF_CHECK(mentions(first.trace, "node-a claims ask message 2 (item k1, attempt 1/2), epoch 1"));
  auto second = run(text);
  CAF_CHECK(first.trace == second.trace);
  CAF_CHECK(first.end_state == second.end_state);
}

CAF_TEST(a_wrong_expectation_fails_naming_the_item_and_what_differs) {
  auto text = std::string(pipeline) + "[[models.m.calls]]\nitem = \"k1\"\nhttp_status = 500\n"
                                      "[expect]\nsinks = { done = 2 }\n"
                                      "[[expect.items]]\nkey = \"k1\"\nsink = \"done\"\n";
  auto r = run(text);
  CAF_CHECK(!r.passed());
  CAF_CHECK(mentions(r.failures, "sink done: 1 item(s), expected 2"));
  CAF_CHECK(mentions(r.failures, "item k1: sink dead, expected done"));
}

CAF_TEST(an_expected_config_error_must_be_the_one_named) {
  auto text = std::string(pipeline) + "[expect]\nconfig_error = \"is unreachable\"\n";
  auto r = run(text);
  CAF_CHECK(mentions(r.failures, "the pipeline was accepted; expected its rejection"));
}
