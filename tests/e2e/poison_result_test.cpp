// A result PostgreSQL refuses never blocks its stage (issue 8, defect 1): in
// a batch of 100, the one bad entry is isolated and fails with its reason,
// the other 99 commit, and the pipeline drains. In process, on a real
// PostgreSQL.
#define CAF_SUITE poison_result
#include "actors/node_monitor.hpp"
#include "actors/node_runtime.hpp"
#include "config/config_loader.hpp"
#include "messages/registry.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/all.hpp>
#include <caf/test/unit_test.hpp>
#include <pqxx/pqxx>

using namespace turing;
using namespace turing::persistence;
using namespace std::chrono_literals;

namespace {

const char* pipeline_toml = R"toml(
sinks = ["done"]

[runtime]
lease_ttl = "5s"
heartbeat_interval = "1s"
rescue_interval = "1s"
poll_interval = "200ms"
shutdown_grace = "2s"
claim_batch = 100

[stages.emit]
handler = "builtin"
entry = true
function = "test.poison_42"
concurrency = 100
routes = { ok = "done" }
)toml";

struct fixture {
  std::string dsn = testing::pg_test_cluster::instance().fresh_database();

  fixture() {
    pqxx::connection c{dsn};
    migrate(c);
  }

  void enqueue(pg_store& s, const std::string& stage, int n) {
    enqueue_request r;
    r.stage = stage;
    r.max_attempts = 3;
    for (int i = 0; i < n; ++i)
      r.items.push_back({std::nullopt, json{{"n", i}}});
    s.enqueue(r);
  }

  /// The last error of the one dead message, and the number of done ones.
  std::pair<std::string, int64_t> outcome(const std::string& stage) {
    pqxx::connection c{dsn};
    pqxx::work tx{c};
    auto dead = tx.exec_params("SELECT coalesce(last_error, '') FROM turing.messages "
                               "WHERE stage = $1 AND state = 'dead'",
                               stage);
    auto done = tx.exec_params1(
        "SELECT count(*) FROM turing.messages WHERE stage = $1 AND state = 'done'", stage);
    return {dead.size() == 1 ? dead[0][0].as<std::string>()
                             : "(" + std::to_string(dead.size()) + " dead)",
            done[0].as<int64_t>()};
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(poison_result_tests, fixture)

CAF_TEST(a_batch_of_100_with_one_refused_output_commits_99_and_fails_the_one_with_its_reason) {
  pg_store s{dsn};
  enqueue(s, "emit", 100);
  auto claimed = s.claim({"emit", "test-node", 100, 60s});
  CAF_REQUIRE_EQUAL(claimed.size(), 100u);
  std::vector<completion> batch;
  for (const auto& m : claimed) {
    completion c;
    c.fence = m.fencing();
    c.attempt = m.attempt;
    c.node = "test-node";
    c.started_at = m.started_at;
    c.outcome = "ok";
    // Bytes nlohmann cannot serialise and PostgreSQL would refuse anyway:
    // the pump checks outputs, but the store must not rely on it.
    c.output = m.payload.value("n", -1) == 42 ? json{{"text", std::string("bad \xC3\x28 byte")}}
                                              : json{{"n", m.payload.value("n", -1)}};
    c.deliveries.push_back({delivery::kind::sink, "done", c.output, 1, {}});
    batch.push_back(std::move(c));
  }
  caf::actor_system_config cfg;
  add_message_types(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto dsn_copy = dsn;
  auto pool = actors::spawn_store_pool(
      sys, [dsn_copy] { return std::make_unique<pg_store>(dsn_copy); }, 1, true);
  std::vector<fence_result> results;
  self->request(pool, 60s, batch)
      .receive([&](std::vector<fence_result>& r) { results = std::move(r); },
               [&](caf::error& e) { CAF_FAIL("the batch failed whole: " << sys.render(e)); });
  CAF_CHECK_EQUAL(results.size(), 100u);
  auto [error, done] = outcome("emit");
  CAF_CHECK_EQUAL(done, 99);
  CAF_CHECK(error.find("refused by the database") != std::string::npos);
  CAF_CHECK(error.find("not valid UTF-8") != std::string::npos);
  CAF_MESSAGE("the dead message's reason: " << error);
  CAF_CHECK(s.check_invariants().empty());
  self->send_exit(pool, caf::exit_reason::user_shutdown);
}

CAF_TEST(an_output_holding_u0000_fails_its_attempt_and_the_stage_keeps_draining) {
  auto builtins = std::make_shared<actors::builtin_registry>();
  builtins->add("test.poison_42", {"ok"}, [](const json& payload) {
    int n = payload.value("n", -1);
    if (n == 42)
      return actors::handler_result{"ok", json{{"text", std::string("nul \0 inside", 12)}}};
    return actors::handler_result{"ok", json{{"n", n}}};
  });
  auto text = std::string(pipeline_toml) + "\n[database]\nurl = \"" + dsn + "\"\n";
  auto loaded = config::parse_config(text, "poison.toml", "/tmp", builtins->catalog());
  for (const auto& e : loaded.errors)
    CAF_MESSAGE(e.to_string());
  CAF_REQUIRE(loaded.ok());
  auto pipeline = std::make_shared<const config::pipeline_config>(*loaded.config);
  pg_store s{dsn};
  enqueue(s, "emit", 100);

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
  bool drained = false;
  self->receive([&](pipeline_drained&) { drained = true; },
                caf::after(std::chrono::seconds(60)) >> [] {});
  CAF_REQUIRE(drained);
  auto [error, done] = outcome("emit");
  CAF_CHECK_EQUAL(done, 99);
  CAF_CHECK(error.find("output cannot be stored") != std::string::npos);
  CAF_CHECK(error.find("U+0000") != std::string::npos);
  CAF_CHECK(error.find("/text") != std::string::npos);
  CAF_MESSAGE("the dead message's reason: " << error);
  std::map<std::string, int64_t> sinks;
  for (const auto& c : s.sink_counts(std::nullopt))
    sinks[c.sink] = c.items;
  CAF_CHECK_EQUAL(sinks["done"], 99);
  CAF_CHECK_EQUAL(sinks["dead"], 1);
  CAF_CHECK(s.check_invariants().empty());
  self->send_exit(root, caf::exit_reason::user_shutdown);
  self->send_exit(monitor, caf::exit_reason::user_shutdown);
}

CAF_TEST_FIXTURE_SCOPE_END()
