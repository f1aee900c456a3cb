// Liveness probes (field report, incident 15): a child that stops processing
// its mailbox is killed and restarted as a stalled exit, in virtual time.
#define CAF_SUITE supervisor_stall
#include "tests/supervision/supervisor_fixture.hpp"

using namespace turing;
using namespace turing::supervision;
using namespace turing::supervision::testing;
using strings = std::vector<std::string>;

namespace {

/// Makes a probed worker stop answering probes (while it still handles
/// everything else, so the test can watch it die).
using stall_atom = caf::atom_constant<caf::atom("tstall")>;

constexpr auto stall_timeout = 1000ms;

/// What a stalled actor does with a probe: keeps the request open forever,
/// as a worker stuck behind a blocking call would.
caf::behavior stalled(caf::event_based_actor* self, const std::string& id) {
  return {
      [self](probe_atom) { return self->make_response_promise(); },
      [self, id](crash_atom) {
        self->quit(caf::make_error(caf::sec::runtime_error, "crash " + id));
      },
  };
}

/// A worker that answers probes as stage_pump does, until told to stall.
caf::behavior probed_worker(caf::event_based_actor* self, probe_ptr p, std::string id,
                            bool trap_exits) {
  p->starts[id] += 1;
  p->log.push_back("start:" + id);
  p->current[id] = self->address();
  if (trap_exits)
    self->set_exit_handler([p, id](caf::exit_msg&) { p->log.push_back("ignored:" + id); });
  self->attach_functor([p, id](const caf::error& reason) {
    p->log.push_back("exit:" + id + ":" + describe_reason(reason));
  });
  return {
      [p, id](probe_atom) { p->probes[id] += 1; },
      [self, p, id](stall_atom) {
        p->log.push_back("stall:" + id);
        self->become(stalled(self, id));
      },
      [self, id](crash_atom) {
        self->quit(caf::make_error(caf::sec::runtime_error, "crash " + id));
      },
      [self](finish_atom) { self->quit(); },
  };
}

child_spec probed_spec(probe_ptr p, std::string id, std::chrono::milliseconds shutdown = 5000ms,
                       bool trap_exits = false) {
  child_spec spec;
  spec.id = id;
  spec.shutdown = shutdown;
  spec.stall_timeout = stall_timeout;
  spec.start = [p, id, trap_exits](caf::event_based_actor* sup) {
    return sup->spawn(probed_worker, p, id, trap_exits);
  };
  return spec;
}

supervisor_flags flags_of(int intensity, restart_strategy strategy = restart_strategy::one_for_one,
                          std::chrono::milliseconds period = 60000ms) {
  supervisor_flags flags;
  flags.strategy = strategy;
  flags.intensity = intensity;
  flags.period = period;
  return flags;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(supervisor_stall_tests, fixture)

CAF_TEST(a_stalled_child_is_killed_and_restarted_within_one_and_a_half_timeouts) {
  start_sup("root", flags_of(3), {probed_spec(p, "w"), worker_spec(p, "other")});
  auto old = child("w");
  pass(1000ms);
  CAF_CHECK_EQUAL(p->probes["w"], 2); // every stall_timeout / 2
  // Worst case: it stalls just after answering a probe.
  self->send(old, stall_atom::value);
  sched.run();
  pass(1400ms);
  CAF_CHECK_EQUAL(p->starts["w"], 1);
  CAF_CHECK(p->exits.empty());
  pass(100ms); // stall_timeout + stall_timeout / 2 after the stall
  CAF_CHECK_EQUAL(p->starts["w"], 2);
  CAF_CHECK(child("w") != old);
  CAF_CHECK_EQUAL(count_log("exit:w:exit_reason(kill)"), 1u);
  CAF_REQUIRE_EQUAL(p->exits.size(), 1u);
  CAF_CHECK_EQUAL(p->exits[0].child, "w");
  CAF_CHECK(p->exits[0].restarting);
  CAF_CHECK(contains(p->exits[0].reason, "supervision_error(stalled"));
  CAF_CHECK(contains(p->exits[0].reason, "1000ms"));
  CAF_CHECK_EQUAL(p->events, strings({"started root/w 0", "started root/other 0",
                                      "exited root/w restarting", "started root/w 1"}));
  // The sibling is untouched (one_for_one) and the new incarnation is probed
  // in turn, and healthy.
  CAF_CHECK_EQUAL(p->starts["other"], 1);
  auto probes = p->probes["w"];
  pass(5000ms);
  CAF_CHECK_EQUAL(p->probes["w"], probes + 10);
  CAF_CHECK_EQUAL(p->starts["w"], 2);
  CAF_CHECK_EQUAL(p->exits.size(), 1u);
}

CAF_TEST(a_healthy_probed_child_is_never_restarted) {
  auto sup = start_sup("root", flags_of(0), {probed_spec(p, "w")});
  pass(60000ms);
  CAF_CHECK_EQUAL(p->probes["w"], 120);
  CAF_CHECK_EQUAL(p->starts["w"], 1);
  CAF_CHECK(p->exits.empty());
  CAF_CHECK_EQUAL(which(sup), std::vector<child_status>({child_status{"w", true, 0}}));
}

CAF_TEST(an_error_reply_to_the_probe_still_counts_as_alive) {
  // The fixture's worker has no probe handler: CAF 0.17's default handler
  // drops the probe and replies sec::unexpected_message, which proves the
  // mailbox is read.
  auto spec = worker_spec(p, "plain");
  spec.stall_timeout = stall_timeout;
  auto sup = start_sup("root", flags_of(0), {spec});
  pass(3000ms); // (CAF prints each dropped probe)
  CAF_CHECK_EQUAL(p->starts["plain"], 1);
  CAF_CHECK(p->exits.empty());
  CAF_CHECK_EQUAL(which(sup), std::vector<child_status>({child_status{"plain", true, 0}}));
}

CAF_TEST(stalls_count_toward_the_restart_intensity) {
  auto sup = start_sup("root", flags_of(2), {worker_spec(p, "sibling"), probed_spec(p, "w")});
  watch(sup, "root");
  for (int i = 0; i < 2; ++i) {
    self->send(child("w"), stall_atom::value);
    sched.run();
    pass(1500ms);
    CAF_CHECK_EQUAL(p->starts["w"], i + 2);
  }
  CAF_CHECK_EQUAL(p->downs.count("root"), 0u);
  // The third stall within the period is one restart too many.
  self->send(child("w"), stall_atom::value);
  sched.run();
  pass(1500ms);
  CAF_CHECK_EQUAL(p->starts["w"], 3);
  CAF_CHECK_EQUAL(count_events("exited root/w restarting"), 2u);
  CAF_CHECK_EQUAL(count_events("exited root/w final"), 1u);
  CAF_CHECK_EQUAL(count_log("exit:sibling:exit_reason(user_shutdown)"), 1u);
  CAF_REQUIRE_EQUAL(p->give_ups.size(), 1u);
  CAF_CHECK(contains(p->give_ups[0].reason, "stalled"));
  CAF_REQUIRE_EQUAL(p->downs.count("root"), 1u);
  CAF_CHECK(is_intensity_exceeded(p->downs["root"]));
}

CAF_TEST(a_late_down_msg_of_the_stalled_incarnation_is_ignored) {
  start_sup("root", flags_of(5), {probed_spec(p, "w")});
  auto old = child("w");
  auto old_addr = old.address();
  self->send(old, stall_atom::value);
  sched.run();
  // The probe sent at 500ms times out at 1500ms.
  pass(1400ms);
  CAF_CHECK_EQUAL(p->starts["w"], 1);
  // The stalled child dies on its own just as its probe times out: it runs
  // first, so its down_msg lands in the supervisor's mailbox behind the
  // timeout, i.e. after the supervisor has given up on it.
  self->send(old, crash_atom::value);
  advance_time(100ms);
  sched.run();
  CAF_CHECK_EQUAL(count_log("exit:w:system_error(runtime_error, (\"crash w\"))"), 1u);
  CAF_CHECK_EQUAL(p->starts["w"], 2);
  CAF_REQUIRE_EQUAL(p->exits.size(), 1u);
  CAF_CHECK(contains(p->exits[0].reason, "stalled"));
  // A down_msg of the old incarnation arriving later still is ignored too.
  auto sup = sups.back();
  self->send(sup, caf::down_msg{old_addr, caf::make_error(caf::sec::runtime_error, "late")});
  sched.run();
  pass(5000ms);
  CAF_CHECK_EQUAL(p->starts["w"], 2);
  CAF_CHECK_EQUAL(p->exits.size(), 1u);
  CAF_CHECK_EQUAL(p->events,
                  strings({"started root/w 0", "exited root/w restarting", "started root/w 1"}));
}

CAF_TEST(a_child_being_stopped_is_not_declared_stalled) {
  // It ignores user_shutdown and its probes: only the shutdown timeout,
  // not the stall detector, ends it.
  auto sup = start_sup("root", flags_of(5), {probed_spec(p, "w", 5000ms, true)});
  watch(sup, "root");
  self->send(child("w"), stall_atom::value);
  sched.run();
  self->send_exit(sup, caf::exit_reason::user_shutdown);
  sched.run();
  CAF_CHECK_EQUAL(count_log("ignored:w"), 1u);
  pass(4900ms);
  CAF_CHECK(p->exits.empty());
  CAF_CHECK_EQUAL(p->downs.count("root"), 0u);
  pass(100ms);
  CAF_CHECK_EQUAL(count_log("exit:w:exit_reason(kill)"), 1u);
  CAF_REQUIRE_EQUAL(p->exits.size(), 1u);
  CAF_CHECK_EQUAL(p->exits[0].reason, "exit_reason(kill)");
  CAF_CHECK(!p->exits[0].restarting);
  CAF_CHECK_EQUAL(p->starts["w"], 1);
  CAF_CHECK(p->downs["root"] == caf::exit_reason::user_shutdown);
}

CAF_TEST(an_exited_child_is_no_longer_probed) {
  child_spec spec = probed_spec(p, "t");
  spec.restart = restart_type::transient;
  auto sup = start_sup("root", flags_of(5), {spec, probed_spec(p, "w")});
  pass(1000ms);
  CAF_CHECK_EQUAL(p->probes["t"], 2);
  finish("t"); // a normal exit: a transient child stays down
  CAF_CHECK_EQUAL(count_events("exited root/t final"), 1u);
  pass(5000ms);
  CAF_CHECK_EQUAL(p->probes["t"], 2);
  CAF_CHECK_EQUAL(p->probes["w"], 12);
  CAF_CHECK_EQUAL(p->starts["t"], 1);
  CAF_CHECK_EQUAL(which(sup), std::vector<child_status>(
                                  {child_status{"t", false, 0}, child_status{"w", true, 0}}));
}

CAF_TEST_FIXTURE_SCOPE_END()
