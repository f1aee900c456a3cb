// stage_pump on CAF's deterministic scheduler, before a store that holds its
// claims until told: a wake (NOTIFY) that lands while a claim is in flight is
// not lost, or a message committed just after that claim's snapshot would
// wait for the poll timer (2 s by default) instead of being claimed at once.
#define CAF_SUITE stage_pump_wake
#include "actors/ready_listener.hpp"
#include "actors/stage_pump.hpp"
#include "config/config_loader.hpp"
#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <caf/test/dsl.hpp>
#include <memory>
#include <vector>

using namespace turing;
using namespace turing::actors;
using namespace turing::persistence;

namespace {

using answer_atom = caf::atom_constant<caf::atom("tanswer")>;

const char* pipeline_toml = R"toml(
sinks = ["done"]

[runtime]
poll_interval = "2s"

[stages.pass]
handler = "builtin"
entry = true
function = "test.pass"
routes = { ok = "done" }
)toml";

struct claims {
  int seen = 0;
  std::vector<caf::response_promise> held;
};
using claims_ptr = std::shared_ptr<claims>;

/// Holds every claim until answer_atom, then answers each with no rows: the
/// claim ran before the new message was visible to it.
caf::behavior held_store(caf::event_based_actor* self, claims_ptr c) {
  return {
      [=](claim_request&) {
        c->seen += 1;
        c->held.push_back(self->make_response_promise());
        return c->held.back();
      },
      [=](answer_atom) {
        for (auto& p : c->held)
          p.deliver(std::vector<claimed_message>{});
        c->held.clear();
      },
  };
}

struct fixture : test_coordinator_fixture<> {
  claims_ptr c = std::make_shared<claims>();
  std::shared_ptr<actor_directory> dir = std::make_shared<actor_directory>();
  caf::actor pump;

  fixture() {
    auto builtins = std::make_shared<builtin_registry>();
    builtins->add("test.pass", {"ok"}, [](const nlohmann::json& p) {
      return handler_result{"ok", p};
    });
    auto loaded = config::parse_config(pipeline_toml, "wake.toml", "/tmp", builtins->catalog());
    for (const auto& e : loaded.errors)
      CAF_MESSAGE(e.to_string());
    CAF_REQUIRE(loaded.ok());
    dir->put("store", sys.spawn(held_store, c));
    stage_pump_options o;
    o.pipeline = std::make_shared<const config::pipeline_config>(*loaded.config);
    o.stage = "pass";
    o.node = "n1";
    o.builtins = builtins;
    o.dir = dir;
    pump = spawn_stage_pump(sys, std::move(o));
    // sched.run(), never run(): virtual time stands still, so neither the
    // poll timer nor a request timeout can stand in for the wake.
    sched.run();
  }

  void answer() {
    caf::anon_send(dir->get("store"), answer_atom::value);
    sched.run();
  }

  ~fixture() {
    caf::anon_send_exit(pump, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(dir->get("store"), caf::exit_reason::user_shutdown);
    sched.run();
    dir->clear();
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(stage_pump_wake_tests, fixture)

CAF_TEST(a_wake_during_a_claim_in_flight_claims_again_once_it_returns) {
  CAF_REQUIRE_EQUAL(c->seen, 1); // the first poll tick's claim, held
  caf::anon_send(ready_group(sys, "pass"), work_available{"pass"});
  caf::anon_send(ready_group(sys, "pass"), work_available{"pass"});
  sched.run();
  CAF_CHECK_EQUAL(c->seen, 1); // never two claims of one stage at once
  answer();
  CAF_CHECK_EQUAL(c->seen, 2); // the wakes it missed: one claim more, at once
  answer();
  CAF_CHECK_EQUAL(c->seen, 2); // and no more without a new wake
}

CAF_TEST(a_claim_that_finds_nothing_without_a_wake_waits_for_the_next_one) {
  CAF_REQUIRE_EQUAL(c->seen, 1);
  answer();
  CAF_CHECK_EQUAL(c->seen, 1);
  caf::anon_send(ready_group(sys, "pass"), work_available{"pass"});
  sched.run();
  CAF_CHECK_EQUAL(c->seen, 2);
}

CAF_TEST_FIXTURE_SCOPE_END()
