// group_writer on CAF's deterministic test scheduler, before a store that
// holds its replies until told: batches of several pumps share one write,
// each pump gets its own slice of the results, a failed write fails all, and
// a committed handoff wakes this node's pump of the next stage.
#define CAF_SUITE group_writer
#include "actors/group_writer.hpp"
#include "messages/registry.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <caf/test/dsl.hpp>
#include <map>
#include <memory>
#include <vector>

using namespace turing;
using namespace turing::actors;
using namespace turing::persistence;

namespace {

using answer_atom = caf::atom_constant<caf::atom("tanswer")>;
using refuse_atom = caf::atom_constant<caf::atom("trefuse")>;

/// What the fake store saw, and what each fake pump got back.
struct record {
  std::vector<size_t> writes; ///< rows of each write, in arrival order
  std::vector<caf::response_promise> held;
  std::vector<std::vector<int64_t>> held_ids;
  std::map<std::string, std::vector<fence_result>> replies;
  std::map<std::string, int> errors;
  std::vector<std::string> wakes; ///< work_available the local pumps got, in order
  /// Claiming writes held: their promise, batch and claim limits.
  std::vector<caf::response_promise> held_claiming;
  std::vector<claiming_completion> held_claiming_requests;
  std::vector<std::map<std::string, int>> limits; ///< of each claiming write
  std::vector<handoffs_claimed> handed;           ///< what the local pumps got, in order
};
using record_ptr = std::shared_ptr<record>;

/// Holds every write until answer_atom (an even id is applied, an odd one
/// stale, so a misplaced slice shows) or refuse_atom (an error for all).
caf::behavior held_store(caf::event_based_actor* self, record_ptr r) {
  return {
      [=](std::vector<completion>& batch) {
        r->writes.push_back(batch.size());
        std::vector<int64_t> ids;
        for (const auto& c : batch)
          ids.push_back(c.fence.message_id);
        r->held_ids.push_back(ids);
        r->held.push_back(self->make_response_promise());
        return r->held.back();
      },
      [=](claiming_completion& c) {
        r->writes.push_back(c.batch.size());
        r->limits.push_back(c.claims.limits);
        r->held_claiming_requests.push_back(std::move(c));
        r->held_claiming.push_back(self->make_response_promise());
        return r->held_claiming.back();
      },
      [=](answer_atom) {
        // A claiming write claims, of each applied entry's handoffs, as
        // many per stage as its limit allows.
        for (size_t i = 0; i < r->held_claiming.size(); ++i) {
          auto& c = r->held_claiming_requests[i];
          completion_outcome out;
          auto left = c.claims.limits;
          for (const auto& e : c.batch) {
            bool applied = e.fence.message_id % 2 == 0;
            out.results.push_back(applied ? fence_result::applied : fence_result::stale);
            for (const auto& d : e.deliveries)
              if (applied && left[d.target] > 0) {
                --left[d.target];
                claimed_message m;
                m.id = 1000 + e.fence.message_id;
                m.stage = d.target;
                m.epoch = 1;
                out.claimed.push_back(m);
              }
          }
          r->held_claiming[i].deliver(out);
        }
        r->held_claiming.clear();
        r->held_claiming_requests.clear();
        for (size_t i = 0; i < r->held.size(); ++i) {
          std::vector<fence_result> results;
          for (auto id : r->held_ids[i])
            results.push_back(id % 2 == 0 ? fence_result::applied : fence_result::stale);
          r->held[i].deliver(results);
        }
        r->held.clear();
        r->held_ids.clear();
      },
      [=](refuse_atom) {
        for (auto& p : r->held_claiming)
          p.deliver(caf::make_error(caf::sec::runtime_error, "database unreachable"));
        r->held_claiming.clear();
        r->held_claiming_requests.clear();
        for (auto& p : r->held)
          p.deliver(caf::make_error(caf::sec::runtime_error, "database unreachable"));
        r->held.clear();
        r->held_ids.clear();
      },
  };
}

/// A pump of this node as the writer sees it: in the directory, woken.
caf::behavior woken_pump(caf::event_based_actor*, record_ptr r) {
  return {[=](const work_available& w) { r->wakes.push_back(w.stage); },
          [=](const handoffs_claimed& h) { r->handed.push_back(h); }};
}

/// A pump's flush, reduced to its request: sends `ids` as completions, each
/// handing off to the stages `to` names for it.
void fake_pump(caf::event_based_actor* self, caf::actor writer, record_ptr r, std::string name,
               std::vector<int64_t> ids, std::map<int64_t, std::vector<std::string>> to) {
  std::vector<completion> batch;
  for (auto id : ids) {
    completion c;
    c.fence = lease{id, 1};
    c.outcome = "ok";
    for (const auto& stage : to[id])
      c.deliveries.push_back({delivery::kind::stage, stage, json::object(), 3, {}});
    batch.push_back(c);
  }
  self->request(writer, caf::infinite, std::move(batch))
      .then([=](const std::vector<fence_result>& got) { r->replies[name] = got; },
            [=](caf::error&) { r->errors[name] += 1; });
}

struct fixture : test_coordinator_fixture<> {
  record_ptr r = std::make_shared<record>();
  std::shared_ptr<actor_directory> dir = std::make_shared<actor_directory>();
  caf::actor writer;

