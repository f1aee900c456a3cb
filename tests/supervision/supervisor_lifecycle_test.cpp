// Restart intensity, escalation, nesting, shutdown and failed starts of
// turing's supervisors, run on CAF's deterministic test coordinator.
#define CAF_SUITE supervisor_lifecycle
#include "tests/supervision/supervisor_fixture.hpp"

using namespace turing;
using namespace turing::supervision;
using namespace turing::supervision::testing;
using strings = std::vector<std::string>;

namespace {

supervisor_flags flags_of(restart_strategy strategy, int intensity,
                          std::chrono::milliseconds period = 5000ms) {
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

CAF_TEST_FIXTURE_SCOPE(supervisor_lifecycle_tests, fixture)

CAF_TEST(intensity_exceeded_stops_all_children_and_exits_with_the_error) {
  auto sup = start_sup("root", flags_of(restart_strategy::one_for_one, 3),
                       {worker_spec(p, "a"), worker_spec(p, "b")});
  watch(sup, "root");
  // R = 3 crashes within T: 3 restarts.
  for (int i = 0; i < 3; ++i) {
    advance_time(100ms);
    crash("a");
  }
  CAF_CHECK_EQUAL(p->starts["a"], 4);
  CAF_CHECK_EQUAL(p->give_ups.size(), 0u);
  CAF_CHECK_EQUAL(p->downs.count("root"), 0u);
  // The R+1th: no restart, b is stopped, the supervisor exits.
  p->log.clear();
  crash("a");
  CAF_CHECK_EQUAL(p->starts["a"], 4);
  CAF_CHECK_EQUAL(p->log, strings({
                              "exit:a:system_error(runtime_error, (\"crash a\"))",
                              "exit:b:exit_reason(user_shutdown)",
                          }));
  CAF_REQUIRE_EQUAL(p->downs.count("root"), 1u);
  auto& reason = p->downs["root"];
  CAF_CHECK(is_intensity_exceeded(reason));
  CAF_CHECK(reason == supervision_errc::intensity_exceeded);
  CAF_CHECK(contains(describe_reason(reason), "supervisor root"));
  CAF_CHECK(contains(sys.render(reason), "intensity_exceeded"));
  CAF_REQUIRE_EQUAL(p->give_ups.size(), 1u);
  CAF_CHECK_EQUAL(p->give_ups[0].supervisor, "root");
  CAF_CHECK(contains(p->give_ups[0].reason, "intensity_exceeded"));
  CAF_CHECK_EQUAL(count_events("exited root/a final"), 1u);
}

CAF_TEST(intensity_exceeded_escalates_to_the_parent_supervisor) {
  auto root = start_sup("root", flags_of(restart_strategy::one_for_one, 1),
                        {supervisor_child("stage", flags_of(restart_strategy::one_for_one, 2),
                                          {worker_spec(p, "w")}, restart_type::permanent, obs),
                         worker_spec(p, "sibling")});
  watch(root, "root");
  // The stage's worker starts when the stage runs, after the root has
  // spawned the sibling: children start asynchronously, in spawn order.
  CAF_CHECK_EQUAL(count_events("started root/stage 0"), 1u);
  CAF_CHECK_EQUAL(count_events("started root/stage/w 0"), 1u);
  CAF_CHECK_EQUAL(count_events("started root/sibling 0"), 1u);
  crash("w");
  crash("w");
  CAF_CHECK_EQUAL(p->starts["w"], 3);
  // Third crash: the stage gives up, the root sees an abnormal exit of its
  // child "stage" and restarts it (with a fresh w).
  crash("w");
  CAF_REQUIRE_EQUAL(p->give_ups.size(), 1u);
  CAF_CHECK_EQUAL(p->give_ups[0].supervisor, "root/stage");
  auto stage_exit = std::find_if(p->exits.begin(), p->exits.end(), [](const child_exited& x) {
    return x.supervisor == "root" && x.child == "stage";
  });
  CAF_REQUIRE(stage_exit != p->exits.end());
  CAF_CHECK(contains(stage_exit->reason, "intensity_exceeded"));
  CAF_CHECK(contains(stage_exit->reason, "supervisor root/stage"));
  CAF_CHECK(stage_exit->restarting);
  CAF_CHECK_EQUAL(count_events("started root/stage 1"), 1u);
  CAF_CHECK_EQUAL(p->starts["w"], 4);
  CAF_CHECK_EQUAL(p->starts["sibling"], 1);
  // The stage giving up a second time exceeds the root's intensity (1): the
  // root stops its sibling and gives up as well.
  for (int i = 0; i < 3; ++i)
    crash("w");
  CAF_CHECK_EQUAL(p->give_ups.size(), 3u);
  CAF_REQUIRE_EQUAL(p->downs.count("root"), 1u);
  CAF_CHECK(is_intensity_exceeded(p->downs["root"]));
  CAF_CHECK_EQUAL(count_log("exit:sibling:exit_reason(user_shutdown)"), 1u);
}

CAF_TEST(crashes_spread_beyond_the_period_do_not_exhaust_intensity) {
  auto sup =
      start_sup("root", flags_of(restart_strategy::one_for_one, 2, 5000ms), {worker_spec(p, "a")});
  watch(sup, "root");
  for (int i = 0; i < 6; ++i) {
    crash("a");
    advance_time(2600ms); // at most two crashes ever fall within 5 s
  }
  CAF_CHECK_EQUAL(p->starts["a"], 7);
  CAF_CHECK_EQUAL(p->give_ups.size(), 0u);
  CAF_CHECK_EQUAL(p->downs.count("root"), 0u);
  // Three crashes without time passing do exhaust it (once the earlier ones
  // have left the window).
  advance_time(5000ms);
  crash("a");
  crash("a");
  CAF_CHECK_EQUAL(p->downs.count("root"), 0u);
  crash("a");
  CAF_CHECK_EQUAL(p->downs.count("root"), 1u);
}

CAF_TEST(nested_supervisor_giving_up_as_temporary_child_leaves_sibling_running) {
  auto root = start_sup("pipeline", flags_of(restart_strategy::one_for_one, 3),
                        {supervisor_child("stage1", flags_of(restart_strategy::one_for_one, 0),
                                          {worker_spec(p, "w1")}, restart_type::temporary, obs),
                         supervisor_child("stage2", flags_of(restart_strategy::one_for_one, 0),
                                          {worker_spec(p, "w2")}, restart_type::temporary, obs)});
  watch(root, "pipeline");
  crash("w1");
  CAF_CHECK_EQUAL(count_events("gave_up pipeline/stage1"), 1u);
  CAF_CHECK_EQUAL(count_events("exited pipeline/stage1 final"), 1u);
  CAF_CHECK_EQUAL(p->starts["w1"], 1);
  // The sibling stage and its worker are untouched, the root keeps running.
  CAF_CHECK_EQUAL(p->starts["w2"], 1);
  CAF_CHECK_EQUAL(count_log("exit:w2"), 0u);
  CAF_CHECK_EQUAL(p->downs.count("pipeline"), 0u);
  auto xs = which(root);
  CAF_CHECK_EQUAL(xs, std::vector<child_status>({child_status{"stage2", true, 0}}));
  CAF_CHECK(child("w2") != nullptr);
}

CAF_TEST(shutdown_stops_children_in_reverse_order_and_kills_after_timeout) {
  auto sup = start_sup("root", flags_of(restart_strategy::one_for_one, 3),
                       {worker_spec(p, "a"),
                        worker_spec(p, "stubborn", restart_type::permanent, 1000ms, true),
                        worker_spec(p, "c")});
  watch(sup, "root");
  p->log.clear();
  self->send_exit(sup, caf::exit_reason::user_shutdown);
  sched.run();
  // c is gone; stubborn ignored user_shutdown, so a waits behind it.
  CAF_CHECK_EQUAL(p->log, strings({"exit:c:exit_reason(user_shutdown)", "ignored:stubborn"}));
  advance_time(999ms);
  sched.run();
  CAF_CHECK_EQUAL(p->log.size(), 2u);
  CAF_CHECK_EQUAL(p->downs.count("root"), 0u);
  advance_time(1ms);
  sched.run();
  CAF_CHECK_EQUAL(
      p->log, strings({"exit:c:exit_reason(user_shutdown)", "ignored:stubborn",
                       "exit:stubborn:exit_reason(kill)", "exit:a:exit_reason(user_shutdown)"}));
  CAF_REQUIRE_EQUAL(p->downs.count("root"), 1u);
  CAF_CHECK(p->downs["root"] == caf::exit_reason::user_shutdown);
  // Nothing was restarted on the way out.
  CAF_CHECK_EQUAL(p->starts["a"], 1);
  CAF_CHECK_EQUAL(p->starts["stubborn"], 1);
  CAF_CHECK_EQUAL(p->starts["c"], 1);
  CAF_CHECK_EQUAL(count_events("exited root/stubborn final"), 1u);
}

CAF_TEST(brutal_kill_children_are_killed_without_user_shutdown) {
  auto sup = start_sup(
      "root", flags_of(restart_strategy::one_for_one, 3),
      {worker_spec(p, "a"), worker_spec(p, "b", restart_type::permanent, brutal_kill, true)});
  watch(sup, "root");
  p->log.clear();
  self->send_exit(sup, caf::exit_reason::user_shutdown);
  sched.run();
  CAF_CHECK_EQUAL(p->log,
                  strings({"exit:b:exit_reason(kill)", "exit:a:exit_reason(user_shutdown)"}));
  CAF_CHECK(p->downs["root"] == caf::exit_reason::user_shutdown);
}

CAF_TEST(shutdown_of_a_parent_stops_nested_supervisors_depth_first) {
  auto root = start_sup("root", flags_of(restart_strategy::one_for_one, 3),
                        {worker_spec(p, "first"),
                         supervisor_child("stage", flags_of(restart_strategy::one_for_one, 3),
                                          {worker_spec(p, "w1"), worker_spec(p, "w2")},
                                          restart_type::permanent, obs)});
  watch(root, "root");
  p->log.clear();
  self->send_exit(root, caf::exit_reason::user_shutdown);
  sched.run();
  CAF_CHECK_EQUAL(
      p->log, strings({"exit:w2:exit_reason(user_shutdown)", "exit:w1:exit_reason(user_shutdown)",
                       "exit:first:exit_reason(user_shutdown)"}));
  CAF_CHECK(p->downs["root"] == caf::exit_reason::user_shutdown);
}

CAF_TEST(a_killed_supervisor_takes_its_children_down) {
  auto root = start_sup(
      "root", flags_of(restart_strategy::one_for_one, 3),
      {worker_spec(p, "a"), supervisor_child("stage", flags_of(restart_strategy::one_for_one, 3),
                                             {worker_spec(p, "w")}, restart_type::permanent, obs)});
  p->log.clear();
  self->send_exit(root, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK_EQUAL(count_log("exit:a:exit_reason(kill)"), 1u);
  CAF_CHECK_EQUAL(count_log("exit:w:exit_reason(kill)"), 1u);
  CAF_CHECK_EQUAL(count_log("start:"), 0u);
}

CAF_TEST(a_throwing_start_function_counts_as_a_failure) {
  child_spec flaky;
  flaky.id = "flaky";
  auto pp = p;
  flaky.start = [pp](caf::event_based_actor* sup) -> caf::actor {
    if (pp->attempts["flaky"]++ == 0)
      throw std::runtime_error("not yet");
    return sup->spawn(worker, pp, "flaky", false);
  };
  auto sup =
      start_sup("root", flags_of(restart_strategy::one_for_one, 3), {flaky, worker_spec(p, "b")});
  CAF_CHECK_EQUAL(p->attempts["flaky"], 2);
  CAF_CHECK_EQUAL(p->starts["flaky"], 1);
  CAF_CHECK_EQUAL(p->starts["b"], 1);
  CAF_REQUIRE_EQUAL(p->exits.size(), 1u);
  CAF_CHECK_EQUAL(p->exits[0].child, "flaky");
  CAF_CHECK(contains(p->exits[0].reason, "start_failed"));
  CAF_CHECK(contains(p->exits[0].reason, "not yet"));
  CAF_CHECK(p->exits[0].restarting);
  CAF_CHECK_EQUAL(p->events, strings({"exited root/flaky restarting", "started root/flaky 1",
                                      "started root/b 0"}));
  auto xs = which(sup);
  CAF_CHECK_EQUAL(
      xs, std::vector<child_status>({child_status{"flaky", true, 1}, child_status{"b", true, 0}}));
}

CAF_TEST(a_start_function_that_always_fails_exhausts_intensity) {
  child_spec broken;
  broken.id = "broken";
  broken.start = [](caf::event_based_actor*) { return caf::actor{}; };
  auto sup = start_sup("root", flags_of(restart_strategy::one_for_all, 2),
                       {worker_spec(p, "a"), broken, worker_spec(p, "c")});
  watch(sup, "root"); // already gone: the down_msg comes at once
  // a started, broken failed 3 times (2 restarts allowed), c never started.
  CAF_CHECK_EQUAL(count_events("exited root/broken restarting"), 2u);
  CAF_CHECK_EQUAL(count_events("exited root/broken final"), 1u);
  CAF_CHECK_EQUAL(p->starts["c"], 0);
  CAF_CHECK_EQUAL(count_log("exit:a"), p->starts["a"]);
  CAF_REQUIRE_EQUAL(p->downs.count("root"), 1u);
  CAF_CHECK(is_intensity_exceeded(p->downs["root"]));
  CAF_CHECK(contains(describe_reason(p->downs["root"]), "start_failed"));
}

CAF_TEST(an_exit_during_a_restart_is_handled_after_it) {
  start_sup("root", flags_of(restart_strategy::rest_for_one, 10),
            {worker_spec(p, "a"), worker_spec(p, "b"),
             worker_spec(p, "slow", restart_type::permanent, 1000ms, true)});
  crash("b"); // rest_for_one: stop slow (takes 1 s), restart b and slow
  CAF_CHECK_EQUAL(p->starts["b"], 1);
  crash("a"); // not part of that restart: handled once it is done
  CAF_CHECK_EQUAL(p->starts["a"], 1);
  advance_time(1000ms); // slow is killed, b and slow restart, then a's turn
  sched.run();
  CAF_CHECK_EQUAL(p->starts["b"], 2);
  CAF_CHECK_EQUAL(p->starts["a"], 1); // waits for b and slow to stop again
  advance_time(1000ms);
  sched.run();
  CAF_CHECK_EQUAL(p->starts["a"], 2);
  CAF_CHECK_EQUAL(p->starts["b"], 3);
  CAF_CHECK_EQUAL(p->starts["slow"], 3);
  CAF_CHECK_EQUAL(count_log("exit:slow:exit_reason(kill)"), 2u);
}

CAF_TEST_FIXTURE_SCOPE_END()
