// The simulated model server end to end: its answer rules over the OWL
// dataset, a real server on a free port in-process (GPU residency too), the
// executable's port file, flags, signals and crash fault, and Lucy run as a
// child process.
#define CAF_SUITE model_simulator
#include "examples/owl/simulator/answer_rules.hpp"
#include "examples/owl/simulator/domain_keywords.hpp"
#include "examples/owl/simulator/fault_plan.hpp"
#include "examples/owl/simulator/latency_model.hpp"
#include "examples/owl/simulator/server.hpp"
#include "examples/owl/simulator/sim_config.hpp"

#include <algorithm>
#include <caf/test/unit_test.hpp>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

using namespace std::chrono_literals;
using nlohmann::json;
namespace sim = turing::model_sim;

namespace {

const std::string owl_dir = TURING_OWL_DIR;
const std::string skills_file = owl_dir + "/data/skills.jsonl";
const std::string known_file = owl_dir + "/data/known_skills.txt";
const std::string manifest_file = owl_dir + "/data/manifest.json";
const std::string lucy = owl_dir + "/scripts/lucy.py";

// -- helpers --------------------------------------------------------------------
// CAF_CHECK_EQUAL binds its arguments to references first: compare locals,
// never a reference into a temporary json ("f()["key"]" dangles).

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in{path};
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

std::string read_text(const std::string& path) {
  std::ifstream in{path};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

json manifest() {
  return json::parse(read_text(manifest_file));
}

const sim::known_skills& registry() {
  static const sim::known_skills loaded = [] {
    std::string error;
    auto r = sim::load_known_skills(known_file, error);
    if (!r)
      CAF_FAIL(error);
    return *r;
  }();
  return loaded;
}

const sim::answer_rules& rules() {
  static const sim::answer_rules r{registry()};
  return r;
}

// The exit status and stdout of a shell command.
struct command_result {
  int status = -1;
  std::string out;
};

command_result run_shell(const std::string& command) {
  command_result result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr)
    return result;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0)
    result.out.append(buf, n);
  int raw = pclose(pipe);
  result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return result;
}

std::string temp_path(const std::string& stem) {
  return (std::filesystem::temp_directory_path() /
          (stem + "-" + std::to_string(getpid()) + "-" +
           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count())))
      .string();
}

// Runs Lucy once on `input` as the runtime would: a child, JSON on stdin.
command_result run_lucy(const std::string& input) {
  auto path = temp_path("lucy-input");
  std::ofstream{path} << input;
  auto result = run_shell("python3 '" + lucy + "' < '" + path + "' 2>/dev/null");
  std::filesystem::remove(path);
  return result;
}

// Lucy's verdicts for the whole dataset, in file order (one child process).
const std::vector<json>& dataset_verdicts() {
  static const std::vector<json> verdicts = [] {
    auto r = run_shell("python3 '" + lucy + "' --batch < '" + skills_file + "'");
    CAF_REQUIRE_EQUAL(r.status, 0);
    std::vector<json> out;
    size_t start = 0;
    while (start < r.out.size()) {
      auto end = r.out.find('\n', start);
      out.push_back(json::parse(r.out.substr(start, end - start)));
      start = end == std::string::npos ? r.out.size() : end + 1;
    }
    return out;
  }();
  return verdicts;
}

// The dataset's clean skills: passed by Lucy and not a duplicate for Alma.
const std::vector<std::string>& clean_skills() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& v : dataset_verdicts()) {
      if (v["outcome"] != "passed")
        continue;
      auto name = v["output"]["name"].get<std::string>();
      if (rules().duplicate_of(name) == nullptr)
        out.push_back(name);
    }
    return out;
  }();
  return names;
}

sim::prompt_fields fields(std::string task, std::string skill) {
  sim::prompt_fields f;
  f.task = std::move(task);
  f.skill = std::move(skill);
  return f;
}

const sim::model_traits clara_a{"mistral-nemo:12b", 0.05};
const sim::model_traits clara_b{"qwen2.5-coder:7b", 0.15};

// Renders a prompt file the way turing's templates do for plain fields:
// "{field}" from `values`, "{{" and "}}" as literal braces.
std::string render(const std::string& tmpl, const std::map<std::string, std::string>& values) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl.compare(i, 2, "{{") == 0 || tmpl.compare(i, 2, "}}") == 0) {
      out += tmpl[i++];
    } else if (tmpl[i] == '{') {
      auto close = tmpl.find('}', i);
      out += values.at(tmpl.substr(i + 1, close - i - 1));
      i = close;
    } else {
      out += tmpl[i];
    }
  }
  return out;
}

std::string chat_body(const std::string& model, const std::string& user, bool stream = false) {
  return json{{"model", model},
              {"stream", stream},
              {"messages",
               {{{"role", "system"}, {"content", "You are a careful assistant."}},
                {{"role", "user"}, {"content", user}}}}}
      .dump();
}

// A model_server on a free port, served from its own thread.
struct running_server {
  explicit running_server(sim::sim_config config) : server(std::move(config), rules()) {
    thread = std::thread{[this] { server.run(); }};
    auto bound = server.wait_until_listening(5s);
    CAF_REQUIRE(bound.has_value());
    port = *bound;
  }

  ~running_server() {
    server.stop();
    thread.join();
  }

  httplib::Client client(std::chrono::milliseconds read_timeout = 5s) const {
    httplib::Client c{"127.0.0.1", port};
    c.set_read_timeout(read_timeout);
    c.set_connection_timeout(2s);
    return c;
  }

  sim::model_server server;
  std::thread thread;
  int port = 0;
};

sim::sim_config test_config() {
  auto c = sim::default_sim_config();
  c.port = 0;
  c.host = "127.0.0.1";
  c.latency_scale = 1.0 / 4000.0; // a few milliseconds a call
  c.threads = 16;
  return c;
}

} // namespace

// -- the dataset ------------------------------------------------------------------

CAF_TEST(dataset_is_large_valid_json_with_unique_keys) {
  auto lines = read_lines(skills_file);
  CAF_CHECK_GREATER_OR_EQUAL(lines.size(), 2000u);
  std::set<std::string> keys;
  size_t bad = 0;
  for (const auto& line : lines) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("key") || !j["key"].is_string() ||
        !j.contains("name") || !j["name"].is_string()) {
      ++bad;
      continue;
    }
    keys.insert(j["key"].get<std::string>());
  }
  CAF_CHECK_EQUAL(bad, 0u);
  CAF_CHECK_EQUAL(keys.size(), lines.size());
  auto m = manifest();
  CAF_CHECK_EQUAL(m["total"].get<size_t>(), lines.size());
  CAF_CHECK_EQUAL(m["clean"].get<size_t>() + m["junk"].get<size_t>() +
                      m["near_duplicate"].get<size_t>(),
                  lines.size());
  auto known = read_lines(known_file);
  CAF_CHECK_EQUAL(known.size(), m["known_skills"].get<size_t>());
  CAF_CHECK_EQUAL(registry().size(), known.size()); // no two share a dedupe key
}

