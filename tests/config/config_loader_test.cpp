// A valid config loads with every field as written, defaults fill the rest,
// relative paths resolve against the config file, and the environment
// overrides the database URL.
#define CAF_SUITE config_loader

#include "config/config_loader.hpp"
#include "tests/config/config_fixture.hpp"

#include <caf/test/unit_test.hpp>
#include <cstdlib>

using namespace turing::config;
using turing::config::test::config_fixture;

namespace {

constexpr std::string_view full_config = R"(sinks = ["committed", "merged", "rejected"]

[database]
url = "postgresql://turing@localhost/turing"
data_dir = "state/../db"

[runtime]
node = "box-1"
lease_ttl = "45s"
heartbeat_interval = "15s"
rescue_interval = "7s"
poll_interval = "3s"
shutdown_grace = "1m"
claim_batch = 32
default_timeout = "2m30s"

[models.mistral]
api = "ollama"
endpoint = "http://127.0.0.1:11434/"
model = "mistral-nemo:12b"
concurrency = 2
temperature = 0.0

[models.qwen]
api = "openai"
endpoint = "https://llm.example.com:8443/base"
model = "qwen2.5-coder:7b"
api_key_env = "QWEN_TOKEN"

[stages.lucy]
handler = "script"
entry = true
concurrency = 8
timeout = "5s"
command = ["python3", "lucy.py", "--strict"]
working_dir = "scripts"
env = { LUCY_MODE = "fast" }
outcomes = ["passed", "rejected"]
routes = { passed = "alma", rejected = "rejected" }
[stages.lucy.retry]
max_attempts = 5
backoff = "2s"
backoff_max = "1m"
backoff_multiplier = 3
jitter = 0.5

[stages.alma]
handler = "model"
model = "mistral"
system = "You are careful."
prompt = "task: dedupe\nskill: {name}\nfirst tag: {tags.0} {{literal}}\n"
outcome_field = "verdict"
required_fields = ["verdict", "reason"]
outcomes = ["merged", "passed"]
routes = { passed = "carl", merged = "merged" }

[stages.carl]
handler = "builtin"
function = "owl.create_entity"
routes = { created = ["clara_a", "clara_b"] }

[stages.clara_a]
handler = "model"
model = "mistral"
prompt_file = "prompts/clara.txt"
outcome = "proposed"
routes = { proposed = "compare" }

[stages.clara_b]
handler = "model"
model = "qwen"
prompt_file = "prompts/clara.txt"
outcome = "proposed"
routes = { proposed = "compare" }

[stages.compare]
handler = "builtin"
function = "owl.compare_proposals"
join = ["clara_a", "clara_b"]
routes = { agree = "commit", disagree = "arbitrator" }

[stages.arbitrator]
handler = "model"
model = "qwen"
prompt = "A: {a.domain} B: {b.domain}"
outcome = "resolved"
routes = { resolved = "commit" }

[stages.commit]
handler = "script"
command = ["./commit.sh"]
outcomes = ["committed"]
routes = { committed = "committed" }
)";

constexpr std::string_view clara_prompt = "Classify {name} into one of {domains}.\n"
                                          "Reply {{\"domain\": \"...\"}}\n";

struct fixture : config_fixture {
  load_result load_full() {
    dir.write("prompts/clara.txt", clara_prompt);
    std::filesystem::create_directories(dir.path() / "scripts");
    auto file = dir.write("pipeline.toml", full_config);
    return load_config_file(file, builtins);
  }
};

std::vector<route_target> stage_targets(std::initializer_list<const char*> names) {
  std::vector<route_target> out;
  for (auto n : names)
    out.push_back({route_target::kind::stage, n});
  return out;
}