  void start(group_writer_options o) {
    dir->put("store", sys.spawn(held_store, r));
    writer = spawn_group_writer(sys, o, dir);
    sched.run();
  }

  // sched.run(), not run(): virtual time stands still, so the 60 s request
  // timeouts never fire while the store holds its replies.
  void send_from(const std::string& name, std::vector<int64_t> ids,
                 std::map<int64_t, std::vector<std::string>> to = {}) {
    sys.spawn(fake_pump, writer, r, name, std::move(ids), std::move(to));
    sched.run();
  }

  void answer() {
    caf::anon_send(dir->get("store"), answer_atom::value);
    sched.run();
  }

  /// Starts a writer of node `node` whose pump of stage "right" offers
  /// `places` in its handoff room, beside the woken pumps of `pumps`.
  std::shared_ptr<handoff_room> start_with_room_of_right(int places, std::vector<std::string> pumps,
                                                         std::string node = "") {
    auto rooms = std::make_shared<handoff_rooms>();
    auto right = rooms->open("right");
    right->offer(places);
    group_writer_options o;
    o.rooms = rooms;
    o.node = std::move(node);
    start(o);
    for (const auto& stage : pumps)
      dir->put("pump/" + stage, sys.spawn(woken_pump, r));
    sched.run();
    return right;
  }

