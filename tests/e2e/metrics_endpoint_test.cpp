// /metrics, /healthz and /api/status of a real `turing run` on the owl
// pipeline: the exposition parses, counters only grow between scrapes, and
// once the run is over they equal the database's counts (`status --json`);
// an explicitly configured address that is taken makes `turing run` exit 2.
#define CAF_SUITE metrics_endpoint
#include "tests/e2e/http_support.hpp"
#include "tests/e2e/skill_pipeline_fixture.hpp"
#include "tests/support/prometheus_text.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

/// The counter-like samples (counters, histogram buckets, sums and counts) by
/// name and labels: the ones that must never go down.
std::map<std::string, double> monotonic_samples(const prom_text& t) {
  std::map<std::string, double> out;
  for (const auto& s : t.samples) {
    auto family = prom_family_of(t, s.name);
    auto type = t.families.at(family).type;
    if (type != "counter" && type != "histogram")
      continue;
    std::string key = s.name;
    for (const auto& [k, v] : s.labels)
      key += "|" + k + "=" + v;
    out[key] = s.value;
  }
  return out;
}

/// A listening socket on 127.0.0.1 holding `wanted` (0: a free port) until
/// destroyed; `port` is 0 when it could not be bound.
struct taken_port {
  int fd = -1;
  int port = 0;
  explicit taken_port(int wanted = 0) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(wanted));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4) != 0)
      return;
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~taken_port() { close(fd); }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(metrics_endpoint_tests, skill_pipeline_fixture)

CAF_TEST(metrics_parse_grow_monotonically_and_end_equal_to_the_database) {
  model_simulator sim{dir, {"--latency-scale", "0.003"}};
  auto config = write_owl_config(dir, dsn, sim.endpoint());
  add_http_section(config, "127.0.0.1:0");
  constexpr size_t items = 60;
  auto run_id = enqueue(config, items);
  auto node = start_turing(dir, {"run", "--config", config.string()}, "metrics-run.log");
  auto port = logged_http_port(node, 60s);
  if (!port)
    CAF_MESSAGE(node.output());
  CAF_REQUIRE(port.has_value());
  pg_store s{dsn};
  auto finished = [&] { return s.run(run_id)->pending == 0; };

  // Scrape while the run goes on: each scrape parses, and nothing counted
  // goes down from one scrape to the next.
  std::map<std::string, double> previous;
  int scrapes = 0, decreases = 0;
  auto scrape = [&] {
    auto r = http_get(*port, "/metrics");
    CAF_REQUIRE_EQUAL(r.status, 200);
    auto t = parse_prometheus_text(r.body);
    for (const auto& e : t.errors)
      CAF_MESSAGE("exposition: " << e);
    CAF_REQUIRE(t.errors.empty());
    auto now = monotonic_samples(t);
    for (const auto& [key, value] : previous) {
      auto it = now.find(key);
      if (it == now.end() || it->second < value) {
        ++decreases;
        CAF_MESSAGE("went down or vanished: " << key << " was " << value);
      }
    }
    previous = std::move(now);
    ++scrapes;
    return t;
  };
  CAF_REQUIRE(eventually(
      [&] {
        scrape();
        return finished();
      },
      240s));
  CAF_CHECK(scrapes >= 2);
  CAF_CHECK_EQUAL(decreases, 0);

  auto health = http_get(*port, "/healthz");
  CAF_CHECK_EQUAL(health.status, 200);
  CAF_CHECK_EQUAL(health.body, "ok\n");

  // The last results are counted once the store acknowledged them, an
  // instant after the database shows them: compare until they agree.
  auto status = status_json(dir, config);
  CAF_REQUIRE(status.is_object());
  std::string mismatch;
  auto agree = [&] {
    auto t = scrape();
    mismatch.clear();
    for (const auto& st : status["stages"]) {
      auto stage = st["stage"].get<std::string>();
      auto done = st["done"].get<double>(), dead = st["dead"].get<double>();
      auto completed = t.value("turing_messages_completed_total", {{"stage", stage}});
      auto dead_total = t.value("turing_messages_dead_total", {{"stage", stage}});
      auto claimed = t.value("turing_messages_claimed_total", {{"stage", stage}});
      if (completed != done || dead_total != dead || !(claimed >= done + dead))
        mismatch += " " + stage + ": completed " + std::to_string(completed) + " vs done " +
                    std::to_string(done) + ", dead " + std::to_string(dead_total) + " vs " +
                    std::to_string(dead) + ", claimed " + std::to_string(claimed) + ";";
      auto ready = t.value("turing_queue_depth", {{"stage", stage}, {"state", "ready"}});
      auto running = t.value("turing_queue_depth", {{"stage", stage}, {"state", "running"}});
      if (!(ready == 0 || std::isnan(ready)) || !(running == 0 || std::isnan(running)))
        mismatch += " " + stage + ": queue depth not zero;";
    }
    auto run = std::to_string(run_id);
    if (t.value("turing_run_items_done", {{"run", run}}) != static_cast<double>(items) ||
        t.value("turing_run_items_total", {{"run", run}}) != static_cast<double>(items))
      mismatch += " run progress not " + std::to_string(items) + "/" + std::to_string(items);
    return mismatch.empty();
  };
  auto agreed = eventually(agree, 15s);
  if (!agreed)
    CAF_MESSAGE("metrics and the database disagree:" << mismatch);
  CAF_CHECK(agreed);

  // Model calls were measured, and each model's limit is exported.
  auto t = scrape();
  CAF_CHECK(t.sum("turing_model_call_duration_seconds_count") > 0);
  CAF_CHECK(t.sum("turing_attempt_duration_seconds_count") > 0);
  for (const auto& m : status["models"])
    CAF_CHECK_EQUAL(
        t.value("turing_model_concurrency_limit", {{"model", m["model"].get<std::string>()}}),
        m["concurrency"].get<double>());

  // /api/status: the snapshot, this node and the dead-letter list.
  auto api = http_get(*port, "/api/status");
  CAF_REQUIRE_EQUAL(api.status, 200);
  auto doc = nlohmann::json::parse(api.body);
  CAF_CHECK(doc["this_node"]["name"].is_string());
  CAF_CHECK(doc["dead_letters"].is_array());
  CAF_CHECK_EQUAL(doc["stages"].size(), status["stages"].size());

  node.signal(SIGTERM);
  CAF_CHECK_EQUAL(node.wait(60s), 0);
  check_end_state(run_id, items);
}