CAF_TEST(lucy_rejects_exactly_the_junk_and_alma_merges_exactly_the_duplicates) {
  auto m = manifest();
  const auto& verdicts = dataset_verdicts();
  CAF_REQUIRE_EQUAL(verdicts.size(), m["total"].get<size_t>());
  std::map<std::string, size_t> reasons;
  size_t passed = 0;
  size_t merged = 0;
  for (const auto& v : verdicts) {
    if (v["outcome"] == "rejected") {
      ++reasons[v["output"]["reason"].get<std::string>()];
      continue;
    }
    ++passed;
    if (rules().duplicate_of(v["output"]["name"].get<std::string>()) != nullptr)
      ++merged;
  }
  for (const auto& [reason, count] : m["junk_by_reason"].items())
    CAF_CHECK_EQUAL(reasons[reason], count.get<size_t>());
  CAF_CHECK_EQUAL(passed, m["clean"].get<size_t>() + m["near_duplicate"].get<size_t>());
  CAF_CHECK_EQUAL(merged, m["near_duplicate"].get<size_t>());
  CAF_CHECK_EQUAL(clean_skills().size(), m["clean"].get<size_t>());
}

// -- Lucy as a child process ----------------------------------------------------------

CAF_TEST(lucy_normalises_clean_names_rejects_junk_and_exits_2_on_malformed_input) {
  auto ok = run_lucy(R"({"key": "s1", "name": "  Kubernetes   cluster administration "})");
  CAF_REQUIRE_EQUAL(ok.status, 0);
  auto v = json::parse(ok.out);
  CAF_CHECK_EQUAL(v["outcome"], "passed");
  CAF_CHECK_EQUAL(v["output"]["name"], "Kubernetes cluster administration");
  CAF_CHECK_EQUAL(v["output"]["raw_name"], "  Kubernetes   cluster administration ");
  CAF_CHECK_EQUAL(v["output"]["key"], "s1");

  // Acronyms, dotted product names and slashes are skills, not junk.
  for (auto name : {"HTML", "ASP.NET Core web APIs", "CI/CD pipeline design", "C++"}) {
    auto r = run_lucy(json{{"key", "k"}, {"name", name}}.dump());
    auto verdict = json::parse(r.out);
    CAF_CHECK_EQUAL(verdict["outcome"], "passed");
  }

  const std::pair<std::string, std::string> junk[] = {
      {"   \t ", "empty"},
      {"asdf", "keyboard_mash"},
      {"sdfsdf", "keyboard_mash"},
      {"https://example.com/skills/42", "url"},
      {"www.example.org", "url"},
      {"12/34 !!", "no_letters"},
      {std::string(121, 'x') + " skill", "too_long"},
  };
  for (const auto& [name, reason] : junk) {
    auto r = run_lucy(json{{"key", "k"}, {"name", name}}.dump());
    CAF_CHECK_EQUAL(r.status, 0);
    auto verdict = json::parse(r.out);
    CAF_CHECK_EQUAL(verdict["outcome"], "rejected");
    CAF_CHECK_EQUAL(verdict["output"]["reason"], reason);
  }

  for (auto malformed : {"not json", R"({"key": "k"})", R"({"name": "x"})", "[1, 2]",
                         R"({"key": "k", "name": 7})"}) {
    auto r = run_lucy(malformed);
    CAF_CHECK_EQUAL(r.status, 2);
    CAF_CHECK(r.out.empty());
  }
}

// -- answer rules ---------------------------------------------------------------------

CAF_TEST(dedupe_merges_spelling_variants_of_known_skills_and_passes_new_ones) {
  const std::string canonical = read_lines(known_file).front();
  std::string upper = canonical;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  std::string hyphen = canonical;
  std::replace(hyphen.begin(), hyphen.end(), ' ', '-');
  for (const auto& variant : {canonical, upper, hyphen, "  " + canonical + " skills.",
                              canonical + " Skills", canonical + "!"}) {
    auto reply = rules().answer(fields("dedupe", variant), clara_a);
    CAF_CHECK_EQUAL(reply["verdict"], "merged");
    CAF_CHECK_EQUAL(reply["duplicate_of"], canonical);
  }
  // "&" and "and" meet.
  sim::known_skills own;
  own.add("Diversity and inclusion");
  own.add("R&D budgeting");
  sim::answer_rules with_and{own};
  auto ampersand = with_and.answer(fields("dedupe", "diversity & inclusion"), clara_a);
  CAF_CHECK_EQUAL(ampersand["duplicate_of"], "Diversity and inclusion");
  auto spelled_out = with_and.answer(fields("dedupe", "R and D budgeting"), clara_a);
  CAF_CHECK_EQUAL(spelled_out["duplicate_of"], "R&D budgeting");
  auto fresh = rules().answer(fields("dedupe", "Underwater basket weaving"), clara_a);
  CAF_CHECK_EQUAL(fresh, json({{"verdict", "passed"}}));
}

CAF_TEST(classify_answers_are_deterministic_and_models_disagree_sometimes) {
  const auto& names = clean_skills();
  CAF_REQUIRE_GREATER(names.size(), 1000u);
  std::set<std::string> domains_a;
  size_t disagreements = 0;
  size_t unstable = 0;
  for (const auto& name : names) {
    auto a = rules().answer(fields("classify", name), clara_a);
    auto b = rules().answer(fields("classify", name), clara_b);
    if (a != rules().answer(fields("classify", name), clara_a) ||
        b != rules().answer(fields("classify", name), clara_b))
      ++unstable;
    CAF_CHECK(sim::is_domain(a["domain"].get<std::string>()));
    auto confidence = a["confidence"].get<double>();
    CAF_CHECK(confidence > 0.0 && confidence < 1.0);
    domains_a.insert(a["domain"].get<std::string>());
    if (a["domain"] != b["domain"])
      ++disagreements;
  }
  CAF_CHECK_EQUAL(unstable, 0u);
  CAF_CHECK_EQUAL(domains_a.size(), 8u);
  auto rate = double(disagreements) / double(names.size());
  CAF_MESSAGE("Clara A vs Clara B disagree on " << disagreements << " of " << names.size()
                                                << " clean skills (" << rate * 100 << " %)");
  CAF_CHECK_GREATER_OR_EQUAL(rate, 0.05);
  CAF_CHECK_LESS_OR_EQUAL(rate, 0.30);
  // A model without bias gives the keyword table's own answer.
  sim::model_traits unbiased{"any", 0.0};
  CAF_CHECK_EQUAL(rules().classify("Kubernetes cluster administration", unbiased).domain,
                  "technology");
  CAF_CHECK_EQUAL(rules().classify("GDPR data subject requests", unbiased).domain,
                  "compliance_and_risk");
  CAF_CHECK_EQUAL(rules().classify("Conflict mediation in distributed teams", unbiased).domain,
                  "people_and_communication");
  CAF_CHECK_EQUAL(rules().classify("Quarterly revenue forecasting", unbiased).domain,
                  "business_operations");
}

CAF_TEST(arbitrate_picks_one_of_the_proposals_and_restores_the_unbiased_answer) {
  sim::model_traits arbitrator{"gemma2", 0.0};
  size_t checked = 0;
  for (const auto& name : clean_skills()) {
    auto a = rules().classify(name, clara_a);
    auto b = rules().classify(name, clara_b);
    if (a.domain == b.domain)
      continue;
    auto f = fields("arbitrate", name);
    f.proposal_a = a.domain;
    f.proposal_b = b.domain;
    auto reply = rules().answer(f, arbitrator);
    auto chosen = reply["domain"].get<std::string>();
    CAF_CHECK(chosen == a.domain || chosen == b.domain);
    CAF_CHECK(reply["reason"].is_string());
    // Only one of the two was biased, so the arbitrator sides with the other.
    if (a.biased != b.biased)
      CAF_CHECK_EQUAL(chosen, a.biased ? b.domain : a.domain);
    ++checked;
  }
  CAF_CHECK_GREATER(checked, 50u);
  auto f = fields("arbitrate", "Tableau reporting");
  f.proposal_a = "not_a_domain";
  f.proposal_b = "data_and_analytics";
  auto one_valid = rules().answer(f, arbitrator);
  CAF_CHECK_EQUAL(one_valid["domain"], "data_and_analytics");
  f.proposal_b = "nonsense";
  CAF_CHECK(rules().answer(f, arbitrator).contains("error"));
}