std::vector<route_target> sink_target(const char* name) {
  return {{route_target::kind::sink, name}};
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(config_loader_tests, fixture)

CAF_TEST(full_config_loads_with_every_field) {
  auto r = load_full();
  for (const auto& e : r.errors)
    CAF_MESSAGE(e.to_string());
  CAF_REQUIRE(r.ok());
  const auto& c = *r.config;
  CAF_CHECK_EQUAL(c.file.string(), (dir.path() / "pipeline.toml").string());
  CAF_CHECK_EQUAL(c.sinks, (std::vector<std::string>{"committed", "merged", "rejected"}));

  CAF_CHECK_EQUAL(c.database.url, "postgresql://turing@localhost/turing");
  CAF_CHECK_EQUAL(c.database.data_dir.string(), (dir.path() / "db").string());

  CAF_CHECK_EQUAL(c.runtime.node, "box-1");
  CAF_CHECK_EQUAL(c.runtime.lease_ttl.count(), 45'000);
  CAF_CHECK_EQUAL(c.runtime.heartbeat_interval.count(), 15'000);
  CAF_CHECK_EQUAL(c.runtime.rescue_interval.count(), 7'000);
  CAF_CHECK_EQUAL(c.runtime.poll_interval.count(), 3'000);
  CAF_CHECK_EQUAL(c.runtime.shutdown_grace.count(), 60'000);
  CAF_CHECK_EQUAL(c.runtime.claim_batch, 32);
  CAF_CHECK_EQUAL(c.runtime.default_timeout.count(), 150'000);

  CAF_REQUIRE_EQUAL(c.models.size(), 2u);
  const auto& mistral = c.models[0];
  CAF_CHECK_EQUAL(mistral.name, "mistral");
  CAF_CHECK(mistral.api == model_api::ollama);
  CAF_CHECK_EQUAL(mistral.endpoint, "http://127.0.0.1:11434");
  CAF_CHECK_EQUAL(mistral.model, "mistral-nemo:12b");
  CAF_CHECK_EQUAL(mistral.concurrency, 2);
  CAF_REQUIRE(mistral.temperature.has_value());
  CAF_CHECK_EQUAL(*mistral.temperature, 0.0);
  CAF_CHECK_EQUAL(mistral.api_key_env, "");
  CAF_CHECK_EQUAL(mistral.where.line, 17);
  const auto* qwen = c.find_model("qwen");
  CAF_REQUIRE(qwen != nullptr);
  CAF_CHECK(qwen->api == model_api::openai);
  CAF_CHECK_EQUAL(qwen->endpoint, "https://llm.example.com:8443/base");
  CAF_CHECK_EQUAL(qwen->concurrency, 1);
  CAF_CHECK(!qwen->temperature.has_value());
  CAF_CHECK_EQUAL(qwen->api_key_env, "QWEN_TOKEN");
  CAF_CHECK(c.find_model("gemma") == nullptr);

  // Stages come in file order, not TOML's alphabetical order.
  std::vector<std::string> names;
  for (const auto& s : c.stages)
    names.push_back(s.name);
  CAF_CHECK_EQUAL(names, (std::vector<std::string>{"lucy", "alma", "carl", "clara_a", "clara_b",
                                                   "compare", "arbitrator", "commit"}));

  const auto& lucy = *c.find_stage("lucy");
  CAF_CHECK(lucy.handler == handler_kind::script);
  CAF_CHECK(lucy.entry);
  CAF_CHECK_EQUAL(lucy.concurrency, 8);
  CAF_REQUIRE(lucy.timeout.has_value());
  CAF_CHECK_EQUAL(lucy.timeout->count(), 5'000);
  CAF_CHECK_EQUAL(c.timeout_of(lucy).count(), 5'000);
  CAF_CHECK_EQUAL(lucy.command, (std::vector<std::string>{"python3", "lucy.py", "--strict"}));
  CAF_CHECK_EQUAL(lucy.working_dir.string(), (dir.path() / "scripts").string());
  CAF_CHECK_EQUAL(lucy.env.size(), 1u);
  CAF_CHECK_EQUAL(lucy.env.at("LUCY_MODE"), "fast");
  CAF_CHECK_EQUAL(lucy.outcomes, (std::vector<std::string>{"passed", "rejected"}));
  CAF_CHECK(lucy.routes.at("passed") == stage_targets({"alma"}));
  CAF_CHECK(lucy.routes.at("rejected") == sink_target("rejected"));
  CAF_CHECK_EQUAL(lucy.retry.max_attempts, 5);
  CAF_CHECK_EQUAL(lucy.retry.backoff.count(), 2'000);
  CAF_CHECK_EQUAL(lucy.retry.backoff_max.count(), 60'000);
  CAF_CHECK_EQUAL(lucy.retry.backoff_multiplier, 3.0);
  CAF_CHECK_EQUAL(lucy.retry.jitter, 0.5);
  CAF_CHECK_EQUAL(lucy.where.line, 30);
  CAF_CHECK_EQUAL(lucy.where.file, (dir.path() / "pipeline.toml").string());

  const auto& alma = *c.find_stage("alma");
  CAF_CHECK(alma.handler == handler_kind::model);
  CAF_CHECK(!alma.entry);
  CAF_CHECK_EQUAL(alma.concurrency, 2); // unset: as many calls as its model takes
  CAF_CHECK(!alma.timeout.has_value());
  CAF_CHECK_EQUAL(c.timeout_of(alma).count(), 150'000);
  CAF_CHECK_EQUAL(alma.model, "mistral");
  CAF_CHECK_EQUAL(alma.system_prompt, "You are careful.");
  CAF_CHECK_EQUAL(alma.prompt, "task: dedupe\nskill: {name}\nfirst tag: {tags.0} {{literal}}\n");
  CAF_CHECK_EQUAL(alma.outcome_field, "verdict");
  CAF_CHECK_EQUAL(alma.fixed_outcome, "");
  CAF_CHECK_EQUAL(alma.required_fields, (std::vector<std::string>{"verdict", "reason"}));
  CAF_CHECK(alma.routes.at("passed") == stage_targets({"carl"}));
  CAF_CHECK(alma.routes.at("merged") == sink_target("merged"));
  // Defaults of an absent [retry] table.
  CAF_CHECK_EQUAL(alma.retry.max_attempts, 3);
  CAF_CHECK_EQUAL(alma.retry.backoff.count(), 1'000);
  CAF_CHECK_EQUAL(alma.retry.backoff_max.count(), 60'000);
  CAF_CHECK_EQUAL(alma.retry.backoff_multiplier, 2.0);
  CAF_CHECK_EQUAL(alma.retry.jitter, 0.2);

  const auto& carl = *c.find_stage("carl");
  CAF_CHECK(carl.handler == handler_kind::builtin);
  CAF_CHECK_EQUAL(carl.function, "owl.create_entity");
  // A builtin's outcomes come from the catalog.
  CAF_CHECK_EQUAL(carl.outcomes, (std::vector<std::string>{"created"}));
  CAF_CHECK(carl.routes.at("created") == stage_targets({"clara_a", "clara_b"}));

  const auto& clara_a = *c.find_stage("clara_a");
  CAF_CHECK_EQUAL(clara_a.prompt, std::string{clara_prompt});
  CAF_CHECK_EQUAL(clara_a.fixed_outcome, "proposed");
  CAF_CHECK_EQUAL(clara_a.outcome_field, "");
  CAF_CHECK_EQUAL(clara_a.outcomes, (std::vector<std::string>{"proposed"}));
  CAF_CHECK_EQUAL(c.find_stage("clara_b")->model, "qwen");

  const auto& compare = *c.find_stage("compare");
  CAF_CHECK_EQUAL(compare.join, (std::vector<std::string>{"clara_a", "clara_b"}));
  CAF_CHECK_EQUAL(compare.outcomes, (std::vector<std::string>{"agree", "disagree"}));
  CAF_CHECK(compare.routes.at("disagree") == stage_targets({"arbitrator"}));

  const auto& commit = *c.find_stage("commit");
  CAF_CHECK_EQUAL(commit.command, (std::vector<std::string>{"./commit.sh"}));
  CAF_CHECK_EQUAL(commit.working_dir.string(), dir.path().string());
  CAF_CHECK(commit.routes.at("committed") == sink_target("committed"));
  CAF_CHECK(c.is_sink("merged"));
  CAF_CHECK(!c.is_sink("commit"));
  CAF_CHECK(c.find_stage("nope") == nullptr);
}

CAF_TEST(minimal_config_takes_the_documented_defaults) {
  auto r = load(R"(
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "out" }
)"
                "sinks = []\n");
  // `sinks` after a table belongs to that table: the error says so.
  CAF_CHECK(find_error(r, "stages.only.sinks", "top-level key") != nullptr);

  r = load(R"(sinks = ["out"]
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "out" }
)");
  CAF_REQUIRE(r.ok());
  const auto& c = *r.config;
  CAF_CHECK_EQUAL(c.file.string(), "pipeline.toml");
  CAF_CHECK_EQUAL(c.database.url, "");
  CAF_CHECK_EQUAL(c.database.data_dir.string(), (dir.path() / ".turing").string());
  CAF_CHECK_EQUAL(c.runtime.node, "");
  CAF_CHECK_EQUAL(c.runtime.lease_ttl.count(), 30'000);
  CAF_CHECK_EQUAL(c.runtime.heartbeat_interval.count(), 10'000);
  CAF_CHECK_EQUAL(c.runtime.rescue_interval.count(), 5'000);
  CAF_CHECK_EQUAL(c.runtime.poll_interval.count(), 2'000);
  CAF_CHECK_EQUAL(c.runtime.shutdown_grace.count(), 20'000);
  CAF_CHECK_EQUAL(c.runtime.default_timeout.count(), 60'000);
  CAF_CHECK_EQUAL(c.runtime.claim_batch, turing::config::default_claim_batch);
  CAF_CHECK_EQUAL(c.runtime.stall_timeout.count(), 10'000);
  CAF_CHECK(c.models.empty());
  CAF_REQUIRE_EQUAL(c.stages.size(), 1u);
  CAF_CHECK_EQUAL(c.stages[0].concurrency, turing::config::default_builtin_concurrency);
  CAF_CHECK_EQUAL(c.timeout_of(c.stages[0]).count(), 60'000);
}

CAF_TEST(builtin_concurrency_defaults_to_two_claim_batches_of_a_large_claim_batch) {
  auto with_claim_batch = [&](const std::string& runtime_line, const std::string& stage_line) {
    return load("sinks = [\"out\"]\n[runtime]\n" + runtime_line + R"(
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "out" }
)" + stage_line);
  };
  auto r = with_claim_batch("claim_batch = 2048", "");
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->stages[0].concurrency, 4096);
  // A small claim_batch keeps the default: many batches in flight already.
  r = with_claim_batch("claim_batch = 32", "");
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->stages[0].concurrency, turing::config::default_builtin_concurrency);
  // Capped at the most a stage may have.
  r = with_claim_batch("claim_batch = 9000", "");
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->stages[0].concurrency, turing::config::max_stage_concurrency);
  // A concurrency the config sets is kept.
  r = with_claim_batch("claim_batch = 2048", "concurrency = 3\n");
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->stages[0].concurrency, 3);
}

CAF_TEST(script_mode_defaults_to_process_and_reads_worker) {
  auto text = [](const std::string& mode_line) {
    return R"(sinks = ["out"]
[stages.lucy]
handler = "script"
entry = true
command = ["lucy.sh"]
concurrency = 3
)" + mode_line +
           R"(
outcomes = ["ok"]
routes = { ok = "out" }
)";
  };
  auto r = load(text(""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK(r.config->stages[0].mode == script_mode::process);
  r = load(text("mode = \"process\""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK(r.config->stages[0].mode == script_mode::process);
  r = load(text("mode = \"worker\""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK(r.config->stages[0].mode == script_mode::worker);
  // In worker mode concurrency is the pool size: it is read as usual.
  CAF_CHECK_EQUAL(r.config->stages[0].concurrency, 3);
  CAF_CHECK_EQUAL(to_string(script_mode::worker), "worker");
}

CAF_TEST(stall_timeout_is_read_from_the_runtime_table) {
  auto r = load(R"(sinks = ["out"]
[runtime]
stall_timeout = "1m30s"
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "out" }
)");
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->runtime.stall_timeout.count(), 90'000);
}

CAF_TEST(retain_done_defaults_to_a_week_and_reads_a_duration_or_forever) {
  auto text = [](const std::string& lines) { return with_runtime(lines, "out"); };
  auto r = load(text(""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->runtime.retain_done.count(), 7LL * 86'400'000);
  r = load(text("retain_done = \"36h\""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->runtime.retain_done.count(), 36LL * 3'600'000);
  r = load(text("retain_done = \"30d\""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->runtime.retain_done.count(), 30LL * 86'400'000);
  r = load(text("retain_done = \"forever\""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->runtime.retain_done.count(), 0);
}

CAF_TEST(payload_sizes_default_to_16_1_and_32_mb_and_read_sizes_or_bytes) {
  auto text = [](const std::string& lines) { return with_runtime(lines, "out"); };
  auto r = load(text(""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->runtime.max_payload, std::uint64_t{16} << 20);
  CAF_CHECK_EQUAL(r.config->runtime.max_prompt, std::uint64_t{1} << 20);
  r = load(text("max_payload = \"50MB\"\nmax_prompt = \"512 KiB\""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->runtime.max_payload, std::uint64_t{50} << 20);
  CAF_CHECK_EQUAL(r.config->runtime.max_prompt, std::uint64_t{512} << 10);
  r = load(text("max_payload = 2048"));
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->runtime.max_payload, 2048u);
  CAF_CHECK_EQUAL(r.config->runtime.claim_bytes, std::uint64_t{32} << 20);
  r = load(text("claim_bytes = \"4MB\""));
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.config->runtime.claim_bytes, std::uint64_t{4} << 20);
}

CAF_TEST(environment_overrides_database_url_only_when_non_empty) {
  auto r = load_full();
  CAF_REQUIRE(r.ok());
  auto c = *r.config;
  ::unsetenv(database_url_env);
  apply_environment(c);
  CAF_CHECK_EQUAL(c.database.url, "postgresql://turing@localhost/turing");
  ::setenv(database_url_env, "", 1);
  apply_environment(c);
  CAF_CHECK_EQUAL(c.database.url, "postgresql://turing@localhost/turing");
  ::setenv(database_url_env, "host=/run/postgresql dbname=other", 1);
  apply_environment(c);
  CAF_CHECK_EQUAL(c.database.url, "host=/run/postgresql dbname=other");
  ::unsetenv(database_url_env);
}

CAF_TEST(model_endpoint_is_the_default_endpoint_of_every_model) {
  auto result = load(R"toml(model_endpoint = "http://gpu-box:11434/"
sinks = ["done"]
[models.a]
api = "ollama"
model = "mistral-nemo:12b"
[models.b]
api = "ollama"
endpoint = "http://other:11434"
model = "gemma2"
[stages.s]
handler = "model"
entry = true
model = "a"
prompt = "skill: {name}"
outcome = "ok"
routes = { ok = "done" }
)toml");
  for (const auto& e : result.errors)
    CAF_MESSAGE(e.to_string());
  CAF_REQUIRE(result.ok());
  CAF_CHECK_EQUAL(result.config->find_model("a")->endpoint, "http://gpu-box:11434");
  CAF_CHECK_EQUAL(result.config->find_model("b")->endpoint, "http://other:11434");
  auto bad = load(R"toml(model_endpoint = "gpu-box"
sinks = []
)toml");
  const auto* e = find_error(bad, "model_endpoint", "bad endpoint URL");
  CAF_REQUIRE(e != nullptr);
  CAF_CHECK_EQUAL(e->where.line, 1);
}

CAF_TEST(gpus_are_read_with_their_defaults_and_learn_their_models) {
  auto result = load(R"toml(model_endpoint = "http://gpu-box:11434"
sinks = ["done"]
[gpus.big]
max_loaded = 2
swap_cost = "20s"
max_wait = "2m"
linger = "500ms"
[gpus.small]
[models.a]
api = "ollama"
model = "mistral-nemo:12b"
gpu = "big"
[models.b]
api = "ollama"
model = "gemma2"
gpu = "big"
[models.c]
api = "ollama"
model = "qwen2.5-coder:7b"
gpu = "small"
[models.d]
api = "ollama"
model = "phi3"
[stages.s]
handler = "model"
entry = true
model = "a"
prompt = "skill: {name}"
outcome = "ok"
routes = { ok = "done" }
)toml");
  for (const auto& e : result.errors)
    CAF_MESSAGE(e.to_string());
  CAF_REQUIRE(result.ok());
  const auto& cfg = *result.config;
  CAF_REQUIRE_EQUAL(cfg.gpus.size(), 2u);
  const auto* big = cfg.find_gpu("big");
  CAF_REQUIRE(big != nullptr);
  CAF_CHECK_EQUAL(big->max_loaded, 2);
  CAF_CHECK(big->swap_cost == millis{20000});
  CAF_CHECK(big->max_wait == millis{120000});
  CAF_CHECK(big->linger_or_default() == millis{500});
  CAF_CHECK_EQUAL(big->models, (std::vector<std::string>{"a", "b"}));
  const auto* small = cfg.find_gpu("small");
  CAF_REQUIRE(small != nullptr);
  CAF_CHECK_EQUAL(small->max_loaded, 1);
  CAF_CHECK(small->swap_cost == millis{10000});
  CAF_CHECK(small->max_wait == millis{300000});
  // The default linger: a tenth of the swap cost, at most 2 s.
  CAF_CHECK(small->linger_or_default() == millis{1000});
  CAF_CHECK_EQUAL(cfg.find_model("c")->gpu, "small");
  CAF_CHECK_EQUAL(cfg.find_model("d")->gpu, "");
}

CAF_TEST(budgets_are_read_per_model_and_per_api_key) {
  auto result = load(R"toml(model_endpoint = "https://api.example.com"
sinks = ["done"]
[api_keys.PROVIDER_KEY]
requests_per_minute = 500
tokens_per_minute = 200000
[models.a]
api = "openai"
model = "small"
api_key_env = "PROVIDER_KEY"
requests_per_minute = 60
[models.b]
api = "openai"
model = "large"
api_key_env = "PROVIDER_KEY"
tokens_per_minute = 5000
[models.c]
api = "ollama"
model = "local"
[stages.s]
handler = "model"
entry = true
model = "a"
prompt = "skill: {name}"
outcome = "ok"
routes = { ok = "done" }
)toml");
  for (const auto& e : result.errors)
    CAF_MESSAGE(e.to_string());
  CAF_REQUIRE(result.ok());
  const auto& cfg = *result.config;
  CAF_CHECK_EQUAL(cfg.find_model("a")->requests_per_minute, 60);
  CAF_CHECK_EQUAL(cfg.find_model("a")->tokens_per_minute, 0);
  CAF_CHECK_EQUAL(cfg.find_model("b")->tokens_per_minute, 5000);
  CAF_CHECK_EQUAL(cfg.find_model("c")->requests_per_minute, 0);
  const auto* key = cfg.find_api_key("PROVIDER_KEY");
  CAF_REQUIRE(key != nullptr);
  CAF_CHECK_EQUAL(key->requests_per_minute, 500);
  CAF_CHECK_EQUAL(key->tokens_per_minute, 200000);
  CAF_CHECK_EQUAL(key->models, (std::vector<std::string>{"a", "b"}));
}

CAF_TEST(unreadable_config_file_gives_one_error_naming_it) {
  auto missing = dir.path() / "absent.toml";
  auto r = load_config_file(missing, builtins);
  CAF_CHECK(!r.ok());
  CAF_REQUIRE_EQUAL(r.errors.size(), 1u);
  CAF_CHECK_EQUAL(r.errors[0].where.file, missing.string());
  CAF_CHECK(contains(r.errors[0].message, "cannot read config file"));
  CAF_CHECK(contains(r.errors[0].to_string(), missing.string() + ": cannot read config file"));

  r = load_config_file(dir.path(), builtins);
  CAF_REQUIRE_EQUAL(r.errors.size(), 1u);
  CAF_CHECK(contains(r.errors[0].message, "directory"));
}

CAF_TEST(error_to_string_names_file_line_column_and_key) {
  auto r = load(R"(sinks = ["out"]
[stages.only]
handler = "builtin"
entry = true
function = "owl.normalize"
concurency = 2
routes = { ok = "out" }
)");
  CAF_REQUIRE_EQUAL(r.errors.size(), 1u);
  CAF_CHECK_EQUAL(r.errors[0].to_string(),
                  "pipeline.toml:6:1: stages.only.concurency: unknown key 'concurency'; did you "
                  "mean 'concurrency'?");
}

CAF_TEST(a_cluster_section_is_read_with_its_defaults_and_paths_beside_the_config) {
  auto result = load(with_runtime("") + R"toml([cluster]
listen = "127.0.0.1:7400"
certificate = "certs/n1.pem"
key = "certs/n1.key"
ca = "certs/ca.pem"
)toml");
  for (const auto& e : result.errors)
    CAF_MESSAGE(e.to_string());
  CAF_REQUIRE(result.ok());
  const auto& c = result.config->cluster;
  CAF_CHECK(c.enabled);
  CAF_CHECK_EQUAL(c.listen_host, "127.0.0.1");
  CAF_CHECK_EQUAL(c.listen_port, 7400);
  CAF_CHECK_EQUAL(c.advertise_host, "127.0.0.1");
  CAF_CHECK_EQUAL(c.advertise_port, 7400);
  CAF_CHECK_EQUAL(c.certificate, dir.path() / "certs/n1.pem");
  CAF_CHECK_EQUAL(c.ca, dir.path() / "certs/ca.pem");
  CAF_CHECK(c.heartbeat_interval == millis{1000});
  CAF_CHECK(c.connection_timeout == millis{5000});
  auto wildcard = load(with_runtime("") + R"toml([cluster]
listen = "0.0.0.0:7400"
advertise = "[fd00::5]:7401"
certificate = "n1.pem"
key = "n1.key"
ca = "ca.pem"
heartbeat_interval = "2s"
connection_timeout = "10s"
)toml");
  CAF_REQUIRE(wildcard.ok());
  CAF_CHECK_EQUAL(wildcard.config->cluster.advertise_host, "fd00::5");
  CAF_CHECK_EQUAL(wildcard.config->cluster.advertise_port, 7401);
  CAF_CHECK(wildcard.config->cluster.connection_timeout == millis{10000});
  CAF_CHECK(!load(with_runtime("")).config->cluster.enabled);
}

CAF_TEST(placement_says_which_node_hosts_a_model_and_runs_a_stage) {
  auto result = load(with_runtime("") + R"toml([cluster]
listen = "127.0.0.1:7400"
certificate = "n1.pem"
key = "n1.key"
ca = "ca.pem"
[models.a]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "a"
[models.b]
api = "ollama"
endpoint = "http://127.0.0.1:11434"
model = "b"
[nodes.gpu-1]
models = ["a"]
stages = []
[nodes.cpu-1]
)toml");
  for (const auto& e : result.errors)
    CAF_MESSAGE(e.to_string());
  CAF_REQUIRE(result.ok());
  const auto& cfg = *result.config;
  CAF_REQUIRE_EQUAL(cfg.nodes.size(), 2u);
  CAF_CHECK_EQUAL(cfg.model_host("a"), "gpu-1");
  CAF_CHECK_EQUAL(cfg.model_host("b"), "");
  CAF_CHECK(!cfg.runs_stage("gpu-1", "only"));
  CAF_CHECK(cfg.runs_stage("cpu-1", "only"));
  CAF_CHECK(cfg.runs_stage("elsewhere", "only"));
}

CAF_TEST_FIXTURE_SCOPE_END()
