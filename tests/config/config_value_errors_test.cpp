// Invalid keys and values: each config below has one mistake, and the test
// checks the error names its line, its key and what is wrong.
#define CAF_SUITE config_value_errors

#include "config/config_loader.hpp"
#include "tests/config/config_fixture.hpp"

#include <caf/test/unit_test.hpp>

using namespace turing::config;
using turing::config::test::config_fixture;

// Requires an error on `key` mentioning `phrase` at line `at_line`.
#define CHECK_ERROR(result, key, at_line, phrase)                                                  \
  do {                                                                                             \
    CAF_CHECK(!(result).ok());                                                                     \
    auto* found_ = find_error((result), (key), (phrase));                                          \
    CAF_REQUIRE(found_ != nullptr);                                                                \
    CAF_CHECK_EQUAL(found_->where.line, (at_line));                                                \
  } while (false)

CAF_TEST_FIXTURE_SCOPE(config_value_error_tests, config_fixture)

CAF_TEST(unknown_key_typo_is_named_with_a_suggestion) {
  auto r = load(R"(sinks = ["done"]
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
concurency = 4
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.only.concurency", 6, "unknown key 'concurency'");
  CAF_CHECK(contains(r.errors[0].message, "did you mean 'concurrency'?"));
  CAF_CHECK_EQUAL(r.errors[0].where.column, 1);
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(unknown_keys_are_caught_in_every_table) {
  auto r = load(R"(sink = ["done"]
[database]
data_dri = "x"
[runtime]
lease_tll = "30s"
[models.m]
api = "ollama"
endpoint = "http://localhost:11434"
model = "m"
temprature = 0.2
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
[stages.only.retry]
max_atempts = 2
)");
  CHECK_ERROR(r, "sink", 1, "did you mean 'sinks'?");
  CHECK_ERROR(r, "database.data_dri", 3, "did you mean 'data_dir'?");
  CHECK_ERROR(r, "runtime.lease_tll", 5, "did you mean 'lease_ttl'?");
  CHECK_ERROR(r, "models.m.temprature", 10, "did you mean 'temperature'?");
  CHECK_ERROR(r, "stages.only.retry.max_atempts", 17, "did you mean 'max_attempts'?");
}

CAF_TEST(key_of_another_handler_kind_names_that_kind) {
  auto r = load(R"(sinks = ["done"]
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
command = ["x.sh"]
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.only.command", 6, "applies to script stages, not builtin ones");
}

CAF_TEST(a_fallback_model_must_be_another_model_and_never_lead_back) {
  auto r = load(R"(sinks = ["done"]
model_endpoint = "http://localhost:11434"
[models.a]
api = "ollama"
model = "a"
fallback_model = "b"
[models.b]
api = "ollama"
model = "b"
fallback_model = "a"
[models.c]
api = "ollama"
model = "c"
fallback_model = "c"
[models.d]
api = "ollama"
model = "d"
fallback_model = "larg"
max_throttled = 0
[stages.only]
handler = "model"
entry = true
model = "a"
prompt = "{x}"
outcome = "ok"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "models.a.fallback_model", 3, "fallback models go round in a circle: a -> b -> a");
  CHECK_ERROR(r, "models.c.fallback_model", 14, "a model cannot be its own fallback_model");
  CHECK_ERROR(r, "models.d.fallback_model", 15, "fallback_model 'larg' is not a model in [models]");
  CHECK_ERROR(r, "models.d.max_throttled", 19, "");
}

CAF_TEST(a_model_on_an_unknown_gpu_a_fairness_bound_of_0_and_an_empty_gpu_are_refused) {
  auto r = load(R"(sinks = ["done"]
model_endpoint = "http://localhost:11434"
[gpus.gpu0]
max_wait = "0s"
max_loaded = 0
[gpus.spare]
linger = "10m"
[models.a]
api = "ollama"
model = "a"
gpu = "gpu1"
[models.b]
api = "ollama"
model = "b"
gpu = "gpu0"
[stages.only]
handler = "model"
entry = true
model = "a"
prompt = "{x}"
outcome = "ok"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "gpus.gpu0.max_wait", 4, "duration must be greater than 0");
  CHECK_ERROR(r, "gpus.gpu0.max_loaded", 5, "");
  CHECK_ERROR(r, "gpus.spare.linger", 7, "must be shorter than max_wait");
  CHECK_ERROR(r, "gpus.spare", 6, "no model is on GPU 'spare'");
  CHECK_ERROR(r, "models.a.gpu", 8, "gpu 'gpu1' is not a GPU in [gpus]; did you mean 'gpu0'?");
}

CAF_TEST(an_api_key_budget_needs_a_budget_and_a_model_using_the_key) {
  auto r = load(R"(sinks = ["done"]
model_endpoint = "http://localhost:11434"
[api_keys.UNUSED_KEY]
requests_per_minute = 10
[api_keys.EMPTY_KEY]
[api_keys."bad key"]
tokens_per_minute = 0
[models.a]
api = "openai"
model = "a"
api_key_env = "EMPTY_KEY"
[stages.only]
handler = "model"
entry = true
model = "a"
prompt = "{x}"
outcome = "ok"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "api_keys.UNUSED_KEY", 3, "no model has api_key_env = 'UNUSED_KEY'");
  CHECK_ERROR(r, "api_keys.EMPTY_KEY.requests_per_minute", 5, "or tokens_per_minute");
  CHECK_ERROR(r, "api_keys.bad key", 6, "invalid environment variable name");
  CHECK_ERROR(r, "api_keys.bad key.tokens_per_minute", 7, "");
}

CAF_TEST(an_auto_timeout_needs_a_ceiling_above_its_floor_and_its_keys_need_auto) {
  auto r = load(R"(sinks = ["done"]
[stages.a]
handler = "script"
entry = true
command = ["/bin/true"]
outcomes = ["ok"]
timeout = "auto"
routes = { ok = "b" }
[stages.b]
handler = "script"
command = ["/bin/true"]
outcomes = ["ok"]
timeout = "auto"
timeout_floor = "10s"
timeout_ceiling = "5s"
routes = { ok = "c" }
[stages.c]
handler = "script"
command = ["/bin/true"]
outcomes = ["ok"]
timeout = "30s"
timeout_ceiling = "5m"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.a.timeout_ceiling", 2, "timeout = \"auto\" needs a ceiling");
  CHECK_ERROR(r, "stages.b.timeout_ceiling", 15,
              "timeout_ceiling 5s must be longer than timeout_floor 10s");
  CHECK_ERROR(r, "stages.c.timeout_ceiling", 22, "timeout_ceiling is only for timeout = \"auto\"");
}

CAF_TEST(an_auto_timeout_starts_at_the_midpoint_of_floor_and_ceiling) {
  auto r = load(R"(sinks = ["done"]
[stages.a]
handler = "script"
entry = true
command = ["/bin/true"]
outcomes = ["ok"]
timeout = "auto"
timeout_floor = "2s"
timeout_ceiling = "10m"
timeout_factor = 3
routes = { ok = "done" }
)");
  CAF_REQUIRE(r.ok());
  const auto& s = r.config->stages.at(0);
  CAF_REQUIRE(s.auto_timeout.has_value());
  CAF_CHECK_EQUAL(s.auto_timeout->factor, 3.0);
  CAF_CHECK_EQUAL(r.config->timeout_of(s).count(), 301000);
}

CAF_TEST(heartbeat_not_shorter_than_lease_ttl_is_rejected) {
  auto r = load(R"(sinks = ["done"]
[runtime]
lease_ttl = "10s"
heartbeat_interval = "10s"
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "runtime.heartbeat_interval", 4, "must be shorter than lease_ttl (10s)");
  CAF_CHECK(contains(r.errors[0].message, "a lease would expire between heartbeats"));

  // Against the default heartbeat (10s) the error names the key that was set.
  r = load(R"(sinks = ["done"]
[runtime]
lease_ttl = "5s"
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "runtime.lease_ttl", 3, "heartbeat_interval (10s) must be shorter");
}

CAF_TEST(malformed_durations_are_rejected) {
  auto r = load(R"(sinks = ["done"]
[runtime]
lease_ttl = 30
shutdown_grace = "0s"
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
timeout = "5 sec"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.only.timeout", 9, "malformed duration '5 sec'");
  CHECK_ERROR(r, "runtime.lease_ttl", 3, "expected a duration string such as \"30s\", got integer");
  CHECK_ERROR(r, "runtime.shutdown_grace", 4, "must be greater than 0");
  CAF_CHECK_EQUAL(r.errors.size(), 3u);
}

CAF_TEST(stall_timeout_must_be_a_positive_duration) {
  // 0 would probe a pump continuously and declare it stalled at once.
  auto zero = load(R"(sinks = ["done"]
[runtime]
stall_timeout = "0s"
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(zero, "runtime.stall_timeout", 3, "must be greater than 0, got '0s'");
  CAF_CHECK_EQUAL(zero.errors.size(), 1u);
  auto bare = load(R"(sinks = ["done"]
[runtime]
stall_timeout = 10
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(bare, "runtime.stall_timeout", 3,
              "expected a duration string such as \"30s\", got integer");
  CAF_CHECK_EQUAL(bare.errors.size(), 1u);
}

CAF_TEST(retain_done_takes_a_duration_or_forever_and_names_anything_else) {
  auto text = [](const std::string& value) { return with_runtime("retain_done = " + value); };
  auto never = load(text("\"never\""));
  CHECK_ERROR(never, "runtime.retain_done", 3, "malformed duration 'never'");
  CHECK_ERROR(never, "runtime.retain_done", 3, "\"forever\" to keep done messages");
  CAF_CHECK_EQUAL(never.errors.size(), 1u);
  auto zero = load(text("\"0s\""));
  CHECK_ERROR(zero, "runtime.retain_done", 3, "must be greater than 0");
  auto number = load(text("7"));
  CHECK_ERROR(number, "runtime.retain_done", 3, "expected a duration string");
  CAF_CHECK_EQUAL(number.errors.size(), 1u);
}

CAF_TEST(max_payload_names_a_malformed_or_out_of_range_size) {
  auto text = [](const std::string& value) { return with_runtime("max_payload = " + value); };
  auto unit = load(text("\"16 megabytes\""));
  CHECK_ERROR(unit, "runtime.max_payload", 3, "malformed size");
  CAF_CHECK_EQUAL(unit.errors.size(), 1u);
  auto huge = load(text("\"1GB\""));
  CHECK_ERROR(huge, "runtime.max_payload", 3, "size 1 GB is out of range [1 KB, 255 MB]");
  auto tiny = load(text("10"));
  CHECK_ERROR(tiny, "runtime.max_payload", 3, "size 10 B is out of range");
  auto boolean = load(text("true"));
  CHECK_ERROR(boolean, "runtime.max_payload", 3, "expected a size such as \"16MB\"");
}

CAF_TEST(wrong_types_and_out_of_range_numbers_are_rejected) {
  auto r = load(R"(sinks = ["done"]
[runtime]
claim_batch = 0
[stages.only]
handler = "builtin"
entry = "yes"
concurrency = "8"
function = "owl.normalize"
routes = { ok = "done" }
[stages.only.retry]
jitter = 1.5
backoff_multiplier = 0.5
max_attempts = 2.0
)");
  CHECK_ERROR(r, "runtime.claim_batch", 3, "must be between 1 and 10000, got 0");
  CHECK_ERROR(r, "stages.only.entry", 6, "expected true or false, got string");
  CHECK_ERROR(r, "stages.only.concurrency", 7, "expected an integer, got string");
  CHECK_ERROR(r, "stages.only.retry.jitter", 11, "must be between 0 and 1, got 1.5");
  CHECK_ERROR(r, "stages.only.retry.backoff_multiplier", 12, "must be between 1 and 100");
  CHECK_ERROR(r, "stages.only.retry.max_attempts", 13, "expected an integer, got float");
}

CAF_TEST(backoff_max_below_backoff_is_rejected) {
  auto r = load(R"(sinks = ["done"]
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
[stages.only.retry]
backoff = "10s"
backoff_max = "5s"
)");
  CHECK_ERROR(r, "stages.only.retry.backoff_max", 9, "must be at least backoff (10s)");
}

CAF_TEST(bad_model_api_and_endpoint_are_rejected) {
  auto r = load(R"(sinks = ["done"]
[models.m]
api = "olama"
endpoint = "127.0.0.1:11434"
model = "m"
api_key_env = "MY-TOKEN"
[models.n]
api = "openai"
endpoint = "http://host:99999"
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "models.m.api", 3, "unknown api 'olama'; did you mean 'ollama'?");
  CHECK_ERROR(r, "models.m.endpoint", 4, "must start with http:// or https://");
  CHECK_ERROR(r, "models.m.api_key_env", 6, "invalid environment variable name");
  CHECK_ERROR(r, "models.n.endpoint", 9, "invalid port");
  // A missing key is reported at its table.
  CHECK_ERROR(r, "models.n.model", 7, "missing required key 'model'");
}

CAF_TEST(unknown_model_is_rejected_naming_line_key_and_known_models) {
  auto r = load(R"(sinks = ["done"]
[models.mistral]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "mistral-nemo:12b"
[models.qwen]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "qwen2.5-coder:7b"
[stages.alma]
handler = "model"
entry = true
model = "mistrl"
prompt = "{name}"
outcome = "done_ok"
routes = { done_ok = "done" }
)");
  CHECK_ERROR(r, "stages.alma.model", 13, "unknown model 'mistrl'");
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
  CAF_CHECK_EQUAL(r.errors[0].to_string(),
                  "pipeline.toml:13:9: stages.alma.model: unknown model 'mistrl'; did you mean "
                  "'mistral'? (known: mistral, qwen)");
}

CAF_TEST(missing_prompt_is_reported_at_the_stage_table) {
  auto r = load(R"(sinks = ["done"]
[models.m]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "m"
[stages.alma]
handler = "model"
entry = true
model = "m"
outcome_field = "verdict"
outcomes = ["ok"]
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.alma.prompt", 6, "missing required key 'prompt'");
  CAF_CHECK(contains(r.errors[0].message, "prompt or prompt_file"));
}

CAF_TEST(model_stage_needs_exactly_one_prompt_and_one_outcome_source) {
  dir.write("prompts/p.txt", "hello {name}");
  auto r = load(R"(sinks = ["done"]
[models.m]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "m"
[stages.alma]
handler = "model"
entry = true
model = "m"
prompt = "{name}"
prompt_file = "prompts/p.txt"
outcome_field = "verdict"
outcome = "ok"
routes = { ok = "done" }
[stages.zed]
handler = "model"
entry = true
model = "m"
prompt_file = "prompts/missing.txt"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.alma.prompt_file", 11, "either prompt or prompt_file, not both");
  CHECK_ERROR(r, "stages.alma.outcome", 13, "either outcome_field or outcome, not both");
  CHECK_ERROR(r, "stages.zed.prompt_file", 19, "cannot read prompt file");
  CAF_CHECK(contains(find_error(r, "stages.zed.prompt_file", "")->message, "prompts/missing.txt"));
  CHECK_ERROR(r, "stages.zed.outcome_field", 15, "missing required key 'outcome_field'");
}

CAF_TEST(unbalanced_braces_in_a_prompt_are_rejected) {
  dir.write("prompts/bad.txt", "line one\nsay {name and stop\n");
  auto r = load(R"(sinks = ["done"]
[models.m]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "m"
[stages.alma]
handler = "model"
entry = true
model = "m"
prompt = "Reply {\"verdict\": \"ok\"} for {name}"
outcome = "ok"
routes = { ok = "done" }
[stages.bert]
handler = "model"
entry = true
model = "m"
prompt_file = "prompts/bad.txt"
outcome = "ok"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.alma.prompt", 10,
              "bad template at prompt line 1, column 7: invalid placeholder");
  CAF_CHECK(contains(find_error(r, "stages.alma.prompt", "")->message, "'{{' and '}}'"));
  CHECK_ERROR(r, "stages.bert.prompt_file", 17, "bad.txt:2:5: unclosed '{'");
}

CAF_TEST(unknown_builtin_is_rejected_with_a_suggestion) {
  auto r = load(R"(sinks = ["done"]
[stages.carl]
handler = "builtin"
entry = true
function = "owl.create_entty"
routes = { created = "done" }
)");
  CHECK_ERROR(r, "stages.carl.function", 5, "unknown builtin function 'owl.create_entty'");
  CAF_CHECK(contains(r.errors[0].message, "did you mean 'owl.create_entity'?"));
  // The unknown function's outcomes are unknown: no follow-on route errors.
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(builtin_outcomes_must_match_the_catalog) {
  auto r = load(R"(sinks = ["done"]
[stages.carl]
handler = "builtin"
entry = true
function = "owl.create_entity"
outcomes = ["created", "skipped"]
routes = { created = "done" }
)");
  CHECK_ERROR(r, "stages.carl.outcomes", 6, "do not match builtin 'owl.create_entity'");
  CAF_CHECK(contains(r.errors[0].message, "which produces [created]"));
}

CAF_TEST(unknown_handler_and_missing_handler_are_rejected) {
  auto r = load(R"(sinks = ["done"]
[stages.one]
handler = "scirpt"
entry = true
command = ["x"]
routes = { ok = "done" }
[stages.two]
entry = true
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.one.handler", 3, "unknown handler 'scirpt'; did you mean 'script'?");
  CHECK_ERROR(r, "stages.two.handler", 7, "missing required key 'handler'");
  // Without a known handler, its keys and routes are not second-guessed.
  CAF_CHECK_EQUAL(r.errors.size(), 2u);
}

CAF_TEST(script_stage_needs_a_command_and_outcomes) {
  auto r = load(R"(sinks = ["done"]
[stages.one]
handler = "script"
entry = true
routes = { ok = "done" }
[stages.two]
handler = "script"
entry = true
command = []
outcomes = ["ok"]
working_dir = "no/such/dir"
env = { "BAD-NAME" = "x", GOOD = 1 }
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.one.command", 2, "missing required key 'command'");
  CHECK_ERROR(r, "stages.one.outcomes", 2, "missing required key 'outcomes'");
  CHECK_ERROR(r, "stages.two.command", 9, "command is empty");
  CHECK_ERROR(r, "stages.two.working_dir", 11, "is not a directory");
  CHECK_ERROR(r, "stages.two.env.BAD-NAME", 12, "invalid environment variable name");
  CHECK_ERROR(r, "stages.two.env.GOOD", 12, "expected a string, got integer");
}

CAF_TEST(toml_syntax_error_is_one_error_with_line_and_column) {
  auto r = load(R"(sinks = ["done"]
[stages.lucy]
handler = "script
entry = true
)");
  CAF_CHECK(!r.ok());
  CAF_CHECK(!r.config.has_value());
  CAF_REQUIRE_EQUAL(r.errors.size(), 1u);
  CAF_CHECK_EQUAL(r.errors[0].key, "");
  CAF_CHECK_EQUAL(r.errors[0].where.line, 3);
  CAF_CHECK_GREATER(r.errors[0].where.column, 0);
  CAF_CHECK(contains(r.errors[0].message, "TOML syntax error"));
  CAF_CHECK(contains(r.errors[0].to_string(), "pipeline.toml:3:"));
}

CAF_TEST(invalid_and_reserved_names_are_rejected) {
  auto r = load(R"(sinks = ["done", "dead", "Bad-Sink"]
[stages.Lucy]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
[stages.dead]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.Lucy", 2, "invalid stage name 'Lucy'");
  CHECK_ERROR(r, "stages.dead", 7, "reserved for the runtime's dead-letter sink");
  CHECK_ERROR(r, "sinks", 1, "'dead' is reserved");
  CHECK_ERROR(r, "sinks", 1, "invalid sink name 'Bad-Sink'");
}

CAF_TEST(unknown_script_mode_is_named_with_its_position_and_a_suggestion) {
  auto r = load(R"(sinks = ["done"]
[stages.lucy]
handler = "script"
entry = true
command = ["lucy.sh"]
mode = "workers"
outcomes = ["ok"]
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.lucy.mode", 6, "unknown mode 'workers'");
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
  CAF_CHECK_EQUAL(r.errors[0].to_string(),
                  "pipeline.toml:6:8: stages.lucy.mode: unknown mode 'workers'; did you mean "
                  "'worker'? (modes: process, worker)");
}

CAF_TEST(script_mode_must_be_a_string) {
  auto r = load(R"(sinks = ["done"]
[stages.lucy]
handler = "script"
entry = true
command = ["lucy.sh"]
mode = 4
outcomes = ["ok"]
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.lucy.mode", 6, "expected a string, got integer");
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(script_mode_on_a_builtin_stage_says_it_belongs_to_scripts) {
  auto r = load(R"(sinks = ["done"]
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
mode = "worker"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.only.mode", 6, "applies to script stages, not builtin ones");
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(several_errors_are_reported_at_once_in_file_order) {
  auto r = load(R"(sinks = ["done"]
[models.mistral]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "mistral-nemo:12b"
[stages.lucy]
handler = "script"
entry = true
command = ["lucy.sh"]
timeout = "5x"
outcomes = ["passed", "rejected"]
routes = { passed = "alma" }
[stages.alma]
handler = "model"
model = "mistrl"
prompt = "{name}"
outcome = "ok"
routes = { ok = "done" }
concurency = 2
)");
  CHECK_ERROR(r, "stages.lucy.timeout", 10, "malformed duration");
  CHECK_ERROR(r, "stages.lucy.routes", 12, "outcome 'rejected' is not routed");
  CHECK_ERROR(r, "stages.alma.model", 15, "unknown model 'mistrl'");
  CHECK_ERROR(r, "stages.alma.concurency", 19, "unknown key");
  CAF_CHECK_EQUAL(r.errors.size(), 4u);
  for (std::size_t i = 1; i < r.errors.size(); ++i)
    CAF_CHECK_LESS_OR_EQUAL(r.errors[i - 1].where.line, r.errors[i].where.line);
}

// ca_file and tls_verify (issue 9, defect 2): a CA file is read at load time,
// relative to the config, and both keys are refused where they do nothing.
CAF_TEST(ca_file_and_tls_verify_are_read_relative_to_the_config) {
  dir.write("certs/ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  auto r = load(R"(sinks = ["done"]
[models.m]
api = "openai"
endpoint = "https://127.0.0.1:8443"
model = "m"
ca_file = "certs/ca.pem"
[models.n]
api = "openai"
endpoint = "https://127.0.0.1:8444"
model = "n"
tls_verify = false
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  for (const auto& e : r.errors)
    CAF_MESSAGE(e.to_string());
  CAF_REQUIRE(r.ok());
  const auto& m = *r.config->find_model("m");
  CAF_CHECK_EQUAL(m.ca_file, (dir.path() / "certs/ca.pem").lexically_normal());
  CAF_CHECK(m.tls_verify);
  const auto& n = *r.config->find_model("n");
  CAF_CHECK(n.ca_file.empty());
  CAF_CHECK(!n.tls_verify);
}

CAF_TEST(bad_ca_file_and_tls_verify_values_name_line_and_key) {
  dir.write("not-a-cert.txt", "hello\n");
  dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  auto r = load(R"(sinks = ["done"]
[models.a]
api = "openai"
endpoint = "https://127.0.0.1:8443"
model = "a"
ca_file = "missing/ca.pem"
tls_verify = "no"
[models.b]
api = "openai"
endpoint = "https://127.0.0.1:8443"
model = "b"
ca_file = 7
[models.c]
api = "openai"
endpoint = "https://127.0.0.1:8443"
model = "c"
ca_file = "not-a-cert.txt"
[models.d]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "d"
tls_verify = false
ca_file = "ca.pem"
[models.e]
api = "openai"
endpoint = "https://127.0.0.1:8443"
model = "e"
ca_file = ""
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "models.a.ca_file", 6, "cannot read CA file");
  CHECK_ERROR(r, "models.a.ca_file", 6, "missing/ca.pem");
  CHECK_ERROR(r, "models.a.ca_file", 6, "No such file or directory");
  CAF_CHECK_EQUAL(find_error(r, "models.a.ca_file", "cannot read")->where.column, 11);
  CHECK_ERROR(r, "models.a.tls_verify", 7, "expected true or false, got string");
  CHECK_ERROR(r, "models.b.ca_file", 12, "expected a string");
  CHECK_ERROR(r, "models.c.ca_file", 17, "holds no PEM certificate");
  CHECK_ERROR(r, "models.d.tls_verify", 22, "applies to https:// endpoints only");
  CHECK_ERROR(r, "models.d.ca_file", 23, "applies to https:// endpoints only");
  CHECK_ERROR(r, "models.e.ca_file", 28, "ca_file is empty");
  auto* text = find_error(r, "models.a.ca_file", "cannot read");
  CAF_REQUIRE(text != nullptr);
  CAF_CHECK(contains(text->to_string(), "pipeline.toml:6:11: models.a.ca_file: "));
}

CAF_TEST(a_cluster_without_certificates_is_one_error_naming_what_is_missing) {
  auto r = load(with_runtime("") + "[cluster]\nlisten = \"127.0.0.1:7400\"\nkey = \"n1.key\"\n");
  CHECK_ERROR(r, "cluster", 9,
              "distributed mode needs certificate, key and ca (missing: "
              "certificate, ca)");
  CHECK_ERROR(r, "cluster", 9, "scripts/make-node-certs");
  size_t about_tls = 0;
  for (const auto& e : r.errors)
    about_tls += contains(e.message, "mutual TLS") ? 1 : 0;
  CAF_CHECK_EQUAL(about_tls, 1u);
}

CAF_TEST(bad_cluster_addresses_and_timeouts_name_their_key) {
  auto tls = std::string{"certificate = \"n.pem\"\nkey = \"n.key\"\nca = \"ca.pem\"\n"};
  auto wildcard = load(with_runtime("") + "[cluster]\nlisten = \"0.0.0.0:7400\"\n" + tls);
  CHECK_ERROR(wildcard, "cluster.advertise", 9, "every interface");
  auto port = load(with_runtime("") + "[cluster]\nlisten = \"127.0.0.1:70000\"\n" + tls);
  CHECK_ERROR(port, "cluster.listen", 10, "the port must be a number in 1..65535");
  auto no_port = load(with_runtime("") + "[cluster]\nlisten = \"127.0.0.1\"\n" + tls);
  CHECK_ERROR(no_port, "cluster.listen", 10, "expected host:port");
  auto advertise =
      load(with_runtime("") +
           "[cluster]\nlisten = \"0.0.0.0:7400\"\nadvertise = \"0.0.0.0:7400\"\n" + tls);
  CHECK_ERROR(advertise, "cluster.advertise", 11, "not an address a peer can connect to");
  auto timeouts = load(with_runtime("") +
                       "[cluster]\nlisten = \"127.0.0.1:7400\"\nheartbeat_interval = \"5s\"\n"
                       "connection_timeout = \"5s\"\n" +
                       tls);
  CHECK_ERROR(timeouts, "cluster.connection_timeout", 12, "must be longer than heartbeat_interval");
  auto typo = load(with_runtime("") + "[cluster]\nlisten = \"127.0.0.1:7400\"\nlisen = 1\n" + tls);
  CAF_CHECK(!typo.ok());
}

CAF_TEST(model_placement_names_known_models_once_and_needs_a_cluster) {
  auto models = std::string{R"toml(
[models.a]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "a"
)toml"};
  auto r = load(with_runtime("") + models + R"toml([nodes.n1]
models = ["a", "nope"]
stages = ["only", "ghost"]
[nodes.n2]
models = ["a"]
[nodes."bad name"]
)toml");
  CHECK_ERROR(r, "nodes.n1.models", 15, "model 'nope' is not in [models]");
  CHECK_ERROR(r, "nodes.n1.stages", 16, "stage 'ghost' is not in [stages]");
  CHECK_ERROR(r, "nodes.n2.models", 18, "is hosted by node 'n1' already");
  CHECK_ERROR(r, "nodes.bad name", 19, "invalid node name");
  CHECK_ERROR(r, "nodes", 14, "it needs [cluster]");
}

CAF_TEST(models_of_one_gpu_placed_on_different_nodes_are_an_error) {
  auto r = load(with_runtime("") + R"toml([cluster]
listen = "127.0.0.1:7400"
certificate = "n1.pem"
key = "n1.key"
ca = "ca.pem"
[gpus.g]
[models.a]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "a"
gpu = "g"
[models.b]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "b"
gpu = "g"
[nodes.n1]
models = ["a"]
)toml");
  CHECK_ERROR(r, "gpus.g", 14, "are placed on different nodes ((every node), n1)");
}

CAF_TEST_FIXTURE_SCOPE_END()