CAF_TEST(prompts_without_the_convention_lines_get_an_error_reply) {
  sim::prompt_fields none;
  CAF_CHECK(rules().answer(none, clara_a).contains("error"));
  sim::prompt_fields no_skill;
  no_skill.task = "classify";
  CAF_CHECK(rules().answer(no_skill, clara_a).contains("error"));
  CAF_CHECK(rules().answer(fields("translate", "x"), clara_a).contains("error"));
  auto f = fields("arbitrate", "x");
  CAF_CHECK(rules().answer(f, clara_a).contains("error")); // no proposals
}

CAF_TEST(the_example_prompt_files_render_to_the_convention) {
  std::map<std::string, std::string> values{{"name", "Power BI dashboard design"},
                                            {"proposal_a", "technology"},
                                            {"proposal_b", "data_and_analytics"}};
  const std::pair<std::string, std::string> prompts[] = {
      {"alma.txt", "dedupe"}, {"clara.txt", "classify"}, {"arbitrator.txt", "arbitrate"}};
  for (const auto& [file, task] : prompts) {
    auto text = render(read_text(owl_dir + "/prompts/" + file), values);
    auto f = sim::read_prompt_fields({{"system", "You answer in JSON."}, {"user", text}});
    CAF_CHECK_EQUAL(f.task.value_or(""), task);
    CAF_CHECK_EQUAL(f.skill.value_or(""), "Power BI dashboard design");
    auto reply = rules().answer(f, clara_a);
    CAF_CHECK(!reply.contains("error"));
  }
  // The last user message is the question; earlier turns are history.
  auto f = sim::read_prompt_fields({{"system", "task: classify"},
                                    {"user", "skill: Old question"},
                                    {"assistant", "{}"},
                                    {"user", "skill: New question"}});
  CAF_CHECK_EQUAL(f.skill.value_or(""), "New question");
  CAF_CHECK_EQUAL(f.task.value_or(""), "classify");
}

// -- latency and faults ------------------------------------------------------------------

