// Invalid stage graphs: unrouted outcomes, unknown targets, unreachable
// ("unwired", field report incident 11) stages, joins, sinks and cycles.
#define CAF_SUITE config_graph_errors

#include "config/config_loader.hpp"
#include "tests/config/config_fixture.hpp"

#include <caf/test/unit_test.hpp>

using namespace turing::config;
using turing::config::test::config_fixture;

// Requires an error on `key` mentioning `phrase` at line `at_line`.
#define CHECK_ERROR(result, key, at_line, phrase)                                                  \
  do {                                                                                             \
    CAF_CHECK(!(result).ok());                                                                     \
    auto* found_ = find_error((result), (key), (phrase));                                          \
    CAF_REQUIRE(found_ != nullptr);                                                                \
    CAF_CHECK_EQUAL(found_->where.line, (at_line));                                                \
  } while (false)

namespace {

// Two upstream stages fan out from `start`; `compare` joins them. Line 18 is
// the join list, line 14 b's routes.
constexpr std::string_view join_head = R"(sinks = ["done"]
[stages.start]
handler = "builtin"
entry = true
function = "owl.create_entity"
routes = { created = ["a", "b"] }
[stages.a]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "compare" }
[stages.b]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "done" }
[stages.compare]
handler = "builtin"
function = "owl.compare_proposals"
join = ["a", "b"]
routes = { agree = "done", disagree = "done" }
)";

} // namespace

CAF_TEST_FIXTURE_SCOPE(config_graph_error_tests, config_fixture)

