// Restart strategies and restart types of turing's supervisors, run on CAF's
// deterministic test coordinator.
#define CAF_SUITE supervisor
#include "tests/supervision/supervisor_fixture.hpp"

using namespace turing;
using namespace turing::supervision;
using namespace turing::supervision::testing;
using strings = std::vector<std::string>;

namespace {

supervisor_flags flags_of(restart_strategy strategy) {
  supervisor_flags flags;
  flags.strategy = strategy;
  flags.intensity = 10;
  flags.period = 5000ms;
  return flags;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(supervisor_tests, fixture)

CAF_TEST(children_start_in_order_and_report_to_the_observer) {
  start_sup("root", flags_of(restart_strategy::one_for_one),
            {worker_spec(p, "a"), worker_spec(p, "b"), worker_spec(p, "c")});
  CAF_CHECK_EQUAL(log_of("start:"), strings({"start:a", "start:b", "start:c"}));
  CAF_CHECK_EQUAL(p->events, strings({"started root/a 0", "started root/b 0", "started root/c 0"}));
}

CAF_TEST(one_for_one_restarts_only_the_failed_child) {
  start_sup("root", flags_of(restart_strategy::one_for_one),
            {worker_spec(p, "a"), worker_spec(p, "b"), worker_spec(p, "c")});
  auto old_b = child("b");
  crash("b");
  CAF_CHECK_EQUAL(p->starts["a"], 1);
  CAF_CHECK_EQUAL(p->starts["b"], 2);
  CAF_CHECK_EQUAL(p->starts["c"], 1);
  CAF_CHECK_EQUAL(log_of("exit:"), strings({"exit:b:system_error(runtime_error, (\"crash b\"))"}));
  CAF_CHECK(child("b") != old_b);
  CAF_CHECK_EQUAL(count_events("exited root/b restarting"), 1u);
  CAF_CHECK_EQUAL(count_events("started root/b 1"), 1u);
}

CAF_TEST(a_throwing_handler_is_a_crash) {
  start_sup("root", flags_of(restart_strategy::one_for_one), {worker_spec(p, "a")});
  self->send(child("a"), throw_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(p->starts["a"], 2);
  CAF_REQUIRE_EQUAL(p->exits.size(), 1u);
  CAF_CHECK_EQUAL(p->exits[0].reason, "system_error(runtime_error)");
  CAF_CHECK(p->exits[0].restarting);
}

CAF_TEST(one_for_all_restarts_every_child) {
  start_sup("root", flags_of(restart_strategy::one_for_all),
            {worker_spec(p, "a"), worker_spec(p, "b"), worker_spec(p, "c")});
  p->log.clear();
  crash("b");
  // b crashed; c then a are stopped (reverse start order); all start again in
  // start order.
  CAF_CHECK_EQUAL(p->log, strings({
                              "exit:b:system_error(runtime_error, (\"crash b\"))",
                              "exit:c:exit_reason(user_shutdown)",
                              "exit:a:exit_reason(user_shutdown)",
                              "start:a",
                              "start:b",
                              "start:c",
                          }));
  CAF_CHECK_EQUAL(p->starts["a"], 2);
  CAF_CHECK_EQUAL(p->starts["b"], 2);
  CAF_CHECK_EQUAL(p->starts["c"], 2);
  CAF_CHECK_EQUAL(count_events("exited root/a restarting"), 1u);
  CAF_CHECK_EQUAL(count_events("exited root/c restarting"), 1u);
}

CAF_TEST(rest_for_one_restarts_the_failed_child_and_the_ones_after_it) {
  start_sup("root", flags_of(restart_strategy::rest_for_one),
            {worker_spec(p, "a"), worker_spec(p, "b"), worker_spec(p, "c"), worker_spec(p, "d")});
  p->log.clear();
  crash("b");
  CAF_CHECK_EQUAL(p->log, strings({
                              "exit:b:system_error(runtime_error, (\"crash b\"))",
                              "exit:d:exit_reason(user_shutdown)",
                              "exit:c:exit_reason(user_shutdown)",
                              "start:b",
                              "start:c",
                              "start:d",
                          }));
  CAF_CHECK_EQUAL(p->starts["a"], 1);
  CAF_CHECK_EQUAL(p->starts["b"], 2);
  CAF_CHECK_EQUAL(p->starts["c"], 2);
  CAF_CHECK_EQUAL(p->starts["d"], 2);
}

CAF_TEST(permanent_child_restarted_after_normal_exit) {
  start_sup("root", flags_of(restart_strategy::one_for_one),
            {worker_spec(p, "a", restart_type::permanent)});
  finish("a");
  CAF_CHECK_EQUAL(p->starts["a"], 2);
  CAF_REQUIRE_EQUAL(p->exits.size(), 1u);
  CAF_CHECK_EQUAL(p->exits[0].reason, "normal");
  CAF_CHECK(p->exits[0].restarting);
}

CAF_TEST(transient_child_not_restarted_after_normal_exit_but_after_crash) {
  auto sup = start_sup("root", flags_of(restart_strategy::one_for_one),
                       {worker_spec(p, "t", restart_type::transient)});
  crash("t");
  CAF_CHECK_EQUAL(p->starts["t"], 2);
  CAF_CHECK_EQUAL(count_events("exited root/t restarting"), 1u);
  finish("t");
  CAF_CHECK_EQUAL(p->starts["t"], 2);
  CAF_CHECK_EQUAL(count_events("exited root/t final"), 1u);
  // It stays known to the supervisor, just not running.
  auto xs = which(sup);
  CAF_REQUIRE_EQUAL(xs.size(), 1u);
  CAF_CHECK_EQUAL(xs[0].id, "t");
  CAF_CHECK_EQUAL(xs[0].alive, false);
}

CAF_TEST(temporary_child_never_restarted) {
  auto sup = start_sup("root", flags_of(restart_strategy::one_for_one),
                       {worker_spec(p, "x", restart_type::temporary),
                        worker_spec(p, "y", restart_type::temporary), worker_spec(p, "z")});
  crash("x");
  finish("y");
  CAF_CHECK_EQUAL(p->starts["x"], 1);
  CAF_CHECK_EQUAL(p->starts["y"], 1);
  CAF_CHECK_EQUAL(count_events("exited root/x final"), 1u);
  CAF_CHECK_EQUAL(count_events("exited root/y final"), 1u);
  // Removed from the supervisor.
  auto xs = which(sup);
  CAF_REQUIRE_EQUAL(xs.size(), 1u);
  CAF_CHECK_EQUAL(xs[0].id, "z");
}

CAF_TEST(temporary_siblings_are_stopped_and_dropped_by_one_for_all) {
  auto sup = start_sup("root", flags_of(restart_strategy::one_for_all),
                       {worker_spec(p, "a"), worker_spec(p, "tmp", restart_type::temporary)});
  crash("a");
  CAF_CHECK_EQUAL(p->starts["a"], 2);
  CAF_CHECK_EQUAL(p->starts["tmp"], 1);
  CAF_CHECK_EQUAL(count_events("exited root/tmp final"), 1u);
  auto xs = which(sup);
  CAF_REQUIRE_EQUAL(xs.size(), 1u);
  CAF_CHECK_EQUAL(xs[0].id, "a");
}

CAF_TEST(which_children_reports_status) {
  auto sup = start_sup("root", flags_of(restart_strategy::one_for_one),
                       {worker_spec(p, "a"), worker_spec(p, "t", restart_type::transient)});
  crash("a");
  crash("a");
  finish("t");
  auto xs = which(sup);
  CAF_CHECK_EQUAL(
      xs, std::vector<child_status>({child_status{"a", true, 2}, child_status{"t", false, 0}}));
}

CAF_TEST_FIXTURE_SCOPE_END()