CAF_TEST(latency_model_reproduces_the_configured_percentiles_scaled_and_clamped) {
  sim::latency_profile p{12'000, 48'800, 100'000};
  sim::latency_model model{p, 1.0 / 400.0};
  sim::stable_rng rng{42};
  std::vector<double> ms;
  for (int i = 0; i < 20'000; ++i)
    ms.push_back(double(model.sample(rng).count()) / 1000.0);
  std::sort(ms.begin(), ms.end());
  auto p50 = ms[ms.size() / 2];
  auto p95 = ms[ms.size() * 95 / 100];
  CAF_MESSAGE("p50 " << p50 << " ms, p95 " << p95 << " ms, max " << ms.back() << " ms");
  CAF_CHECK(p50 > 28.5 && p50 < 31.5);   // 12 s / 400 = 30 ms
  CAF_CHECK(p95 > 114.0 && p95 < 130.0); // 48.8 s / 400 = 122 ms
  CAF_CHECK_LESS_OR_EQUAL(ms.back(), 250.0 + 0.001);
  // The same seed, the same draw.
  sim::stable_rng r1{7};
  sim::stable_rng r2{7};
  CAF_CHECK_EQUAL(model.sample(r1).count(), model.sample(r2).count());
  CAF_CHECK(sim::check_latency_profile({100, 50, 200}).has_value());
}

CAF_TEST(slowdown_multiplies_latency_by_the_calls_so_far_and_is_validated) {
  using std::chrono::microseconds;
  // 1 + 0.5 × n / 1000: the 1,001st call 1.5 times, the 2,001st twice the first.
  CAF_CHECK_EQUAL(sim::slowed_down(microseconds{100'000}, 0.5, 0).count(), 100'000);
  CAF_CHECK_EQUAL(sim::slowed_down(microseconds{100'000}, 0.5, 1'000).count(), 150'000);
  CAF_CHECK_EQUAL(sim::slowed_down(microseconds{100'000}, 0.5, 2'000).count(), 200'000);
  CAF_CHECK_EQUAL(sim::slowed_down(microseconds{100'000}, 0.0, 1'000'000).count(), 100'000);
  // However large, the product stays representable (capped at a day).
  auto huge = sim::slowed_down(microseconds{1'000'000}, 1e300, 1u << 30);
  CAF_CHECK_EQUAL(huge.count(), 86'400'000'000LL);

  auto c = sim::default_sim_config();
  CAF_CHECK_EQUAL(c.default_model.slowdown, 0.0); // the default: never slows
  CAF_REQUIRE(!sim::apply_toml_text(c, "[models.\"gemma2\"]\nslowdown = 0.5\n", "sim.toml", "")
                   .has_value());
  CAF_CHECK_EQUAL(c.find_model("gemma2")->slowdown, 0.5);
  CAF_CHECK_EQUAL(c.find_model("qwen2.5-coder:7b")->slowdown, 0.0);
  CAF_CHECK(!sim::check_config(c).has_value());
  for (const auto* bad :
       {"slowdown = -0.5", "slowdown = nan", "slowdown = inf", "slowdown = \"fast\""}) {
    auto copy = sim::default_sim_config();
    auto error =
        sim::apply_toml_text(copy, std::string{"[models.\"gemma2\"]\n"} + bad, "sim.toml", "");
    CAF_REQUIRE(error.has_value());
    CAF_MESSAGE(*error);
    CAF_CHECK_EQUAL(error->rfind("sim.toml:2:", 0), 0u);
    CAF_CHECK(error->find("'slowdown'") != std::string::npos);
  }
  // Set another way (a flag, code), check_config still refuses it.
  c.model("gemma2").slowdown = -1;
  auto error = sim::check_config(c);
  CAF_REQUIRE(error.has_value());
  CAF_CHECK(error->find("'gemma2'") != std::string::npos);
  CAF_CHECK(error->find("slowdown") != std::string::npos);
}

CAF_TEST(fault_plan_follows_its_rates_and_the_header_wins) {
  sim::fault_rates rates;
  rates.hang = 0.1;
  rates.http_500 = 0.2;
  std::map<sim::fault, int> seen;
  sim::stable_rng rng{1};
  for (int i = 0; i < 10'000; ++i)
    ++seen[sim::choose_fault(rates, rng, std::nullopt)];
  CAF_CHECK(seen[sim::fault::hang] > 900 && seen[sim::fault::hang] < 1100);
  CAF_CHECK(seen[sim::fault::http_500] > 1800 && seen[sim::fault::http_500] < 2200);
  CAF_CHECK_EQUAL(seen[sim::fault::garbage], 0);
  CAF_CHECK(sim::choose_fault(rates, rng, sim::fault::none) == sim::fault::none);
  CAF_CHECK(sim::choose_fault({}, rng, sim::fault::garbage) == sim::fault::garbage);
  CAF_CHECK(sim::parse_fault("http_500") == sim::fault::http_500);
  CAF_CHECK(!sim::parse_fault("explode"));
  rates.crash = 0.9;
  CAF_CHECK(sim::check_fault_rates(rates).has_value());
}

CAF_TEST(config_file_overrides_defaults_and_names_the_line_of_an_error) {
  auto c = sim::default_sim_config();
  auto e = sim::apply_toml_text(c, R"(
port = 0
latency_scale = 0.01
accept_any_model = false
known_skills = "data/known.txt"
[models."mistral-nemo:12b"]
p50_ms = 1000
faults = { hang = 0.25, garbage = 0.5 }
[models."llama3:8b"]
bias = 0.3
)",
                                "sim.toml", "/srv/owl");
  CAF_REQUIRE(!e.has_value());
  CAF_CHECK_EQUAL(c.port, 0);
  CAF_CHECK_EQUAL(c.latency_scale, 0.01);
  CAF_CHECK(!c.accept_any_model);
  CAF_CHECK_EQUAL(c.known_skills_path, "/srv/owl/data/known.txt");
  const auto* m = c.find_model("mistral-nemo:12b");
  CAF_REQUIRE(m != nullptr);
  CAF_CHECK_EQUAL(m->latency.p50_ms, 1000.0);
  CAF_CHECK_EQUAL(m->latency.p95_ms, 77'900.0); // untouched fields keep their default
  CAF_CHECK_EQUAL(m->faults.hang, 0.25);
  CAF_CHECK_EQUAL(m->faults.garbage, 0.5);
  CAF_REQUIRE(c.find_model("llama3:8b") != nullptr);
  CAF_CHECK_EQUAL(c.find_model("llama3:8b")->bias, 0.3);
  CAF_CHECK(!sim::check_config(c).has_value());

  auto bad = sim::default_sim_config();
  auto error = sim::apply_toml_text(bad, "port = 1\n\n[models.\"x\"]\nfaults = { boom = 1 }\n",
                                    "sim.toml", "");
  CAF_REQUIRE(error.has_value());
  CAF_MESSAGE(*error);
  CAF_CHECK_EQUAL(error->rfind("sim.toml:4:", 0), 0u);
  CAF_CHECK(sim::apply_toml_text(bad, "colour = 1", "sim.toml", "").has_value());
  CAF_CHECK(sim::apply_toml_text(bad, "port = [", "sim.toml", "").has_value());
}

// -- the server, in-process ------------------------------------------------------------------

CAF_TEST(server_answers_ollama_and_openai_requests) {
  running_server s{test_config()};
  auto cli = s.client();

  auto health = cli.Get("/health");
  CAF_REQUIRE(health);
  CAF_CHECK_EQUAL(health->status, 200);

  auto tags = cli.Get("/api/tags");
  CAF_REQUIRE(tags);
  auto models = json::parse(tags->body)["models"];
  CAF_CHECK_EQUAL(models.size(), 3u);
  CAF_CHECK_EQUAL(models[0]["name"], "mistral-nemo:12b");

  const std::string question = "task: classify\nskill: Kubernetes cluster administration";
  auto chat = cli.Post("/api/chat", chat_body("mistral-nemo:12b", question), "application/json");
  CAF_REQUIRE(chat);
  CAF_CHECK_EQUAL(chat->status, 200);
  auto reply = json::parse(chat->body);
  CAF_CHECK_EQUAL(reply["model"], "mistral-nemo:12b");
  CAF_CHECK_EQUAL(reply["done"], true);
  CAF_CHECK_EQUAL(reply["message"]["role"], "assistant");
  CAF_CHECK(reply["total_duration"].get<long long>() > 0);
  auto content = json::parse(reply["message"]["content"].get<std::string>());
  CAF_CHECK_EQUAL(content["domain"], "technology");

  // Ollama streams by default: NDJSON, the answer a few characters per
  // line, then a last line with done and the counts.
  auto streamed =
      cli.Post("/api/chat", chat_body("mistral-nemo:12b", question, true), "application/json");
  CAF_REQUIRE(streamed);
  CAF_CHECK_EQUAL(streamed->get_header_value("Content-Type"), "application/x-ndjson");
  std::istringstream lines(streamed->body);
  std::string line, joined;
  std::vector<json> chunks;
  while (std::getline(lines, line))
    chunks.push_back(json::parse(line));
  CAF_REQUIRE(chunks.size() > 2);
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    CAF_CHECK_EQUAL(chunks[i]["done"], false);
    joined += chunks[i]["message"]["content"].get<std::string>();
  }
  CAF_CHECK_EQUAL(chunks.back()["done"], true);
  CAF_CHECK(chunks.back()["eval_count"].get<long long>() > 0);
  CAF_CHECK_EQUAL(json::parse(joined), content);

  auto gen =
      cli.Post("/api/generate",
               json{{"model", "gemma2"},
                    {"stream", false},
                    {"prompt", "task: dedupe\nskill: " + read_lines(known_file)[1] + " skills"}}
                   .dump(),
               "application/json");
  CAF_REQUIRE(gen);
  auto dedupe = json::parse(json::parse(gen->body)["response"].get<std::string>());
  CAF_CHECK_EQUAL(dedupe["verdict"], "merged");

  auto openai =
      cli.Post("/v1/chat/completions", chat_body("qwen2.5-coder:7b", question), "application/json");
  CAF_REQUIRE(openai);
  CAF_CHECK_EQUAL(openai->status, 200);
  auto choice = json::parse(openai->body)["choices"][0];
  CAF_CHECK_EQUAL(choice["finish_reason"], "stop");
  CAF_CHECK(json::parse(choice["message"]["content"].get<std::string>()).contains("domain"));

  // A prompt without the convention: the model is confused, HTTP is fine.
  auto confused = cli.Post("/api/chat", chat_body("gemma2", "hello there"), "application/json");
  CAF_REQUIRE(confused);
  CAF_CHECK_EQUAL(confused->status, 200);
  auto confused_content =
      json::parse(json::parse(confused->body)["message"]["content"].get<std::string>());
  CAF_CHECK(confused_content.contains("error"));

  auto bad = cli.Post("/api/chat", "{not json", "application/json");
  CAF_REQUIRE(bad);
  CAF_CHECK_EQUAL(bad->status, 400);

  auto stats = s.server.stats();
  CAF_CHECK_EQUAL(stats["models"]["mistral-nemo:12b"]["requests"], 2);
  CAF_CHECK_EQUAL(stats["endpoints"]["/v1/chat/completions"], 1);
  CAF_CHECK_EQUAL(stats["in_flight"], 0);
}

CAF_TEST(unknown_models_get_404_unless_any_model_is_accepted) {
  auto strict_config = test_config();
  strict_config.accept_any_model = false;
  running_server strict{strict_config};
  auto cli = strict.client();
  auto res =
      cli.Post("/api/chat", chat_body("llama3:8b", "task: classify\nskill: x"), "application/json");
  CAF_REQUIRE(res);
  CAF_CHECK_EQUAL(res->status, 404);
  CAF_CHECK_EQUAL(json::parse(res->body), json({{"error", "model 'llama3:8b' not found"}}));

  running_server lenient{test_config()};
  auto cli2 = lenient.client();
  auto ok = cli2.Post("/api/chat", chat_body("llama3:8b", "task: classify\nskill: x"),
                      "application/json");
  CAF_REQUIRE(ok);
  CAF_CHECK_EQUAL(ok->status, 200);
}

CAF_TEST(fault_headers_inject_500_garbage_and_slow_answers) {
  running_server s{test_config()};
  auto cli = s.client();
  const auto body = chat_body("gemma2", "task: classify\nskill: Tableau reporting");

  auto failed = cli.Post("/api/chat", {{"X-Sim-Fault", "http_500"}}, body, "application/json");
  CAF_REQUIRE(failed);
  CAF_CHECK_EQUAL(failed->status, 500);
  CAF_CHECK(json::parse(failed->body).contains("error"));

  auto garbage = cli.Post("/api/chat", {{"X-Sim-Fault", "garbage"}}, body, "application/json");
  CAF_REQUIRE(garbage);
  CAF_CHECK_EQUAL(garbage->status, 200);
  auto text = json::parse(garbage->body)["message"]["content"].get<std::string>();
  CAF_CHECK(json::parse(text, nullptr, false).is_discarded());

  // slow = the latency times 20: 10 ms becomes 200 ms.
  auto before = std::chrono::steady_clock::now();
  auto slow = cli.Post("/api/chat", {{"X-Sim-Fault", "slow"}, {"X-Sim-Latency-Ms", "10"}}, body,
                       "application/json");
  auto took = std::chrono::steady_clock::now() - before;
  CAF_REQUIRE(slow);
  CAF_CHECK_EQUAL(slow->status, 200);
  CAF_CHECK(took >= 200ms);

  auto unknown = cli.Post("/api/chat", {{"X-Sim-Fault", "explode"}}, body, "application/json");
  CAF_REQUIRE(unknown);
  CAF_CHECK_EQUAL(unknown->status, 400);

  auto faults = s.server.stats()["faults"];
  CAF_CHECK_EQUAL(faults["http_500"], 1);
  CAF_CHECK_EQUAL(faults["garbage"], 1);
  CAF_CHECK_EQUAL(faults["slow"], 1);
}

CAF_TEST(a_429_carries_retry_after_and_a_long_prompt_overflows_the_context) {
  auto config = test_config();
  for (auto& m : config.models)
    if (m.name == "gemma2") {
      m.retry_after_s = 7;
      m.context_chars = 200;
    }
  running_server s{config};
  auto cli = s.client();
  const auto body = chat_body("gemma2", "task: classify\nskill: Tableau reporting");
  auto throttled = cli.Post("/api/chat", {{"X-Sim-Fault", "http_429"}}, body, "application/json");
  CAF_REQUIRE(throttled);
  CAF_CHECK_EQUAL(throttled->status, 429);
  CAF_CHECK_EQUAL(throttled->get_header_value("Retry-After"), "7");
  auto faults = s.server.stats()["faults"];
  CAF_CHECK_EQUAL(faults["http_429"], 1);

  auto long_body = chat_body("gemma2", "task: classify\nskill: " + std::string(300, 'x'));
  auto overflow = cli.Post("/api/chat", long_body, "application/json");
  CAF_REQUIRE(overflow);
  CAF_CHECK_EQUAL(overflow->status, 400);
  CAF_CHECK(overflow->body.find("maximum context length is 200") != std::string::npos);
  auto fits = cli.Post("/api/chat", body, "application/json");
  CAF_REQUIRE(fits);
  CAF_CHECK_EQUAL(fits->status, 200);
}

CAF_TEST(configured_fault_rates_apply_and_retries_draw_afresh) {
  auto config = test_config();
  config.model("gemma2").faults.http_500 = 0.5;
  running_server s{config};
  auto cli = s.client();
  const auto body = chat_body("gemma2", "task: classify\nskill: Tableau reporting");
  std::map<int, int> statuses;
  for (int i = 0; i < 40; ++i) {
    auto res = cli.Post("/api/chat", body, "application/json");
    CAF_REQUIRE(res);
    ++statuses[res->status];
  }
  // The same prompt 40 times: each attempt draws its own fault.
  CAF_CHECK_GREATER(statuses[500], 5);
  CAF_CHECK_GREATER(statuses[200], 5);
  auto stats = s.server.stats();
  CAF_CHECK_EQUAL(stats["faults"]["http_500"], statuses[500]);
}

namespace {

// The server-side time of one non-streamed Ollama call (its total_duration),
// in milliseconds; the client's connection set-up is not in it.
double call_ms(httplib::Client& cli, const std::string& model, int i) {
  auto res =
      cli.Post("/api/chat", chat_body(model, "task: classify\nskill: Welding " + std::to_string(i)),
               "application/json");
  CAF_REQUIRE(res);
  CAF_REQUIRE_EQUAL(res->status, 200);
  return json::parse(res->body)["total_duration"].get<double>() / 1e6;
}

double mean(const std::vector<double>& xs, std::size_t from, std::size_t count) {
  double sum = 0;
  for (std::size_t i = from; i < from + count; ++i)
    sum += xs[i];
  return sum / static_cast<double>(count);
}

} // namespace

CAF_TEST(a_model_with_slowdown_gets_slower_and_one_without_does_not) {
  // p50 = p95 = max: no noise, every call of a model takes 160 s × 1/4000 =
  // 40 ms before its slowdown. Slowdown 100 makes call n (from 0) take
  // 1 + 0.1 n times that: the 20th 2.9 times the first.
  auto config = test_config();
  for (const auto* name : {"gemma2", "qwen2.5-coder:7b"}) {
    auto& m = config.model(name);
    m.latency = sim::latency_profile{160'000, 160'000, 160'000};
    m.slowdown = std::string{name} == "gemma2" ? 100.0 : 0.0;
  }
  running_server s{config};
  auto cli = s.client();
  std::vector<double> slowing, steady;
  for (int i = 0; i < 20; ++i) {
    slowing.push_back(call_ms(cli, "gemma2", i));
    steady.push_back(call_ms(cli, "qwen2.5-coder:7b", i));
  }
  auto slow_ratio = mean(slowing, 15, 5) / mean(slowing, 0, 5);
  auto steady_ratio = mean(steady, 15, 5) / mean(steady, 0, 5);
  CAF_MESSAGE("slowdown 100: first " << slowing.front() << " ms, 20th " << slowing.back()
                                     << " ms, last 5 / first 5 = " << slow_ratio
                                     << "; slowdown 0: " << steady_ratio);
  // Expected 2.25 and 1.0; the bounds leave room for a busy machine. A wait
  // is never shorter than asked, so the 20th call is at least 2.9 × 40 ms.
  CAF_CHECK_GREATER_OR_EQUAL(slow_ratio, 1.5);
  CAF_CHECK_LESS(steady_ratio, 1.3);
  CAF_CHECK_GREATER_OR_EQUAL(slowing.back(), 115.0);
  CAF_CHECK_GREATER_OR_EQUAL(slowing.front(), 40.0);
}

namespace {

// The data of each server-sent event ("data: X\n\n") of a body, in order.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < body.size()) {
    auto end = body.find("\n\n", at);
    auto event = body.substr(at, end - at);
    CAF_REQUIRE_EQUAL(event.rfind("data: ", 0), 0u);
    out.push_back(event.substr(6));
    at = end == std::string::npos ? body.size() : end + 2;
  }
  return out;
}

std::string openai_body(bool stream, const json& stream_options = nullptr) {
  auto body = json::parse(
      chat_body("gemma2", "task: classify\nskill: Kubernetes cluster administration", stream));
  if (!stream_options.is_null())
    body["stream_options"] = stream_options;
  return body.dump();
}

} // namespace

CAF_TEST(openai_streams_end_with_the_usage_only_when_asked) {
  running_server s{test_config()};
  auto cli = s.client();
  auto plain = cli.Post("/v1/chat/completions", openai_body(false), "application/json");
  CAF_REQUIRE(plain);
  CAF_REQUIRE_EQUAL(plain->status, 200);
  auto expected = json::parse(plain->body)["usage"];
  auto total = expected["total_tokens"].get<long long>();
  CAF_CHECK_GREATER(total, 0);

  const json include = {{"include_usage", true}};
  // Streamed token by token, and (X-Sim-Latency-Ms: 0) in one event.
  for (const auto& headers : {httplib::Headers{}, httplib::Headers{{"X-Sim-Latency-Ms", "0"}}}) {
    auto res =
        cli.Post("/v1/chat/completions", headers, openai_body(true, include), "application/json");
    CAF_REQUIRE(res);
    CAF_REQUIRE_EQUAL(res->status, 200);
    auto events = sse_events(res->body);
    CAF_REQUIRE_GREATER_OR_EQUAL(events.size(), 3u);
    CAF_CHECK_EQUAL(events.back(), "[DONE]");
    // The one before [DONE]: no choices, the same counts as unstreamed.
    auto last = json::parse(events[events.size() - 2]);
    CAF_CHECK_EQUAL(last["object"], "chat.completion.chunk");
    CAF_CHECK(last["choices"].is_array() && last["choices"].empty());
    auto usage = last["usage"];
    CAF_CHECK_EQUAL(usage, expected);
    auto sum =
        usage["prompt_tokens"].get<long long>() + usage["completion_tokens"].get<long long>();
    CAF_CHECK_EQUAL(usage["total_tokens"].get<long long>(), sum);
    // The deltas before it carry the answer and "usage": null, as OpenAI's do.
    std::string joined;
    for (std::size_t i = 0; i + 2 < events.size(); ++i) {
      auto chunk = json::parse(events[i]);
      CAF_CHECK(chunk.contains("usage") && chunk["usage"].is_null());
      CAF_CHECK_EQUAL(chunk["choices"].size(), 1u);
      joined += chunk["choices"][0]["delta"]["content"].get<std::string>();
    }
    auto answer = json::parse(joined);
    CAF_CHECK_EQUAL(answer["domain"], "technology");
  }

  // Without include_usage (absent, or false), no event mentions usage.
  for (const auto& options : {json(nullptr), json{{"include_usage", false}}}) {
    auto res = cli.Post("/v1/chat/completions", openai_body(true, options), "application/json");
    CAF_REQUIRE(res);
    CAF_REQUIRE_EQUAL(res->status, 200);
    auto events = sse_events(res->body);
    CAF_REQUIRE_GREATER_OR_EQUAL(events.size(), 2u);
    CAF_CHECK_EQUAL(events.back(), "[DONE]");
    for (std::size_t i = 0; i + 1 < events.size(); ++i) {
      auto chunk = json::parse(events[i]);
      CAF_CHECK(!chunk.contains("usage"));
      CAF_CHECK_EQUAL(chunk["choices"].size(), 1u);
    }
  }

  // Malformed options are the client's error, not the server's.
  for (const auto& bad : {json("yes"), json{{"include_usage", "yes"}}}) {
    auto res = cli.Post("/v1/chat/completions", openai_body(true, bad), "application/json");
    CAF_REQUIRE(res);
    CAF_CHECK_EQUAL(res->status, 400);
    CAF_CHECK(res->body.find("stream_options") != std::string::npos);
  }
}

CAF_TEST(a_hung_call_times_out_the_client_and_the_server_still_stops_promptly) {
  auto s = std::make_unique<running_server>(test_config());
  const auto body = chat_body("mistral-nemo:12b", "task: classify\nskill: Redis upgrades");

  // The client gives up after 300 ms; the server notices and frees the worker.
  auto impatient = s->client(300ms);
  auto before = std::chrono::steady_clock::now();
  auto res = impatient.Post("/api/chat", {{"X-Sim-Fault", "hang"}}, body, "application/json");
  auto waited = std::chrono::steady_clock::now() - before;
  CAF_CHECK(!res);
  CAF_CHECK(res.error() == httplib::Error::Read);
  CAF_CHECK(waited >= 300ms && waited < 3s);
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (s->server.stats()["clients_gone"] != 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  auto stats = s->server.stats();
  CAF_CHECK_EQUAL(stats["clients_gone"], 1);
  CAF_CHECK_EQUAL(stats["hanging"], 0);

  // A patient client hangs until the server stops; stopping does not wait
  // for it.
  int patient_status = 0; // 503 from a stopping server, -1 for a closed connection
  std::thread patient{[port = s->port, &body, &patient_status] {
    httplib::Client c{"127.0.0.1", port};
    c.set_read_timeout(30s);
    auto r = c.Post("/api/chat", {{"X-Sim-Fault", "hang"}}, body, "application/json");
    patient_status = r ? r->status : -1;
  }};
  deadline = std::chrono::steady_clock::now() + 3s;
  while (s->server.stats()["hanging"] != 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  stats = s->server.stats();
  CAF_REQUIRE_EQUAL(stats["hanging"], 1);
  before = std::chrono::steady_clock::now();
  s.reset(); // stop() and join the server thread
  auto stopping = std::chrono::steady_clock::now() - before;
  patient.join();
  CAF_CHECK(patient_status == 503 || patient_status == -1);
  CAF_MESSAGE("stopped with a hung request in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(stopping).count() << " ms");
  CAF_CHECK(stopping < 2s);
}

// -- GPU residency ---------------------------------------------------------------------------

namespace {

const std::string model_a = "mistral-nemo:12b";
const std::string model_b = "qwen2.5-coder:7b";

// One GPU holding model_a and model_b. 800 s real-world at test_config's
// 1/4000 is a 200 ms load: plain to see, short enough for a test.
sim::sim_config gpu_config(int max_loaded) {
  auto c = test_config();
  sim::gpu_profile g;
  g.name = "gpu0";
  g.models = {model_a, model_b};
  g.max_loaded = max_loaded;
  g.load_ms = 800'000;
  c.gpus.push_back(g);
  return c;
}

// One non-streamed Ollama call; the reply, or null on a transport failure.
json ollama_call(httplib::Client& cli, const std::string& model,
                 const std::string& skill = "Welding", const httplib::Headers& headers = {}) {
  auto res = cli.Post("/api/chat", headers, chat_body(model, "task: classify\nskill: " + skill),
                      "application/json");
  if (!res || res->status != 200)
    return nullptr;
  return json::parse(res->body);
}

long long load_ms_of(const json& reply) {
  return reply.at("load_duration").get<long long>() / 1'000'000;
}

json gpu_stats(const running_server& s) {
  return s.server.stats()["gpus"]["gpu0"];
}

} // namespace

CAF_TEST(a_gpu_model_loads_once_and_reports_the_load_in_load_duration) {
  // The GPU comes from a config file, as turing-model-sim --config reads it.
  auto config = test_config();
  auto e = sim::apply_toml_text(config, R"(
[gpus.gpu0]
models = ["mistral-nemo:12b", "qwen2.5-coder:7b"]
max_loaded = 1
load_ms = 800000
)",
                                "sim.toml", "");
  CAF_REQUIRE(!e.has_value());
  CAF_REQUIRE(!sim::check_config(config).has_value());
  running_server s{config};
  auto cli = s.client();

  auto first = ollama_call(cli, model_a);
  CAF_REQUIRE(!first.is_null());
  auto first_load = load_ms_of(first);
  CAF_MESSAGE("first call: load_duration " << first_load << " ms");
  CAF_CHECK(first_load >= 150 && first_load < 5'000); // the 200 ms load, coarsely
  CAF_CHECK(first["total_duration"].get<long long>() >= first["load_duration"].get<long long>());
  auto second = ollama_call(cli, model_a);
  CAF_REQUIRE(!second.is_null());
  auto second_load = second["load_duration"].get<long long>();
  CAF_CHECK_EQUAL(second_load, 0);

  auto stats = gpu_stats(s);
  auto loads = stats["loads"].get<long>();
  auto evictions = stats["evictions"].get<long>();
  auto loaded = stats["loaded"];
  auto max_loaded = stats["max_loaded"].get<int>();
  CAF_CHECK_EQUAL(loads, 1);
  CAF_CHECK_EQUAL(evictions, 0);
  CAF_CHECK_EQUAL(loaded, json::array({model_a}));
  CAF_CHECK_EQUAL(max_loaded, 1);

  // Streamed, the load is on the last ("done") line; OpenAI has no such field.
  auto streamed = cli.Post("/api/chat", chat_body(model_b, "task: classify\nskill: Welding", true),
                           "application/json");
  CAF_REQUIRE(streamed);
  std::istringstream lines(streamed->body);
  std::string line;
  std::vector<json> chunks;
  while (std::getline(lines, line))
    chunks.push_back(json::parse(line));
  CAF_REQUIRE(chunks.size() > 1);
  CAF_CHECK_EQUAL(chunks.back()["done"], true);
  CAF_CHECK(load_ms_of(chunks.back()) >= 150);
  CAF_CHECK(!chunks.front().contains("load_duration"));
  auto openai = cli.Post("/v1/chat/completions", chat_body(model_a, "task: classify\nskill: x"),
                         "application/json");
  CAF_REQUIRE(openai);
  CAF_CHECK_EQUAL(openai->status, 200);
  CAF_CHECK(!json::parse(openai->body).contains("load_duration"));
}

CAF_TEST(alternating_two_models_on_a_one_model_gpu_swaps_every_time) {
  running_server s{gpu_config(1)};
  auto cli = s.client();
  std::vector<long long> loads_seen;
  for (const auto& model : {model_a, model_b, model_a}) {
    auto reply = ollama_call(cli, model);
    CAF_REQUIRE(!reply.is_null());
    loads_seen.push_back(load_ms_of(reply));
  }
  for (auto ms : loads_seen)
    CAF_CHECK(ms >= 150); // each call waited for its own load
  auto stats = gpu_stats(s);
  auto loads = stats["loads"].get<long>();
  auto evictions = stats["evictions"].get<long>();
  auto loaded = stats["loaded"];
  auto waiting = stats["waiting_for_load"].get<long>();
  CAF_CHECK_EQUAL(loads, 3);
  CAF_CHECK_EQUAL(evictions, 2);
  CAF_CHECK_EQUAL(loaded, json::array({model_a}));
  CAF_CHECK_EQUAL(waiting, 0);
}

CAF_TEST(a_two_model_gpu_keeps_both_and_other_models_never_load) {
  running_server s{gpu_config(2)};
  auto cli = s.client();
  for (const auto& model : {model_a, model_b, model_a, model_b})
    CAF_REQUIRE(!ollama_call(cli, model).is_null());
  auto stats = gpu_stats(s);
  auto loads = stats["loads"].get<long>();
  auto evictions = stats["evictions"].get<long>();
  auto loaded = stats["loaded"];
  CAF_CHECK_EQUAL(loads, 2);
  CAF_CHECK_EQUAL(evictions, 0);
  CAF_CHECK_EQUAL(loaded, json::array({model_a, model_b}));

  // gemma2 is on no GPU: always loaded, whatever the GPU does.
  running_server one{gpu_config(1)};
  auto cli1 = one.client();
  std::vector<long long> gemma_loads;
  for (const auto& model : {"gemma2", model_a.c_str(), "gemma2", model_b.c_str(), "gemma2"}) {
    auto reply = ollama_call(cli1, model);
    CAF_REQUIRE(!reply.is_null());
    if (reply["model"] == "gemma2")
      gemma_loads.push_back(reply["load_duration"].get<long long>());
  }
  CAF_CHECK_EQUAL(gemma_loads, std::vector<long long>({0, 0, 0}));
  auto all_gpus = one.server.stats()["gpus"];
  CAF_CHECK_EQUAL(all_gpus.size(), 1u); // no entry, and no load, for gemma2
  CAF_CHECK_EQUAL(s.server.stats()["gpus"].size(), 1u);
  running_server none{test_config()};
  auto no_gpus = none.server.stats()["gpus"];
  CAF_CHECK_EQUAL(no_gpus, json::object());
}

CAF_TEST(a_call_for_another_model_waits_until_the_busy_one_is_idle) {
  running_server s{gpu_config(1)};
  auto cli = s.client();
  CAF_REQUIRE(!ollama_call(cli, model_a).is_null()); // model_a loaded

  // model_a busy for 600 ms; meanwhile model_b cannot evict it.
  json busy_reply;
  std::thread busy{[&] {
    auto c = s.client();
    busy_reply = ollama_call(c, model_a, "Welding", {{"X-Sim-Latency-Ms", "600"}});
  }};
  // model_a must hold the GPU before model_b asks for it.
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (s.server.stats()["models"][model_a]["in_flight"] != 1 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(50ms); // from admitted by the server to admitted on the GPU
  json waiting_reply;
  std::thread waiting{[&] {
    auto c = s.client();
    waiting_reply = ollama_call(c, model_b);
  }};
  deadline = std::chrono::steady_clock::now() + 3s;
  long seen_waiting = 0;
  while (seen_waiting == 0 && std::chrono::steady_clock::now() < deadline) {
    seen_waiting = gpu_stats(s)["waiting_for_load"].get<long>();
    std::this_thread::sleep_for(10ms);
  }
  CAF_CHECK_EQUAL(seen_waiting, 1);
  busy.join();
  waiting.join();
  CAF_REQUIRE(!busy_reply.is_null());
  CAF_REQUIRE(!waiting_reply.is_null());
  // It waited for the busy call (~500 ms left) and then for its load (200 ms).
  auto waited = load_ms_of(waiting_reply);
  CAF_MESSAGE("model_b waited " << waited << " ms for the GPU and its load");
  CAF_CHECK(waited >= 500);
  auto stats = gpu_stats(s);
  auto evictions = stats["evictions"].get<long>();
  auto remaining = stats["waiting_for_load"].get<long>();
  CAF_CHECK_EQUAL(evictions, 1);
  CAF_CHECK_EQUAL(remaining, 0);
}

CAF_TEST(a_call_waiting_for_the_gpu_gives_up_when_its_client_leaves_or_the_server_stops) {
  auto s = std::make_unique<running_server>(gpu_config(1));
  const auto body = chat_body(model_a, "task: classify\nskill: Welding");

  // model_b hangs (holding the GPU); a model_a call then waits for it.
  std::thread holder{[port = s->port] {
    httplib::Client c{"127.0.0.1", port};
    c.set_read_timeout(30s);
    c.Post("/api/chat", {{"X-Sim-Fault", "hang"}},
           chat_body(model_b, "task: classify\nskill: Welding"), "application/json");
  }};
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (s->server.stats()["hanging"] != 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  auto hanging = s->server.stats()["hanging"].get<long>();
  CAF_REQUIRE_EQUAL(hanging, 1);

  // An impatient client leaves; its request stops waiting.
  auto impatient = s->client(400ms);
  auto gave_up = impatient.Post("/api/chat", body, "application/json");
  CAF_CHECK(!gave_up);
  deadline = std::chrono::steady_clock::now() + 3s;
  long waiting = 1;
  while (waiting != 0 && std::chrono::steady_clock::now() < deadline) {
    waiting = gpu_stats(*s)["waiting_for_load"].get<long>();
    std::this_thread::sleep_for(10ms);
  }
  CAF_CHECK_EQUAL(waiting, 0);

  // A patient one waits until the server stops, which does not wait for it.
  int patient_status = 0; // 503 from a stopping server, -1 for a closed connection
  std::thread patient{[port = s->port, &body, &patient_status] {
    httplib::Client c{"127.0.0.1", port};
    c.set_read_timeout(30s);
    auto r = c.Post("/api/chat", body, "application/json");
    patient_status = r ? r->status : -1;
  }};
  deadline = std::chrono::steady_clock::now() + 3s;
  while (waiting != 1 && std::chrono::steady_clock::now() < deadline) {
    waiting = gpu_stats(*s)["waiting_for_load"].get<long>();
    std::this_thread::sleep_for(10ms);
  }
  CAF_REQUIRE_EQUAL(waiting, 1);
  auto before = std::chrono::steady_clock::now();
  s.reset();
  auto stopping = std::chrono::steady_clock::now() - before;
  patient.join();
  holder.join();
  CAF_CHECK(patient_status == 503 || patient_status == -1);
  CAF_CHECK(stopping < 2s);
}

CAF_TEST(gpu_config_errors_name_the_problem) {
  auto two = sim::default_sim_config();
  auto parsed = sim::apply_toml_text(two, R"(
[gpus.gpu0]
models = ["mistral-nemo:12b"]
[gpus.gpu1]
models = ["qwen2.5-coder:7b", "mistral-nemo:12b"]
load_ms = 500
)",
                                     "sim.toml", "");
  CAF_REQUIRE(!parsed.has_value());
  CAF_REQUIRE_EQUAL(two.gpus.size(), 2u);
  CAF_CHECK_EQUAL(two.gpus[1].load_ms, 500.0);
  CAF_CHECK_EQUAL(two.gpus[1].max_loaded, 1); // the default
  auto error = sim::check_config(two);
  CAF_REQUIRE(error.has_value());
  CAF_MESSAGE(*error);
  CAF_CHECK(error->find("'mistral-nemo:12b'") != std::string::npos);
  CAF_CHECK(error->find("one GPU") != std::string::npos);

  auto zero = sim::default_sim_config();
  error = sim::apply_toml_text(zero, "[gpus.gpu0]\nmodels = [\"gemma2\"]\nmax_loaded = 0\n",
                               "sim.toml", "");
  CAF_REQUIRE(error.has_value());
  CAF_MESSAGE(*error);
  CAF_CHECK_EQUAL(error->rfind("sim.toml:3:", 0), 0u);
  CAF_CHECK(error->find("max_loaded") != std::string::npos);
  // Set another way (a flag, code), check_config still refuses it.
  auto code = sim::default_sim_config();
  code.gpu("gpu0").max_loaded = 0;
  error = sim::check_config(code);
  CAF_REQUIRE(error.has_value());
  CAF_CHECK(error->find("max_loaded") != std::string::npos);

  auto bad = sim::default_sim_config();
  CAF_CHECK(sim::apply_toml_text(bad, "[gpus.gpu0]\nvram = 8\n", "sim.toml", "").has_value());
  CAF_CHECK(
      sim::apply_toml_text(bad, "[gpus.gpu0]\nmodels = \"gemma2\"\n", "sim.toml", "").has_value());
  auto negative = sim::default_sim_config();
  CAF_REQUIRE(
      !sim::apply_toml_text(negative, "[gpus.gpu0]\nload_ms = -1\n", "sim.toml", "").has_value());
  error = sim::check_config(negative);
  CAF_REQUIRE(error.has_value());
  CAF_CHECK(error->find("load_ms") != std::string::npos);
}

// -- the executable -------------------------------------------------------------------------

namespace {

// turing-model-sim as a child process, with its port read from --port-file.
struct sim_process {
  explicit sim_process(std::vector<std::string> extra) : port_file(temp_path("sim-port")) {
    std::vector<std::string> args{TURING_MODEL_SIM_EXE, "--port", "0", "--port-file", port_file,
                                  "--log-level",        "warn"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    CAF_REQUIRE_EQUAL(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    // The port file appears (whole, it is renamed into place) once the
    // server listens.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!std::filesystem::exists(port_file) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
    CAF_REQUIRE(std::filesystem::exists(port_file));
    port = std::stoi(read_text(port_file));
  }

  ~sim_process() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    std::filesystem::remove(port_file);
  }

  // The exit status, or -1 if it did not exit normally within `limit`.
  int wait_exit(std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    int raw = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = waitpid(pid, &raw, WNOHANG);
      if (r == pid) {
        pid = -1;
        return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

  std::string port_file;
  pid_t pid = -1;
  int port = 0;
};

} // namespace

CAF_TEST(the_executable_serves_on_its_port_file_and_exits_0_on_sigterm) {
  sim_process p{{"--latency-scale", "0.0001"}};
  httplib::Client cli{"127.0.0.1", p.port};
  cli.set_read_timeout(5s);
  auto res =
      cli.Post("/api/chat", chat_body("qwen2.5-coder:7b", "task: classify\nskill: Public speaking"),
               "application/json");
  CAF_REQUIRE(res);
  CAF_CHECK_EQUAL(res->status, 200);
  kill(p.pid, SIGTERM);
  CAF_CHECK_EQUAL(p.wait_exit(5s), 0);
}

CAF_TEST(the_crash_fault_ends_the_executable_with_status_3) {
  sim_process p{{}};
  httplib::Client cli{"127.0.0.1", p.port};
  cli.set_read_timeout(5s);
  auto res = cli.Post("/api/chat", {{"X-Sim-Fault", "crash"}},
                      chat_body("gemma2", "task: classify\nskill: Welding"), "application/json");
  CAF_CHECK(!res);
  CAF_CHECK_EQUAL(p.wait_exit(5s), 3);
}

CAF_TEST(the_executable_refuses_a_negative_slowdown_naming_the_flag) {
  auto refused = run_shell("timeout 10 '" + std::string{TURING_MODEL_SIM_EXE} +
                           "' --port 0 --slowdown -1 2>&1");
  CAF_CHECK_EQUAL(refused.status, 2);
  CAF_MESSAGE(refused.out);
  CAF_CHECK(refused.out.find("--slowdown") != std::string::npos);
}

CAF_TEST(the_executable_takes_gpus_from_flags_and_refuses_a_model_on_two) {
  sim_process p{{"--gpu", "gpu0=" + model_a + "," + model_b, "--max-loaded", "1", "--load-ms",
                 "800000", "--latency-scale", "0.00025"}};
  httplib::Client cli{"127.0.0.1", p.port};
  cli.set_read_timeout(5s);
  auto first = ollama_call(cli, model_a);
  CAF_REQUIRE(!first.is_null());
  CAF_CHECK(load_ms_of(first) >= 150);
  auto stats = cli.Get("/stats");
  CAF_REQUIRE(stats);
  auto gpu = json::parse(stats->body)["gpus"]["gpu0"];
  auto loads = gpu["loads"].get<long>();
  CAF_CHECK_EQUAL(loads, 1);

  // Refused before listening: exit 2, the model named on stderr.
  auto refused = run_shell("timeout 10 '" + std::string{TURING_MODEL_SIM_EXE} +
                           "' --port 0 --gpu a=gemma2 --gpu b=gemma2 2>&1");
  CAF_CHECK_EQUAL(refused.status, 2);
  CAF_MESSAGE(refused.out);
  CAF_CHECK(refused.out.find("'gemma2'") != std::string::npos);
}