CAF_TEST(an_explicit_address_already_taken_makes_turing_run_exit_2) {
  taken_port taken;
  CAF_REQUIRE(taken.port > 0);
  auto config = write_owl_config(dir, dsn, "http://127.0.0.1:9");
  add_http_section(config, "127.0.0.1:" + std::to_string(taken.port));
  std::string out;
  auto rc = run_turing(dir, {"run", "--config", config.string(), "--until-drained"}, &out, 60s);
  CAF_CHECK_EQUAL(rc, 2);
  auto line = "cannot listen for HTTP on 127.0.0.1:" + std::to_string(taken.port);
  CAF_CHECK(out.find(line) != std::string::npos);
  if (rc != 2 || out.find(line) == std::string::npos)
    CAF_MESSAGE(out);
}

CAF_TEST(the_default_address_taken_is_a_warning_and_the_node_runs_without_a_listener) {
  // Only while this test holds 9464 itself: another process holding it
  // might let it go meanwhile, and the node would then bind it.
  taken_port taken{9464};
  if (taken.port != 9464) {
    CAF_MESSAGE("127.0.0.1:9464 is in use by another process; nothing to check here");
    return;
  }
  auto config = write_owl_config(dir, dsn, "http://127.0.0.1:9"); // no [http]: the default
  std::string out;
  auto rc = run_turing(dir, {"run", "--config", config.string(), "--until-drained"}, &out, 60s);
  CAF_CHECK_EQUAL(rc, 0);
  CAF_CHECK(out.find("http: the default address 127.0.0.1:9464 is taken") != std::string::npos);
  CAF_CHECK(out.find("drained") != std::string::npos);
  if (rc != 0 || out.find("the default address") == std::string::npos)
    CAF_MESSAGE(out);
}

CAF_TEST_FIXTURE_SCOPE_END()
