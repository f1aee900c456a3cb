// The node monitor's census on CAF's deterministic scheduler, before a store
// that holds each census until told: a census that took long waits ten times
// its duration (10 s at most) before the next, so counting a deep queue does
// not take a database core; a quick one comes back at every tick.
#define CAF_SUITE node_monitor_census
#include "actors/node_monitor.hpp"
#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <caf/test/dsl.hpp>
#include <memory>
#include <vector>

using namespace turing;
using namespace turing::actors;
using namespace std::chrono_literals;

namespace {

using answer_atom = caf::atom_constant<caf::atom("tanswer")>;

struct censuses {
  int seen = 0;
  std::vector<caf::response_promise> held;
};
using censuses_ptr = std::shared_ptr<censuses>;

/// Holds every census until answer_atom, then answers it: one stage with work.
caf::behavior held_census_store(caf::event_based_actor* self, censuses_ptr c) {
  return {
      [=](census_request&) {
        c->seen += 1;
        c->held.push_back(self->make_response_promise());
        return c->held.back();
      },
      [=](answer_atom) {
        for (auto& p : c->held)
          p.deliver(work_census{{{"lucy", 1000, 0, 0, 0}}});
        c->held.clear();
      },
  };
}

struct fixture : test_coordinator_fixture<> {
  censuses_ptr c = std::make_shared<censuses>();
  std::shared_ptr<actor_directory> dir = std::make_shared<actor_directory>();
  caf::actor monitor;

  fixture() {
    dir->put("store", sys.spawn(held_census_store, c));
    node_monitor_options o;
    o.dir = dir; // no node name: it writes no report, only censuses
    o.census_interval = persistence::millis{1000};
    o.progress_interval = persistence::millis{0};
    monitor = spawn_node_monitor(sys, std::move(o));
    sched.run();
  }

  /// The held census answers after `took` of virtual time.
  void answer_after(caf::timespan took) {
    sched.advance_time(took);
    sched.run();
    caf::anon_send(dir->get("store"), answer_atom::value);
    sched.run();
  }

  /// Virtual time moves on by whole ticks, each run to completion.
  void ticks(int n) {
    for (int i = 0; i < n; ++i) {
      sched.advance_time(1s);
      sched.run();
    }
  }

  ~fixture() {
    caf::anon_send_exit(monitor, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(dir->get("store"), caf::exit_reason::user_shutdown);
    sched.run();
    dir->clear();
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(node_monitor_census_tests, fixture)

CAF_TEST(a_quick_census_comes_again_at_the_next_tick) {
  CAF_REQUIRE_EQUAL(c->seen, 1);
  answer_after(0ms);
  ticks(1);
  CAF_CHECK_EQUAL(c->seen, 2);
}

CAF_TEST(a_census_that_took_half_a_second_waits_five_seconds_from_its_start) {
  CAF_REQUIRE_EQUAL(c->seen, 1);
  answer_after(500ms); // virtual time is now 0.5 s
  ticks(4);            // the ticks at 1.5, 2.5, 3.5 and 4.5 s
  CAF_CHECK_EQUAL(c->seen, 1);
  ticks(1); // 5.5 s: past 10 x 0.5 s after it started
  CAF_CHECK_EQUAL(c->seen, 2);
}

CAF_TEST(a_census_never_waits_more_than_ten_seconds) {
  CAF_REQUIRE_EQUAL(c->seen, 1);
  answer_after(3s); // 10 x 3 s would be 30 s
  ticks(6);         // the ticks at 4 to 9 s
  CAF_CHECK_EQUAL(c->seen, 1);
  ticks(1); // 10 s: 10 s after it started
  CAF_CHECK_EQUAL(c->seen, 2);
}

CAF_TEST_FIXTURE_SCOPE_END()
