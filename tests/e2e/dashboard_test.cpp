// The dashboard in a real browser: the owl pipeline runs with the listener,
// headless Chromium loads / from the node (no internet), and the pipeline
// graph shows the 8 stages with the done counts `turing status --json` gives.
// A screenshot goes to the test's output folder. Skipped without Chromium.
#define CAF_SUITE dashboard
#include "tests/e2e/http_support.hpp"
#include "tests/e2e/skill_pipeline_fixture.hpp"

#include <fstream>
#include <regex>
#include <sys/stat.h>
#include <unistd.h>

using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

constexpr const char* chromium = "/usr/bin/chromium";

/// Runs headless Chromium on `url` with `args` (its user data in the test's
/// directory); returns its exit status and stdout.
int run_chromium(const temp_dir& dir, std::vector<std::string> args, const std::string& url,
                 std::string& out) {
  std::vector<std::string> argv{chromium,
                                "--headless",
                                "--disable-gpu",
                                "--no-sandbox",
                                "--disable-dev-shm-usage",
                                "--no-first-run",
                                "--user-data-dir=" + (dir.path / "chromium").string(),
                                "--virtual-time-budget=8000"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(url);
  static int n = 0;
  child_process p{argv, dir.path / ("chromium-" + std::to_string(++n) + ".log")};
  auto rc = p.wait(120s);
  out = p.output();
  return rc;
}

/// stage -> data-done of every stage node in the dumped DOM.
std::map<std::string, int64_t> stage_done_counts(const std::string& dom) {
  std::map<std::string, int64_t> out;
  static const std::regex node{R"re(data-stage="([a-z0-9_]+)" data-done="([0-9]+)")re"};
  for (auto it = std::sregex_iterator(dom.begin(), dom.end(), node); it != std::sregex_iterator();
       ++it)
    out[(*it)[1].str()] = std::stoll((*it)[2].str());
  return out;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(dashboard_tests, skill_pipeline_fixture)

CAF_TEST(the_dashboard_shows_the_owl_stages_with_the_databases_done_counts) {
  if (access(chromium, X_OK) != 0) {
    CAF_MESSAGE("dashboard_test SKIPPED: " << chromium
                                           << " is not installed (scripts/install-deps adds it)");
    return;
  }
  model_simulator sim{dir, {"--latency-scale", "0.0005"}};
  auto config = write_owl_config(dir, dsn, sim.endpoint());
  add_http_section(config, "127.0.0.1:0");
  constexpr size_t items = 40;
  auto run_id = enqueue(config, items);
  auto node = start_turing(dir, {"run", "--config", config.string()}, "dashboard-run.log");
  auto port = logged_http_port(node, 60s);
  if (!port)
    CAF_MESSAGE(node.output());
  CAF_REQUIRE(port.has_value());
  pg_store s{dsn};
  CAF_REQUIRE(eventually([&] { return s.run(run_id)->pending == 0; }, 240s));
  auto status = status_json(dir, config);
  CAF_REQUIRE(status.is_object());
  std::map<std::string, int64_t> expected;
  for (const auto& st : status["stages"])
    expected[st["stage"].get<std::string>()] = st["done"].get<int64_t>();
  CAF_CHECK_EQUAL(expected.size(), 8u);

  auto url = "http://127.0.0.1:" + std::to_string(*port) + "/";
  // The page polls every 2 s and the snapshot is cached for 2 s: a page
  // loaded before the cache caught up is loaded again, within a deadline.
  std::map<std::string, int64_t> shown;
  std::string dom;
  auto matches = [&] {
    CAF_REQUIRE_EQUAL(run_chromium(dir, {"--dump-dom"}, url, dom), 0);
    shown = stage_done_counts(dom);
    return shown == expected;
  };
  auto same = eventually(matches, 60s);
  if (!same) {
    CAF_MESSAGE("dashboard DOM:\n" << dom);
    for (const auto& [stage, done] : expected)
      CAF_MESSAGE(stage << ": database " << done << ", dashboard "
                        << (shown.count(stage) ? std::to_string(shown[stage]) : "absent"));
  }
  CAF_CHECK(same);
  CAF_CHECK_EQUAL(shown.size(), 8u);
  // The rest of the page is filled too: the run, the models, the node.
  CAF_CHECK(dom.find("data-run=\"" + std::to_string(run_id) + "\"") != std::string::npos);
  CAF_CHECK(dom.find("data-model=") != std::string::npos);
  CAF_CHECK(dom.find("data-sink=\"committed\"") != std::string::npos);

  std::filesystem::create_directories(TURING_TEST_OUTPUT_DIR);
  auto png = std::filesystem::path(TURING_TEST_OUTPUT_DIR) / "dashboard.png";
  std::filesystem::remove(png);
  std::string out;
  CAF_CHECK_EQUAL(
      run_chromium(dir,
                   {"--screenshot=" + png.string(), "--window-size=1400,1000", "--hide-scrollbars"},
                   url, out),
      0);
  std::ifstream in{png, std::ios::binary};
  std::string magic(8, '\0');
  in.read(magic.data(), 8);
  CAF_CHECK_EQUAL(magic, std::string("\x89PNG\r\n\x1a\n", 8));
  CAF_MESSAGE("screenshot: " << png.string());

  node.signal(SIGTERM);
  CAF_CHECK_EQUAL(node.wait(60s), 0);
}

CAF_TEST_FIXTURE_SCOPE_END()