  ~fixture() {
    caf::anon_send_exit(writer, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(dir->get("store"), caf::exit_reason::user_shutdown);
    for (const char* pump : {"pump/left", "pump/right"})
      if (auto p = dir->get(pump))
        caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
    sched.run();
    dir->clear();
  }
};

const std::vector<fence_result> applied_stale = {fence_result::applied, fence_result::stale};

} // namespace

CAF_TEST_FIXTURE_SCOPE(group_writer_tests, fixture)

CAF_TEST(batches_sent_while_one_is_written_share_the_next_write) {
  group_writer_options o;
  o.max_in_flight = 1;
  start(o);
  send_from("a", {2, 3});
  CAF_CHECK_EQUAL(r->writes, (std::vector<size_t>{2})); // no linger when idle
  send_from("b", {4, 5, 6});
  send_from("c", {7});
  CAF_CHECK_EQUAL(r->writes.size(), 1u); // both wait for the write in flight
  answer();
  CAF_CHECK_EQUAL(r->writes, (std::vector<size_t>{2, 4})); // b and c in one
  CAF_CHECK_EQUAL(r->replies["a"], applied_stale);
  CAF_CHECK(r->replies.count("b") == 0);
  answer();
  CAF_CHECK_EQUAL(r->replies["b"],
                  (std::vector<fence_result>{fence_result::applied, fence_result::stale,
                                             fence_result::applied}));
  CAF_CHECK_EQUAL(r->replies["c"], (std::vector<fence_result>{fence_result::stale}));
  CAF_CHECK(r->errors.empty());
}

CAF_TEST(a_deep_queue_is_written_beside_the_batch_in_flight) {
  group_writer_options o;
  o.max_in_flight = 2;
  o.deep_queue = 3;
  start(o);
  send_from("a", {2});
  send_from("b", {4, 6}); // shallow: waits
  CAF_CHECK_EQUAL(r->writes, (std::vector<size_t>{1}));
  send_from("c", {8}); // three rows waiting: deep enough
  CAF_CHECK_EQUAL(r->writes, (std::vector<size_t>{1, 3}));
  send_from("d", {10, 12, 14}); // two writes in flight: waits whatever its depth
  CAF_CHECK_EQUAL(r->writes.size(), 2u);
  answer();
  CAF_CHECK_EQUAL(r->writes, (std::vector<size_t>{1, 3, 3}));
  answer();
  CAF_CHECK_EQUAL(r->replies.size(), 4u);
}

CAF_TEST(a_write_never_holds_more_than_max_rows_but_never_splits_a_batch) {
  group_writer_options o;
  o.max_in_flight = 1;
  o.max_rows = 3;
  start(o);
  send_from("a", {2});
  send_from("b", {4, 6});
  send_from("c", {8, 10});
  send_from("d", {12, 14, 16, 18}); // larger than max_rows alone
  answer();
  answer();
  answer();
  answer();
  CAF_CHECK_EQUAL(r->writes, (std::vector<size_t>{1, 2, 2, 4}));
  CAF_CHECK_EQUAL(r->replies["d"].size(), 4u);
}

CAF_TEST(a_failed_write_fails_every_batch_in_it_and_the_next_write_goes) {
  group_writer_options o;
  o.max_in_flight = 1;
  start(o);
  send_from("a", {2});
  send_from("b", {4});
  send_from("c", {6});
  answer(); // a done; b and c now in one write
  caf::anon_send(dir->get("store"), refuse_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(r->errors["b"], 1);
  CAF_CHECK_EQUAL(r->errors["c"], 1);
  send_from("b", {4}); // the pump sends it again
  CAF_CHECK_EQUAL(r->writes, (std::vector<size_t>{1, 2, 1}));
  answer();
  CAF_CHECK_EQUAL(r->replies["b"], (std::vector<fence_result>{fence_result::applied}));
}

CAF_TEST(a_committed_handoff_wakes_the_local_pump_of_its_next_stage_once) {
  start(group_writer_options{});
  dir->put("pump/left", sys.spawn(woken_pump, r));
  dir->put("pump/right", sys.spawn(woken_pump, r));
  sched.run();
  // 2 and 4 are applied, 3 is stale (fenced out: it handed off nothing);
  // "far" has no pump on this node.
  send_from("a", {2, 3, 4}, {{2, {"left"}}, {3, {"right"}}, {4, {"left", "far"}}});
  CAF_CHECK(r->wakes.empty()); // nothing before the commit
  answer();
  CAF_CHECK_EQUAL(r->wakes, (std::vector<std::string>{"left"}));
}

CAF_TEST(a_failed_write_wakes_no_pump) {
  start(group_writer_options{});
  dir->put("pump/left", sys.spawn(woken_pump, r));
  sched.run();
  send_from("a", {2}, {{2, {"left"}}});
  caf::anon_send(dir->get("store"), refuse_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(r->errors["a"], 1);
  CAF_CHECK(r->wakes.empty());
}

CAF_TEST(a_handoff_reserves_the_room_its_pump_offers_and_gets_the_claimed_messages_to_it) {
  auto right = start_with_room_of_right(2, {"left", "right"}, "node-a");
  // Three messages for "right", whose pump offers 2 places; "left" offers none.
  send_from("a", {2, 4, 6}, {{2, {"right", "left"}}, {4, {"right"}}, {6, {"right"}}});
  CAF_REQUIRE_EQUAL(r->limits.size(), 1u);
  CAF_CHECK_EQUAL(r->limits[0], (std::map<std::string, int>{{"right", 2}}));
  CAF_CHECK_EQUAL(right->reserve(1), 0); // all taken until the reply
  answer();
  CAF_REQUIRE_EQUAL(r->handed.size(), 1u);
  CAF_CHECK_EQUAL(r->handed[0].stage, "right");
  CAF_CHECK_EQUAL(r->handed[0].room, right->incarnation());
  CAF_CHECK_EQUAL(r->handed[0].reserved, 2);
  CAF_CHECK_EQUAL(r->handed[0].jobs.size(), 2u);
  // Both stages have a ready message to claim (one of right's three was
  // not claimed); each is woken once.
  std::sort(r->wakes.begin(), r->wakes.end());
  CAF_CHECK_EQUAL(r->wakes, (std::vector<std::string>{"left", "right"}));
  CAF_CHECK_EQUAL(r->replies["a"].size(), 3u);
}

CAF_TEST(a_stage_whose_handoffs_were_all_claimed_is_not_woken) {
  start_with_room_of_right(10, {"right"});
  send_from("a", {2, 4}, {{2, {"right"}}, {4, {"right"}}});
  answer();
  CAF_REQUIRE_EQUAL(r->handed.size(), 1u);
  CAF_CHECK_EQUAL(r->handed[0].reserved, 2);
  CAF_CHECK_EQUAL(r->handed[0].jobs.size(), 2u);
  CAF_CHECK(r->wakes.empty());
}

CAF_TEST(a_failed_claiming_write_gives_the_reserved_places_back_with_no_messages) {
  start_with_room_of_right(5, {"right"});
  send_from("a", {2, 4}, {{2, {"right"}}, {4, {"right"}}});
  caf::anon_send(dir->get("store"), refuse_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(r->errors["a"], 1);
  CAF_REQUIRE_EQUAL(r->handed.size(), 1u);
  CAF_CHECK_EQUAL(r->handed[0].reserved, 2);
  CAF_CHECK(r->handed[0].jobs.empty());
  CAF_CHECK(r->wakes.empty());
}

CAF_TEST_FIXTURE_SCOPE_END()
