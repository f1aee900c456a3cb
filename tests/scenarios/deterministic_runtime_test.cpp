// The real node tree (pumps, lease keeper, rescuer, supervisors, model
// endpoints) on CAF's deterministic test coordinator, in virtual time,
// against the memory store, with scripted model answers: field report
// incidents replayed in milliseconds, the same way every time.
#define CAF_SUITE deterministic_runtime
#include "actors/node_runtime.hpp"
#include "actors/ready_listener.hpp"
#include "config/config_loader.hpp"
#include "messages/registry.hpp"
#include "persistence/memory_store.hpp"
#include "persistence/store_ref.hpp"

#include <caf/test/dsl.hpp>
#include <map>

using namespace turing;
using namespace turing::persistence;
using namespace std::chrono_literals;

namespace {

const char* pipeline_toml = R"toml(
model_endpoint = "http://simulated.invalid:1"
sinks = ["done"]

[runtime]
lease_ttl = "30s"
heartbeat_interval = "10s"
rescue_interval = "5s"
poll_interval = "1s"
shutdown_grace = "5s"

[models.m]
api = "ollama"
model = "sim"
concurrency = 4

[stages.ask]
handler = "model"
entry = true
model = "m"
prompt = "skill: {name}"
outcome = "answered"
required_fields = ["domain"]
timeout = "5s"
retry = { max_attempts = 2, backoff = "1s", backoff_max = "1s", jitter = 0.0 }
routes = { answered = "done" }
)toml";

struct sim_config : caf::actor_system_config {
  sim_config() { turing::add_message_types(*this); }
};

/// How the scripted model answers the call of one epoch (= attempt).
struct scripted_answer {
  std::chrono::milliseconds latency{100};
  bool hang = false;
  std::string domain = "technology";
};

using answer_atom = caf::atom_constant<caf::atom("simanswer")>;

caf::behavior scripted_call(caf::event_based_actor* self, caf::actor owner, model_call call,
                            scripted_answer answer) {
  self->send(owner, execution_started{call.fence, 0});
  if (!answer.hang)
    self->delayed_send(self, answer.latency, answer_atom::value);
  return {[=](answer_atom) {
    self->send(owner, model_answer{call.fence, R"({"domain": ")" + answer.domain + R"("})", "sim",
                                   static_cast<double>(answer.latency.count())});
    self->quit();
  }};
}

struct fixture : test_coordinator_fixture<sim_config> {
  caf::actor_clock::time_point start = sched.clock().now();
  time_point base = time_point{std::chrono::hours{24 * 365 * 50}};
  memory_store db{[this] {
    return base + std::chrono::duration_cast<wall_clock::duration>(sched.clock().now() - start);
  }};
  std::shared_ptr<const config::pipeline_config> pipeline = load();
  std::shared_ptr<actors::builtin_registry> builtins = std::make_shared<actors::builtin_registry>();
  std::map<int64_t, scripted_answer> script; ///< by epoch
  std::vector<caf::actor> roots;

  fixture() {
    db.on_ready([this](const std::string& stage) {
      caf::anon_send(actors::ready_group(sys, stage), work_available{stage});
    });
  }

  ~fixture() {
    // Stop every node, so no self-rescheduling timer outlives the test.
    for (auto& r : roots)
      caf::anon_send_exit(r, caf::exit_reason::kill);
    sched.run();
  }

  static std::shared_ptr<const config::pipeline_config> load() {
    auto loaded = config::parse_config(pipeline_toml, "sim.toml", "/tmp", {});
    for (const auto& e : loaded.errors)
      CAF_MESSAGE(e.to_string());
    CAF_REQUIRE(loaded.ok());
    return std::make_shared<const config::pipeline_config>(*loaded.config);
  }

  caf::actor start_node(const std::string& name) {
    actors::node_options o;
    o.pipeline = pipeline;
    o.builtins = builtins;
    o.node = name;
    o.make_store = [this] { return std::make_unique<store_ref>(db); };
    o.store_workers = 1;
    o.detached = false;
    o.simulated_models = [this](caf::event_based_actor* endpoint, caf::actor owner,
                                const model_call& call, const config::model_config&) {
      return endpoint->spawn(scripted_call, owner, call, script[call.fence.epoch]);
    };
    auto root = actors::spawn_node(sys, o, std::make_shared<actors::actor_directory>());
    roots.push_back(root);
    return root;
  }

