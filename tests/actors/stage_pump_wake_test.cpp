// stage_pump on CAF's deterministic scheduler, before a store that holds its
// claims until told: a wake (NOTIFY) that lands while a claim is in flight is
// not lost, or a message committed just after that claim's snapshot would
// wait for the poll timer (2 s by default) instead of being claimed at once;
// and a written result claims again only when work may still wait. Its
// handoff room: places offered only once the table is empty, never given
// to a claim while a writer holds them, and handed-off messages run.
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

/// The stage under test; `concurrency` is appended when a test sets it.
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

claimed_message message(int64_t id) {
  claimed_message m;
  m.id = m.item_id = id;
  m.run_id = 1;
  m.stage = "pass";
  m.payload = nlohmann::json::object();
  m.attempt = 1;
  m.max_attempts = 3;
  m.epoch = 1;
  m.started_at = turing::persistence::wall_clock::now();
  return m;
}

struct claims {
  int seen = 0;
  std::vector<caf::response_promise> held;
  std::vector<int> limits;              ///< the limit of every claim, in order
  std::vector<claimed_message> to_give; ///< what the next answer hands out
  int completed = 0;
};
using claims_ptr = std::shared_ptr<claims>;

/// Holds every claim until answer_atom, then answers each with no rows: the
/// claim ran before the new message was visible to it.
caf::behavior held_store(caf::event_based_actor* self, claims_ptr c) {
  return {
      [=](claim_request& r) {
        c->seen += 1;
        c->limits.push_back(r.limit);
        c->held.push_back(self->make_response_promise());
        return c->held.back();
      },
      [=](answer_atom) {
        for (auto& p : c->held)
          p.deliver(std::exchange(c->to_give, {}));
        c->held.clear();
      },
      [=](std::vector<completion>& batch) {
        c->completed += static_cast<int>(batch.size());
        return std::vector<fence_result>(batch.size(), fence_result::applied);
      },
  };
}

struct fixture : test_coordinator_fixture<> {
  claims_ptr c = std::make_shared<claims>();
  std::shared_ptr<actor_directory> dir = std::make_shared<actor_directory>();
  std::shared_ptr<handoff_rooms> rooms = std::make_shared<handoff_rooms>();
  caf::actor pump;

  explicit fixture(const std::string& stage_extra = "") {
    auto builtins = std::make_shared<builtin_registry>();
    builtins->add("test.pass", {"ok"}, [](const nlohmann::json& p) {
      return handler_result{"ok", p};
    });
    auto loaded = config::parse_config(std::string(pipeline_toml) + stage_extra, "wake.toml",
                                       "/tmp", builtins->catalog());
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
    o.rooms = rooms;
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

CAF_TEST(a_written_result_claims_nothing_when_the_last_claim_left_room) {
  CAF_REQUIRE_EQUAL(c->seen, 1);
  c->to_give = {message(1)}; // fewer than the claim's limit: the queue is empty
  answer();
  CAF_CHECK_EQUAL(c->completed, 1);
  // Its result written, the pump waits for a wake: a claim now would find
  // what the last one left, nothing (three such claims per handoff before).
  CAF_CHECK_EQUAL(c->seen, 1);
}

CAF_TEST_FIXTURE_SCOPE_END()

namespace {

struct one_at_a_time : fixture {
  one_at_a_time() : fixture("concurrency = 1\n") {}
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(stage_pump_claim_after_write_tests, one_at_a_time)

CAF_TEST(a_written_result_claims_again_when_a_full_claim_left_work_waiting) {
  CAF_REQUIRE_EQUAL(c->seen, 1);
  CAF_REQUIRE_EQUAL(c->limits.at(0), 1); // one free place
  c->to_give = {message(1)};             // a full claim: more may wait
  answer();
  CAF_CHECK_EQUAL(c->completed, 1);
  // The claim right after the full one found no free place; the written
  // result freed it and claimed.
  CAF_CHECK_EQUAL(c->seen, 2);
}

CAF_TEST_FIXTURE_SCOPE_END()

namespace {

struct two_at_a_time : fixture {
  two_at_a_time() : fixture("concurrency = 2\n") {}
  std::shared_ptr<handoff_room> room() { return rooms->find("pass"); }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(stage_pump_handoff_room_tests, two_at_a_time)

CAF_TEST(a_pump_offers_its_free_places_only_once_a_claim_finds_the_table_empty) {
  CAF_REQUIRE_EQUAL(c->seen, 1);
  CAF_CHECK_EQUAL(room()->reserve(10), 0); // the claim in flight may fill both places
  c->to_give = {message(1), message(2)};
  answer(); // a full claim: more may wait in the table
  CAF_CHECK_EQUAL(room()->reserve(10), 0);
  answer(); // the claim after it finds nothing: the table is empty
  CAF_CHECK_EQUAL(c->completed, 2);
  CAF_CHECK_EQUAL(room()->reserve(10), 2);
}

CAF_TEST(places_a_writer_reserved_are_never_claimed_and_handed_off_messages_run) {
  answer();                                 // the first claim finds nothing: both places offered
  CAF_REQUIRE_EQUAL(room()->reserve(1), 1); // a completion batch takes one
  caf::anon_send(ready_group(sys, "pass"), work_available{"pass"});
  sched.run();
  CAF_REQUIRE_EQUAL(c->seen, 2);
  CAF_CHECK_EQUAL(c->limits.back(), 1); // the reserved place is not the claim's
  answer();
  caf::anon_send(pump, handoffs_claimed{"pass", room()->incarnation(), 1, {message(7)}});
  sched.run();
  CAF_CHECK_EQUAL(c->completed, 1); // ran and written, no claim of its own
  CAF_CHECK_EQUAL(c->seen, 2);
  CAF_CHECK_EQUAL(room()->reserve(10), 2); // both places offered again
}

CAF_TEST(a_reservation_answered_with_no_messages_frees_its_places) {
  answer();
  CAF_REQUIRE_EQUAL(room()->reserve(2), 2);
  caf::anon_send(pump, handoffs_claimed{"pass", room()->incarnation(), 2, {}}); // a failed write
  sched.run();
  CAF_CHECK_EQUAL(room()->reserve(10), 2);
}

CAF_TEST_FIXTURE_SCOPE_END()
