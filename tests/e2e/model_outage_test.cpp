// Issue 9, defect 1, end to end: the model server stopped for 60 s in the
// middle of the skill pipeline and started again. The calls wait instead of
// failing, `turing status` says which stages wait for which model, and the
// run ends with the same sinks as an undisturbed run and no dead letters.
#define CAF_SUITE model_outage
#include "tests/e2e/skill_pipeline_fixture.hpp"

#include <nlohmann/json.hpp>

using namespace turing::persistence;
using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;

constexpr size_t items = 300;
constexpr auto outage = 60s;
const std::vector<std::string> sim_args{"--latency-scale", "0.001"};

/// The simulator again, on the port the first one had: what an Ollama
/// restart looks like to its clients.
std::unique_ptr<child_process> restart_simulator(const temp_dir& dir, int port) {
  auto port_file = dir.path / ("sim-again.port");
  std::vector<std::string> argv{
      TURING_MODEL_SIM_EXE, "--port", std::to_string(port), "--port-file", port_file,
      "--log-level",        "warn"};
  argv.insert(argv.end(), sim_args.begin(), sim_args.end());
  auto sim = std::make_unique<child_process>(argv, dir.path / "sim-again.log");
  CAF_REQUIRE(
      eventually([&] { return fs::exists(port_file) && fs::file_size(port_file) > 0; }, 20s));
  return sim;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(model_outage_tests, skill_pipeline_fixture)

CAF_TEST(a_model_server_down_for_60s_costs_no_attempts_and_the_run_ends_as_undisturbed) {
  // The undisturbed run, on a database of its own, gives the sinks to match.
  std::map<std::string, int64_t> undisturbed;
  {
    skill_pipeline_fixture calm;
    model_simulator sim{calm.dir, sim_args};
    auto config = write_owl_config(calm.dir, calm.dsn, sim.endpoint());
    auto run_id = calm.enqueue(config, items);
    std::string out;
    CAF_REQUIRE_EQUAL(
        run_turing(calm.dir, {"run", "--config", config.string(), "--until-drained"}, &out), 0);
    undisturbed = calm.sink_counts(run_id);
  }
  CAF_REQUIRE(undisturbed["committed"] > 0);

  auto sim = std::make_unique<model_simulator>(dir, sim_args);
  auto port = sim->port;
  auto config = write_owl_config(dir, dsn, sim->endpoint());
  auto run_id = enqueue(config, items);
  auto node =
      start_turing(dir, {"run", "--config", config.string(), "--until-drained"}, "outage-run.log");
  pg_store s{dsn};
  auto committed = [&] {
    for (const auto& c : s.counts())
      if (c.stage == "commit")
        return c.done;
    return int64_t{0};
  };
  // Stopped in the middle: some items through, most still to go.
  CAF_REQUIRE(eventually([&] { return committed() >= 20; }, 120s));
  sim->process.signal(SIGKILL);
  CAF_REQUIRE_EQUAL(sim->process.wait(10s), 128 + SIGKILL);
  sim.reset();
  auto stopped_at = std::chrono::steady_clock::now();
  CAF_MESSAGE("model server stopped at " << committed() << " committed");

  // While it is down, status names the waiting stages and their model.
  auto status_shows_waiting = [&] {
    std::string out;
    if (run_turing(dir, {"status", "--config", config.string(), "--json"}, &out) != 0)
      return false;
    auto j = nlohmann::json::parse(out.substr(out.find('{')), nullptr, false);
    if (j.is_discarded())
      return false;
    for (const auto& stage : j["stages"])
      if (!stage["waiting_for_models"].empty())
        return true;
    return false;
  };
  CAF_CHECK(eventually(status_shows_waiting, 30s));
  std::string text_status;
  run_turing(dir, {"status", "--config", config.string()}, &text_status);
  CAF_CHECK(text_status.find("waiting for model") != std::string::npos);
  CAF_CHECK(text_status.find("UNAVAILABLE") != std::string::npos);
  CAF_CHECK(node.running());

  // The outage lasts its full length; nothing may die meanwhile.
  std::this_thread::sleep_until(stopped_at + outage);
  CAF_CHECK(node.running());
  CAF_CHECK_EQUAL(items_in(run_id, "dead"), 0);
  auto sim_again = restart_simulator(dir, port);

  auto rc = node.wait(180s);
  CAF_CHECK_EQUAL(rc, 0);
  auto log = node.output();
  if (rc != 0)
    CAF_MESSAGE(log);
  check_end_state(run_id, items);
  auto sinks = sink_counts(run_id);
  CAF_CHECK_EQUAL(sinks["dead"], 0);
  CAF_CHECK_EQUAL(sinks["committed"], undisturbed["committed"]);
  CAF_CHECK_EQUAL(sinks["merged"], undisturbed["merged"]);
  CAF_CHECK_EQUAL(sinks["rejected"], undisturbed["rejected"]);
  // No attempt was spent on the outage (calls cut by the kill ran again,
  // refused ones waited), and it was logged once per model, not per call.
  int64_t spent = 0;
  for (const auto& a : s.attempts(run_id))
    if (a.result != attempt_result::completed &&
        (a.error.find("cannot connect") != std::string::npos ||
         a.error.find("closed before a full response") != std::string::npos ||
         a.result == attempt_result::timeout)) {
      ++spent;
      CAF_MESSAGE("attempt spent on the outage: " << a.stage << " message " << a.message_id << ": "
                                                  << a.error);
    }
  CAF_CHECK_EQUAL(spent, 0);
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (auto at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1))
      ++n;
    return n;
  };
  size_t outage_lines = 0;
  bool repeated = false;
  for (const char* model : {"mistral", "qwen", "gemma"}) {
    auto n = count(std::string("model ") + model + ": unavailable: ");
    outage_lines += n;
    if (n > 1) {
      repeated = true;
      CAF_MESSAGE("model " << model << " began " << n << " outages; expected one");
    }
  }
  CAF_CHECK(outage_lines >= 1);
  CAF_CHECK(!repeated);        // one outage per model, told once, not once per call
  if (spent > 0 || repeated) { // what the endpoints said, to see why
    std::istringstream lines{log};
    int shown = 0;
    for (std::string line; std::getline(lines, line) && shown < 80;)
      if (line.find("model ") != std::string::npos && line.find("progress") == std::string::npos) {
        CAF_MESSAGE(line.substr(0, 300));
        ++shown;
      }
  }
  CAF_CHECK(log.find("available again after") != std::string::npos);
  CAF_CHECK(log.find("cannot connect") != std::string::npos);
}

CAF_TEST_FIXTURE_SCOPE_END()