  int64_t enqueue_one() {
    enqueue_request r;
    r.stage = "ask";
    r.max_attempts = 2;
    r.items.push_back({"k1", json{{"name", "Kubernetes cluster administration"}}});
    return db.enqueue(r).run_id;
  }

  /// Runs the system in 100 ms virtual steps until `done` or `limit` passed.
  template <class F> bool run_until(F done, caf::timespan limit) {
    auto deadline = sched.clock().now() + limit;
    for (;;) {
      sched.run();
      if (done())
        return true;
      if (sched.clock().now() >= deadline)
        return false;
      sched.advance_time(100ms);
    }
  }

  void dump() {
    for (const auto& a : db.attempts(std::nullopt))
      CAF_MESSAGE("attempt " << a.id << " msg " << a.message_id << " epoch " << a.epoch << " "
                             << to_string(a.result) << " node " << a.node << " after " << seconds(a)
                             << " s: " << a.error);
  }

  std::vector<attempt_result> results() {
    std::vector<attempt_result> out;
    for (const auto& a : db.attempts(std::nullopt))
      out.push_back(a.result);
    return out;
  }

  double seconds(const attempt_record& a) {
    return std::chrono::duration<double>(a.finished_at - a.started_at).count();
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(deterministic_runtime_tests, fixture)

// Field report incident 2: a call hung for 25 min and nothing reclaimed it.
CAF_TEST(hung_call_reclaimed_at_the_stage_timeout_then_retried) {
  script[1].hang = true;
  auto run_id = enqueue_one();
  start_node("node-a");
  CAF_REQUIRE(run_until([&] { return db.run(run_id)->finished(); }, 60s));
  dump();
  auto attempts = db.attempts(std::nullopt);
  CAF_REQUIRE_EQUAL(attempts.size(), 2u);
  CAF_CHECK(attempts[0].result == attempt_result::timeout);
  CAF_CHECK(attempts[1].result == attempt_result::completed);
  // Reclaimed at the 5 s timeout, no later than timeout + 1 s.
  CAF_CHECK(seconds(attempts[0]) >= 5.0);
  CAF_CHECK(seconds(attempts[0]) <= 6.0);
  CAF_CHECK(db.items(run_id).at(0).sink == std::optional<std::string>{"done"});
  CAF_CHECK(db.check_invariants().empty());
}

// Incident 4: a result arriving after its deadline overwrote the reaped row.
CAF_TEST(late_result_fenced_recorded_and_never_applied) {
  script[1].latency = 7s; // answers after the 5 s timeout
  script[1].domain = "late_answer";
  script[2].domain = "technology";
  auto run_id = enqueue_one();
  start_node("node-a");
  CAF_REQUIRE(run_until(
      [&] {
        auto r = results();
        return db.run(run_id)->finished() &&
               std::count(r.begin(), r.end(), attempt_result::late_result) == 1;
      },
      60s));
  auto r = results();
  CAF_CHECK_EQUAL(std::count(r.begin(), r.end(), attempt_result::timeout), 1);
  CAF_CHECK_EQUAL(std::count(r.begin(), r.end(), attempt_result::completed), 1);
  auto item = db.items(run_id).at(0);
  CAF_CHECK_EQUAL(item.result["domain"], "technology"); // not the late answer
  CAF_CHECK(db.check_invariants().empty());
}

// Incident 16: a SIGKILLed process left rows running forever.
CAF_TEST(sigkill_rescued_by_another_node_after_the_lease_expires) {
  script[1].hang = true; // node-a is mid-call when it dies
  auto run_id = enqueue_one();
  auto a = start_node("node-a");
  CAF_REQUIRE(run_until(
      [&] {
        for (const auto& c : db.counts())
          if (c.running > 0)
            return true;
        return false;
      },
      10s));
  // SIGKILL semantics: every actor of the node dies, nothing is released.
  caf::anon_send_exit(a, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK_EQUAL(db.counts().at(0).running, 1);
  start_node("node-b");
  CAF_REQUIRE(run_until([&] { return db.run(run_id)->finished(); }, 120s));
  dump();
  auto attempts = db.attempts(std::nullopt);
  CAF_REQUIRE_EQUAL(attempts.size(), 2u);
  CAF_CHECK(attempts[0].result == attempt_result::lost);
  CAF_CHECK_EQUAL(attempts[0].node, "node-a");
  CAF_CHECK(attempts[1].result == attempt_result::completed);
  CAF_CHECK_EQUAL(attempts[1].node, "node-b");
  CAF_CHECK(db.check_invariants().empty());
}

CAF_TEST_FIXTURE_SCOPE_END()
