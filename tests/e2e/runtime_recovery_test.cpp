// The runtime's supervision end to end, in process on a real PostgreSQL: a
// worker that throws is replaced and its message retried; a stage that
// crashes past its restart intensity is reported failed while the other
// stages finish their work.
#define CAF_SUITE runtime_recovery
#include "actors/node_monitor.hpp"
#include "actors/node_runtime.hpp"
#include "config/config_loader.hpp"
#include "messages/registry.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/all.hpp>
#include <caf/test/unit_test.hpp>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <thread>

using namespace turing;
using namespace turing::persistence;
using namespace std::chrono_literals;

namespace {

const char* pipeline_toml = R"toml(
sinks = ["done", "also_done"]

[runtime]
lease_ttl = "5s"
heartbeat_interval = "1s"
rescue_interval = "1s"
poll_interval = "200ms"
shutdown_grace = "2s"

[stages.flaky]
handler = "builtin"
entry = true
function = "test.crash_once"
concurrency = 4
retry = { max_attempts = 3, backoff = "50ms", backoff_max = "100ms" }
routes = { ok = "steady" }

[stages.steady]
handler = "builtin"
function = "test.pass"
routes = { ok = "done" }

[stages.doomed]
handler = "builtin"
entry = true
function = "test.always_crash"
concurrency = 2
retry = { max_attempts = 1000, backoff = "10ms", backoff_max = "20ms" }
routes = { ok = "also_done" }
)toml";

struct fixture {
  std::string dsn = testing::pg_test_cluster::instance().fresh_database();
  std::shared_ptr<actors::builtin_registry> builtins = make_builtins();

  static std::shared_ptr<actors::builtin_registry> make_builtins() {
    auto r = std::make_shared<actors::builtin_registry>();
    auto seen = std::make_shared<std::set<int>>();
    auto mutex = std::make_shared<std::mutex>();
    r->add("test.crash_once", {"ok"}, [seen, mutex](const json& payload) {
      int n = payload.value("n", -1);
      std::lock_guard<std::mutex> guard{*mutex};
      if (seen->insert(n).second)
        throw std::runtime_error("deliberate crash on first sight of item " + std::to_string(n));
      return actors::handler_result{"ok", json{{"n", n}}};
    });
    r->add("test.pass", {"ok"}, [](const json& payload) {
      return actors::handler_result{"ok", payload};
    });
    r->add("test.always_crash", {"ok"}, [](const json&) -> actors::handler_result {
      throw std::logic_error("deliberate crash, every time");
    });
    return r;
  }

  std::shared_ptr<const config::pipeline_config> load() {
    auto text = std::string(pipeline_toml) + "\n[database]\nurl = \"" + dsn + "\"\n";
    auto loaded = config::parse_config(text, "recovery.toml", "/tmp", builtins->catalog());
    for (const auto& e : loaded.errors)
      CAF_MESSAGE(e.to_string());
    CAF_REQUIRE(loaded.ok());
    return std::make_shared<const config::pipeline_config>(*loaded.config);
  }

  void enqueue(pg_store& s, const std::string& stage, int n) {
    enqueue_request r;
    r.stage = stage;
    r.max_attempts = stage == "doomed" ? 1000 : 3;
    for (int i = 0; i < n; ++i)
      r.items.push_back({std::nullopt, json{{"n", i}}});
    s.enqueue(r);
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(runtime_recovery_tests, fixture)

CAF_TEST(a_throwing_worker_is_replaced_and_a_stage_past_its_intensity_fails_alone) {
  auto pipeline = load();
  {
    pqxx::connection c{dsn};
    migrate(c);
  }
  pg_store s{dsn};
  // Four first-sight crashes stay within the pump's intensity (5 in 10 s).
  enqueue(s, "flaky", 4);
  enqueue(s, "doomed", 4);

  caf::actor_system_config cfg;
  add_message_types(cfg);
  actors::configure_scheduler(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto dir = std::make_shared<actors::actor_directory>();
  actors::node_monitor_options mo;
  mo.pipeline = pipeline;
  mo.dir = dir;
  mo.node = "test-node";
  mo.census_interval = 200ms;
  mo.drained_listener = caf::actor_cast<caf::actor>(self);
  auto monitor = actors::spawn_node_monitor(sys, mo);
  actors::node_options no;
  no.pipeline = pipeline;
  no.builtins = builtins;
  no.node = "test-node";
  auto dsn_copy = dsn;
  no.make_store = [dsn_copy] { return std::make_unique<pg_store>(dsn_copy); };
  no.store_workers = 2;
  no.listen_connection_string = dsn;
  no.observer = monitor;
  auto root = actors::spawn_node(sys, no, dir);

  std::vector<std::string> failed;
  bool drained = false;
  self->receive(
      [&](pipeline_drained& d) {
        drained = true;
        failed = d.failed_stages;
      },
      caf::after(std::chrono::seconds(120)) >> [] {});
  CAF_REQUIRE(drained);
  CAF_REQUIRE_EQUAL(failed.size(), 1u);
  CAF_CHECK_EQUAL(failed[0], "doomed");

  std::map<std::string, int64_t> sinks;
  for (const auto& c : s.sink_counts(std::nullopt))
    sinks[c.sink] = c.items;
  CAF_CHECK_EQUAL(sinks["done"], 4);
  CAF_CHECK_EQUAL(sinks["also_done"], 0);
  int64_t crashed = 0, completed = 0;
  for (const auto& a : s.attempts(std::nullopt)) {
    if (a.stage != "flaky")
      continue;
    crashed += a.result == attempt_result::crashed ? 1 : 0;
    completed += a.result == attempt_result::completed ? 1 : 0;
    if (a.result == attempt_result::crashed)
      CAF_CHECK(a.error.find("deliberate crash") != std::string::npos);
  }
  CAF_CHECK_EQUAL(crashed, 4);
  CAF_CHECK_EQUAL(completed, 4);

  // The failure is on record for `turing status`, which runs elsewhere.
  bool recorded = false;
  for (int i = 0; i < 100 && !recorded; ++i) {
    for (const auto& n : s.nodes())
      recorded = recorded || n.failed_stages.count("doomed") > 0;
    if (!recorded)
      std::this_thread::sleep_for(50ms); // bounded poll for an asynchronous write
  }
  CAF_CHECK(recorded);

  self->send_exit(root, caf::exit_reason::user_shutdown);
  self->send_exit(monitor, caf::exit_reason::user_shutdown);
}

CAF_TEST_FIXTURE_SCOPE_END()
