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

// By value: CAF's check macros keep references to their arguments, which
// must not point into the temporary vector counts() returns.
int64_t running_of(persistence::store& db) {
  return db.counts().at(0).running;
}
int64_t dead_of(persistence::store& db) {
  return db.counts().at(0).dead;
}

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

/// Two classifiers on two models, fed by one builtin: they must run side by
/// side (field report incident 7: 12 h instead of 6 h behind one lock).
const char* parallel_toml = R"toml(
model_endpoint = "http://simulated.invalid:1"
sinks = ["done_a", "done_b"]

[runtime]
poll_interval = "1s"

[models.m1]
api = "ollama"
model = "sim-a"
concurrency = 1

[models.m2]
api = "ollama"
model = "sim-b"
concurrency = 1

[stages.split]
handler = "builtin"
entry = true
function = "sim.pass"
routes = { ok = ["clara_a", "clara_b"] }

[stages.clara_a]
handler = "model"
model = "m1"
prompt = "skill: {name}"
outcome = "proposed"
timeout = "30s"
routes = { proposed = "done_a" }

[stages.clara_b]
handler = "model"
model = "m2"
prompt = "skill: {name}"
outcome = "proposed"
timeout = "30s"
routes = { proposed = "done_b" }
)toml";

struct sim_config : caf::actor_system_config {
  sim_config() { turing::add_message_types(*this); }
};

/// How the scripted model answers the call of one epoch (= attempt).
struct scripted_answer {
  std::chrono::milliseconds latency{100};
  bool hang = false;
  bool http_500 = false;
  std::string domain = "technology";
};

using answer_atom = caf::atom_constant<caf::atom("simanswer")>;

caf::behavior scripted_call(caf::event_based_actor* self, caf::actor owner, model_call call,
                            scripted_answer answer) {
  self->send(owner, execution_started{call.fence, 0});
  if (!answer.hang)
    self->delayed_send(self, answer.latency, answer_atom::value);
  return {[=](answer_atom) {
    if (answer.http_500) {
      self->send(owner, execution_failed{call.fence, "model sim: HTTP 500 from the simulator", true,
                                         "sim"});
      self->quit();
      return;
    }
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
  std::shared_ptr<actors::builtin_registry> builtins = make_builtins();
  std::shared_ptr<const config::pipeline_config> pipeline = load(pipeline_toml);
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

  static std::shared_ptr<actors::builtin_registry> make_builtins() {
    auto r = std::make_shared<actors::builtin_registry>();
    r->add("sim.pass", {"ok"}, [](const json& p) { return actors::handler_result{"ok", p}; });
    return r;
  }

  std::shared_ptr<const config::pipeline_config> load(const char* toml) {
    auto loaded = config::parse_config(toml, "sim.toml", "/tmp", builtins->catalog());
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

  int64_t enqueue_one() { return enqueue("ask", 1, 2); }

  int64_t enqueue(const std::string& stage, int n, int max_attempts) {
    enqueue_request r;
    r.stage = stage;
    r.max_attempts = max_attempts;
    for (int i = 0; i < n; ++i)
      r.items.push_back({"k" + std::to_string(i), json{{"name", "skill " + std::to_string(i)}}});
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
  CAF_CHECK_EQUAL(running_of(db), 1);
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

// Incident 5: a child waited forever on a parent that had been reaped.
CAF_TEST(parent_retry_then_dead_with_the_reason_visible) {
  script[1].http_500 = true;
  script[2].http_500 = true;
  auto run_id = enqueue_one();
  start_node("node-a");
  CAF_REQUIRE(run_until([&] { return db.run(run_id)->finished(); }, 60s));
  auto attempts = db.attempts(std::nullopt);
  CAF_REQUIRE_EQUAL(attempts.size(), 2u);
  CAF_CHECK(attempts[0].result == attempt_result::failed);
  CAF_CHECK(attempts[1].result == attempt_result::failed);
  // The second attempt waited out the 1 s backoff.
  CAF_CHECK(attempts[1].started_at - attempts[0].finished_at >= 1s);
  CAF_CHECK(attempts[1].error.find("HTTP 500") != std::string::npos);
  CAF_CHECK(db.items(run_id).at(0).sink == std::optional<std::string>{"dead"});
  CAF_CHECK_EQUAL(dead_of(db), 1);
  CAF_CHECK(db.check_invariants().empty());
}

// Incident 7: two classifiers on different models ran one after the other.
CAF_TEST(parallel_models_take_the_longer_stage_not_the_sum) {
  pipeline = load(parallel_toml);
  for (int64_t epoch : {1, 2})
    script[epoch].latency = 1s;
  auto run_id = enqueue("split", 4, 3);
  start_node("node-a");
  auto began = sched.clock().now();
  CAF_REQUIRE(run_until([&] { return db.run(run_id)->finished(); }, 60s));
  auto makespan = std::chrono::duration<double>(sched.clock().now() - began).count();
  // Each model takes 4 x 1 s at concurrency 1: 4 s side by side, 8 s in a row.
  CAF_MESSAGE("virtual makespan " << makespan << " s");
  CAF_CHECK(makespan >= 4.0);
  CAF_CHECK(makespan < 6.0);
  CAF_CHECK(db.check_invariants().empty());
}

CAF_TEST_FIXTURE_SCOPE_END()