CAF_TEST(unrouted_outcome_is_rejected) {
  auto r = load(R"(sinks = ["done"]
[stages.lucy]
handler = "script"
entry = true
command = ["lucy.sh"]
outcomes = ["passed", "rejected"]
routes = { passed = "done" }
)");
  CHECK_ERROR(r, "stages.lucy.routes", 7, "outcome 'rejected' is not routed");
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(unrouted_builtin_outcome_from_the_catalog_is_rejected) {
  auto r = load(R"(sinks = ["done"]
[stages.cmp]
handler = "builtin"
entry = true
function = "owl.compare_proposals"
routes = { agree = "done" }
)");
  CHECK_ERROR(r, "stages.cmp.routes", 6, "outcome 'disagree' is not routed");
}

CAF_TEST(route_for_an_undeclared_outcome_is_rejected) {
  auto r = load(R"(sinks = ["done"]
[stages.lucy]
handler = "script"
entry = true
command = ["lucy.sh"]
outcomes = ["passed", "rejected"]
routes = { passed = "done", rejectd = "done" }
)");
  CHECK_ERROR(r, "stages.lucy.routes.rejectd", 7, "'rejectd' is not an outcome of stage 'lucy'");
  CAF_CHECK(contains(find_error(r, "stages.lucy.routes.rejectd", "")->message,
                     "did you mean 'rejected'?"));
  CHECK_ERROR(r, "stages.lucy.routes", 7, "outcome 'rejected' is not routed");
}

CAF_TEST(route_to_unknown_stage_is_rejected_with_a_suggestion) {
  auto r = load(R"(sinks = ["done"]
[stages.lucy]
handler = "script"
entry = true
command = ["lucy.sh"]
outcomes = ["passed"]
routes = { passed = "alam" }
[stages.alma]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.lucy.routes.passed", 7, "unknown route target 'alam'");
  auto* e = find_error(r, "stages.lucy.routes.passed", "");
  CAF_CHECK_EQUAL(e->where.column, 21);
  CAF_CHECK(contains(e->message, "did you mean 'alma'?"));
  // Reachability assumes the typo meant alma: one mistake, one error.
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(unreachable_stage_is_rejected) {
  auto r = load(R"(sinks = ["done"]
[stages.lucy]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
[stages.forgotten]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.forgotten", 7, "stage 'forgotten' is unreachable");
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(no_entry_stage_is_rejected) {
  auto r = load(R"(sinks = ["done"]
[stages.lucy]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages", 2, "no entry stage");

  r = load("sinks = []\n");
  CHECK_ERROR(r, "stages", 1, "no stages declared");
}

CAF_TEST(valid_join_loads) {
  std::string text{join_head};
  text.replace(text.find("routes = { ok = \"done\" }"), 24, "routes = { ok = \"compare\" }");
  auto r = load(text);
  for (const auto& e : r.errors)
    CAF_MESSAGE(e.to_string());
  CAF_CHECK(r.ok());
}

CAF_TEST(join_naming_a_stage_that_does_not_route_to_it_is_rejected) {
  auto r = load(join_head);
  CHECK_ERROR(r, "stages.compare.join", 18, "'b' does not route to 'compare'");
  CAF_CHECK_EQUAL(find_error(r, "stages.compare.join", "")->where.column, 14);
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(stage_routing_to_a_join_outside_its_list_is_rejected) {
  auto r = load(R"(sinks = ["done"]
[stages.start]
handler = "builtin"
entry = true
function = "owl.compare_proposals"
routes = { agree = ["a", "b"], disagree = "c" }
[stages.a]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "compare" }
[stages.b]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "compare" }
[stages.c]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "compare" }
[stages.compare]
handler = "builtin"
function = "owl.compare_proposals"
join = ["a", "b", "ghost"]
routes = { agree = "done", disagree = "done" }
)");
  CHECK_ERROR(r, "stages.c.routes.ok", 18, "'compare' is a join stage and 'c' is not in its join");
  CHECK_ERROR(r, "stages.compare.join", 22, "unknown stage 'ghost' in join");
}

CAF_TEST(join_stage_cannot_be_an_entry_or_join_one_stage) {
  auto r = load(R"(sinks = ["done"]
[stages.a]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "j" }
[stages.j]
handler = "builtin"
entry = true
function = "owl.normalize"
join = ["a"]
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "stages.j.entry", 9, "a join stage cannot be an entry stage");
  CHECK_ERROR(r, "stages.j.join", 11, "at least two upstream stages");
}

CAF_TEST(stage_that_is_also_a_sink_is_rejected) {
  auto r = load(R"(sinks = ["done", "lucy"]
[stages.lucy]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "sinks", 1, "'lucy' is both a stage and a sink");
  CAF_CHECK_EQUAL(find_error(r, "sinks", "both")->where.column, 18);

  r = load(R"(sinks = ["done", "done"]
[stages.lucy]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "sinks", 1, "sink 'done' is declared twice");
}

CAF_TEST(sink_never_routed_to_is_rejected) {
  auto r = load(R"(sinks = ["done", "unused"]
[stages.lucy]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "done" }
)");
  CHECK_ERROR(r, "sinks", 1, "sink 'unused' is never routed to");
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(routing_to_the_dead_letter_sink_or_to_itself_is_rejected) {
  auto r = load(R"(sinks = ["done"]
[stages.lucy]
handler = "builtin"
entry = true
function = "owl.compare_proposals"
routes = { agree = ["done", "done"], disagree = "dead" }
[stages.loop]
handler = "builtin"
entry = true
function = "owl.normalize"
routes = { ok = "loop" }
)");
  CHECK_ERROR(r, "stages.lucy.routes.disagree", 6, "'dead' is the runtime's dead-letter sink");
  CHECK_ERROR(r, "stages.lucy.routes.agree", 6, "'done' is listed twice");
  CHECK_ERROR(r, "stages.loop.routes.ok", 11, "stage 'loop' routes to itself");
}

CAF_TEST(cycle_is_rejected_naming_the_cycle) {
  auto r = load(R"(sinks = ["done"]
[stages.a]
handler = "builtin"
entry = true
function = "owl.compare_proposals"
routes = { agree = "b", disagree = "done" }
[stages.b]
handler = "builtin"
function = "owl.compare_proposals"
routes = { agree = "c", disagree = "done" }
[stages.c]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "b" }
)");
  CHECK_ERROR(r, "stages.b", 7, "routes form a cycle: b -> c -> b");
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST(longer_cycle_through_fan_out_is_named_once) {
  auto r = load(R"(sinks = ["done"]
[stages.a]
handler = "builtin"
entry = true
function = "owl.create_entity"
routes = { created = ["b", "done"] }
[stages.b]
handler = "builtin"
function = "owl.compare_proposals"
routes = { agree = "c", disagree = "d" }
[stages.c]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "d" }
[stages.d]
handler = "builtin"
function = "owl.normalize"
routes = { ok = "a" }
)");
  CHECK_ERROR(r, "stages.a", 2, "routes form a cycle: a -> b -> c -> d -> a");
  CAF_CHECK_EQUAL(r.errors.size(), 1u);
}

CAF_TEST_FIXTURE_SCOPE_END()
