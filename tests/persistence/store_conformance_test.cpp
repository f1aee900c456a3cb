// The store conformance suite: every case runs unchanged against memory_store
// and pg_store (compiled twice, see CMakeLists.txt), so their semantics agree.
#ifdef TURING_CONFORMANCE_POSTGRES
#define CAF_SUITE pg_store_conformance
#else
#define CAF_SUITE memory_store_conformance
#endif
#include "tests/persistence/store_fixture.hpp"
#include "tests/support/incompressible_text.hpp"

#include <algorithm>
#include <caf/test/unit_test.hpp>

using namespace turing::persistence;
using namespace std::chrono_literals;

namespace {

struct fixture : turing::testing::store_fixture {
  int64_t enqueue_n(const std::string& stage, int n, int max_attempts = 3) {
    enqueue_request r;
    r.stage = stage;
    r.label = "test";
    r.max_attempts = max_attempts;
    for (int i = 0; i < n; ++i)
      r.items.push_back({"k" + std::to_string(i), json{{"n", i}}});
    return s.enqueue(r).run_id;
  }
  std::vector<claimed_message> claim(const std::string& stage, int limit,
                                     const std::string& node = "node-a", millis ttl = 30s) {
    return s.claim({stage, node, limit, ttl});
  }
  completion done(const claimed_message& m, std::vector<delivery> deliveries,
                  const std::string& outcome = "ok", const std::string& node = "node-a") {
    completion c;
    c.fence = m.fencing();
    c.attempt = m.attempt;
    c.node = node;
    c.started_at = m.started_at;
    c.outcome = outcome;
    c.output = json{{"from", m.stage}, {"n", m.payload.value("n", -1)}};
    c.deliveries = std::move(deliveries);
    return c;
  }
  /// The pump's way: deliveries carry no payload; the store derives each one.
  completion derived(const claimed_message& m, json output, std::vector<delivery> deliveries) {
    auto c = done(m, std::move(deliveries));
    c.output = std::move(output);
    c.derived_payloads = true;
    for (auto& d : c.deliveries)
      d.payload = json();
    return c;
  }
  failure failed(const claimed_message& m, millis retry_after = 0ms, bool retryable = true) {
    failure f;
    f.fence = m.fencing();
    f.attempt = m.attempt;
    f.node = "node-a";
    f.started_at = m.started_at;
    f.result = attempt_result::failed;
    f.error = "boom";
    f.retry_after = retry_after;
    f.retryable = retryable;
    return f;
  }
  static delivery to_stage(const std::string& stage) {
    delivery d;
    d.type = delivery::kind::stage;
    d.target = stage;
    d.payload = json{{"via", stage}};
    return d;
  }
  static delivery to_sink(const std::string& sink, json result = json{{"ok", true}}) {
    delivery d;
    d.type = delivery::kind::sink;
    d.target = sink;
    d.payload = std::move(result);
    return d;
  }
  static delivery to_join(const std::string& stage, std::vector<std::string> inputs, json payload) {
    delivery d;
    d.type = delivery::kind::join;
    d.target = stage;
    d.join_inputs = std::move(inputs);
    d.payload = std::move(payload);
    return d;
  }
  // By value: CAF's check macros bind their arguments to references, which
  // must not point into a temporary optional or vector.
  run_status run_of(int64_t id) { return s.run(id).value(); }
  item_record item_of(int64_t run_id, size_t i) { return s.items(run_id).at(i); }
  stage_counts counts_of(const std::string& stage) {
    for (auto& c : s.counts())
      if (c.stage == stage)
        return c;
    return stage_counts{};
  }
  /// Microseconds from the virtual clock's start to `t` (printable in a failed check).
  static int64_t us_since_start(time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t - turing::testing::virtual_epoch)
        .count();
  }
  /// `n` items keyed "<prefix>0".., at `stage`, in a run of their own.
  int64_t enqueue_keyed(const std::string& stage, const std::string& prefix, int n,
                        int max_attempts = 1) {
    enqueue_request r;
    r.stage = stage;
    r.label = prefix;
    r.max_attempts = max_attempts;
    for (int i = 0; i < n; ++i)
      r.items.push_back({prefix + std::to_string(i), json{{"n", i}}});
    return s.enqueue(r).run_id;
  }
  /// Fails `m` for good with `error`: a dead letter.
  void kill(const claimed_message& m, const std::string& error) {
    auto f = failed(m, 0ms, false);
    f.error = error;
    s.fail({f});
  }
  static dead_filter by_run(int64_t run_id) {
    dead_filter f;
    f.run_id = run_id;
    return f;
  }
  /// True when `f` throws store_error(invalid_argument).
  template <class F> static bool refuses_as_invalid(F f) {
    try {
      f();
    } catch (const store_error& e) {
      return e.code() == store_errc::invalid_argument;
    }
    return false;
  }
  std::vector<std::string> violations() {
    auto out = s.check_invariants();
    for (const auto& v : out)
      CAF_MESSAGE("invariant violated: " << v);
    return out;
  }
  std::vector<attempt_record> attempts_with(attempt_result r) {
    auto all = s.attempts(std::nullopt);
    all.erase(std::remove_if(all.begin(), all.end(), [r](const auto& a) { return a.result != r; }),
              all.end());
    return all;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(store_conformance, fixture)

CAF_TEST(enqueue_creates_a_run_whose_pending_count_is_its_items) {
  auto run_id = enqueue_n("lucy", 5);
  auto run = s.run(run_id);
  CAF_REQUIRE(run.has_value());
  CAF_CHECK_EQUAL(run->items_total, 5);
  CAF_CHECK_EQUAL(run->pending, 5);
  CAF_CHECK(!run->finished_at.has_value());
  CAF_CHECK_EQUAL(run->entry_stage, "lucy");
  CAF_CHECK_EQUAL(counts_of("lucy").ready, 5);
}

CAF_TEST(enqueue_skips_items_whose_key_exists) {
  enqueue_n("lucy", 3);
  enqueue_request again;
  again.stage = "lucy";
  again.items = {{"k1", json{{"n", 1}}}, {"k9", json{{"n", 9}}}, {std::nullopt, json{{"n", 10}}}};
  auto r = s.enqueue(again);
  CAF_CHECK_EQUAL(r.enqueued, 2);
  CAF_CHECK_EQUAL(r.duplicates, 1);
  CAF_CHECK_EQUAL(counts_of("lucy").ready, 5);
  CAF_CHECK_EQUAL(run_of(r.run_id).items_total, 2);
}

CAF_TEST(enqueue_can_append_to_an_existing_run) {
  auto run_id = enqueue_n("lucy", 2);
  enqueue_request more;
  more.stage = "lucy";
  more.run_id = run_id;
  more.items = {{"x1", json::object()}, {"x2", json::object()}};
  auto r = s.enqueue(more);
  CAF_CHECK_EQUAL(r.run_id, run_id);
  CAF_CHECK_EQUAL(run_of(run_id).items_total, 4);
  CAF_CHECK_EQUAL(run_of(run_id).pending, 4);
  more.run_id = 999999;
  CAF_CHECK_EQUAL(s.runs(false).size(), 1u);
  bool refused = false;
  try {
    s.enqueue(more);
  } catch (const store_error& e) {
    refused = e.code() == store_errc::invalid_argument;
  }
  CAF_CHECK(refused);
}

CAF_TEST(claim_takes_the_oldest_up_to_its_limit_and_bumps_epochs) {
  enqueue_n("lucy", 5);
  auto first = claim("lucy", 3);
  CAF_REQUIRE_EQUAL(first.size(), 3u);
  for (const auto& m : first) {
    CAF_CHECK_EQUAL(m.attempt, 1);
    CAF_CHECK_EQUAL(m.epoch, 1);
    CAF_CHECK_EQUAL(m.stage, "lucy");
  }
  CAF_CHECK_EQUAL(first[0].payload["n"], 0);
  CAF_CHECK_EQUAL(first[2].payload["n"], 2);
  auto rest = claim("lucy", 10);
  CAF_CHECK_EQUAL(rest.size(), 2u);
  CAF_CHECK(claim("lucy", 10).empty());
  CAF_CHECK(claim("alma", 10).empty());
  auto c = counts_of("lucy");
  CAF_CHECK_EQUAL(c.running, 5);
  CAF_CHECK_EQUAL(c.ready, 0);
  CAF_CHECK(c.oldest_started_at.has_value());
}

CAF_TEST(a_claim_stays_within_its_byte_budget_but_always_takes_one) {
  enqueue_request r;
  r.stage = "read";
  r.label = "test";
  r.max_attempts = 3;
  // Stored sizes stay near 100 KB.
  for (int i = 0; i < 4; ++i)
    r.items.push_back({"k" + std::to_string(i),
                       json{{"document", turing::testing::incompressible_text(100'000, i + 1)}}});
  s.enqueue(r);
  claim_request budget{"read", "node-a", 10, 30s, 250'000};
  CAF_CHECK_EQUAL(s.claim(budget).size(), 2u); // ~200 KB fit 250 KB, a third would not
  budget.max_bytes = 150'000;
  CAF_CHECK_EQUAL(s.claim(budget).size(), 1u); // a second would pass 150 KB
  budget.max_bytes = 1;
  CAF_CHECK_EQUAL(s.claim(budget).size(), 1u); // the first, whatever its size
  enqueue_request more = r;
  more.items.clear();
  for (int i = 4; i < 6; ++i)
    more.items.push_back({"k" + std::to_string(i), json{{"n", i}}});
  s.enqueue(more);
  budget.max_bytes = 0;
  CAF_CHECK_EQUAL(s.claim(budget).size(), 2u); // no budget: what is left
}

CAF_TEST(completion_routes_the_output_to_every_target_stage) {
  auto run_id = enqueue_n("carl", 1);
  auto m = claim("carl", 1).at(0);
  auto r = s.complete({done(m, {to_stage("clara_a"), to_stage("clara_b")}, "created")});
  CAF_CHECK(r.at(0) == fence_result::applied);
  CAF_CHECK_EQUAL(counts_of("carl").done, 1);
  auto a = claim("clara_a", 5);
  auto b = claim("clara_b", 5);
  CAF_REQUIRE_EQUAL(a.size(), 1u);
  CAF_REQUIRE_EQUAL(b.size(), 1u);
  CAF_CHECK_EQUAL(a[0].payload["via"], "clara_a");
  CAF_CHECK_EQUAL(a[0].item_id, m.item_id);
  CAF_CHECK_EQUAL(a[0].run_id, run_id);
  CAF_CHECK_EQUAL(run_of(run_id).pending, 1);
  auto items = s.items(run_id);
  CAF_CHECK_EQUAL(items.at(0).open_branches, 2);
  auto completed = attempts_with(attempt_result::completed);
  CAF_REQUIRE_EQUAL(completed.size(), 1u);
  CAF_CHECK_EQUAL(completed[0].outcome, "created");
  CAF_CHECK_EQUAL(completed[0].node, "node-a");
  CAF_CHECK(completed[0].finished_at >= completed[0].started_at);
}

CAF_TEST(reaching_a_sink_finishes_the_item_and_the_run) {
  auto run_id = enqueue_n("commit", 2);
  auto ms = claim("commit", 2);
  s.complete({done(ms[0], {to_sink("committed", json{{"domain", "technology"}})})});
  CAF_CHECK_EQUAL(run_of(run_id).pending, 1);
  CAF_CHECK(!run_of(run_id).finished());
  s.complete({done(ms[1], {to_sink("rejected")})});
  auto run = s.run(run_id);
  CAF_CHECK_EQUAL(run->pending, 0);
  CAF_CHECK(run->finished_at.has_value());
  auto sinks = s.sink_counts(run_id);
  CAF_REQUIRE_EQUAL(sinks.size(), 2u);
  CAF_CHECK_EQUAL(sinks[0].sink, "committed");
  CAF_CHECK_EQUAL(sinks[0].items, 1);
  auto items = s.items(run_id);
  CAF_CHECK_EQUAL(items[0].result["domain"], "technology");
  CAF_CHECK(items[0].finished);
  CAF_CHECK(s.runs(true).empty());
}

CAF_TEST(result_counts_group_a_sinks_results_by_a_field) {
  auto run_id = enqueue_n("commit", 4);
  auto ms = claim("commit", 4);
  s.complete({done(ms[0], {to_sink("committed", json{{"domain", "technology"}})}),
              done(ms[1], {to_sink("committed", json{{"domain", "technology"}})}),
              done(ms[2], {to_sink("committed", json{{"domain", "data_and_analytics"}})}),
              done(ms[3], {to_sink("merged", json{{"domain", "technology"}})})});
  auto counts = s.result_counts(run_id, "committed", "domain");
  CAF_REQUIRE_EQUAL(counts.size(), 2u);
  CAF_CHECK_EQUAL(counts[0].sink, "technology");
  CAF_CHECK_EQUAL(counts[0].items, 2);
  CAF_CHECK_EQUAL(counts[1].sink, "data_and_analytics");
  CAF_CHECK_EQUAL(counts[1].items, 1);
}

CAF_TEST(a_batch_of_completions_applies_each_in_one_call) {
  auto run_id = enqueue_n("lucy", 20);
  auto ms = claim("lucy", 20);
  std::vector<completion> batch;
  for (const auto& m : ms)
    batch.push_back(done(m, {to_stage("alma")}, "passed"));
  auto r = s.complete(batch);
  CAF_CHECK_EQUAL(std::count(r.begin(), r.end(), fence_result::applied), 20);
  CAF_CHECK_EQUAL(counts_of("alma").ready, 20);
  CAF_CHECK_EQUAL(run_of(run_id).pending, 20);
}

CAF_TEST(a_completion_claims_up_to_its_limit_of_the_messages_it_hands_off) {
  auto run_id = enqueue_n("carl", 3);
  auto carl = claim("carl", 3);
  advance(20ms);
  handoff_claims claims{"node-b", 5000ms, {{"clara_a", 2}}};
  auto out = s.complete_claiming({done(carl[0], {to_stage("clara_a"), to_stage("clara_b")}),
                                  done(carl[1], {to_stage("clara_a")}),
                                  done(carl[2], {to_stage("clara_a")})},
                                 claims);
  CAF_CHECK_EQUAL(std::count(out.results.begin(), out.results.end(), fence_result::applied), 3);
  // The first two of clara_a's three, running under node-b's lease as a
  // claim leaves them; clara_b (no room) and the third stay ready.
  CAF_REQUIRE_EQUAL(out.claimed.size(), 2u);
  for (const auto& m : out.claimed) {
    CAF_CHECK_EQUAL(m.stage, "clara_a");
    CAF_CHECK_EQUAL(m.epoch, 1);
    CAF_CHECK_EQUAL(m.attempt, 1);
    CAF_CHECK_EQUAL(m.lost, 0);
    CAF_CHECK_EQUAL(m.run_id, run_id);
    CAF_CHECK_EQUAL(m.payload["via"], "clara_a");
#ifdef TURING_FIXTURE_VIRTUAL_CLOCK
    CAF_CHECK_EQUAL(us_since_start(m.started_at), 20000); // the store's time of the handoff
#endif
  }
  CAF_CHECK_EQUAL(out.claimed[0].item_id, carl[0].item_id);
  CAF_CHECK_EQUAL(out.claimed[1].item_id, carl[1].item_id);
  CAF_CHECK_EQUAL(counts_of("clara_a").running, 2);
  CAF_CHECK_EQUAL(counts_of("clara_a").ready, 1);
  auto rest = claim("clara_a", 5);
  CAF_REQUIRE_EQUAL(rest.size(), 1u);
  CAF_CHECK_EQUAL(rest[0].item_id, carl[2].item_id);
  CAF_CHECK_EQUAL(claim("clara_b", 5).size(), 1u);
  // node-b holds their leases: its heartbeat keeps them, and their results
  // are fenced by the epoch they were handed off at.
  CAF_CHECK(
      s.heartbeat("node-b", {out.claimed[0].fencing(), out.claimed[1].fencing()}, 5000ms).empty());
  auto finished = s.complete({done(out.claimed[0], {to_sink("committed")}, "ok", "node-b"),
                              done(out.claimed[1], {to_sink("committed")}, "ok", "node-b")});
  CAF_CHECK_EQUAL(std::count(finished.begin(), finished.end(), fence_result::applied), 2);
  auto completed = attempts_with(attempt_result::completed);
  CAF_REQUIRE_EQUAL(completed.size(), 5u);
  CAF_CHECK_EQUAL(completed[3].node, "node-b");
  CAF_CHECK_EQUAL(completed[3].attempt, 1);
  CAF_CHECK(violations().empty());
}

CAF_TEST(a_handed_off_claim_expires_and_is_rescued_like_any_lease) {
  enqueue_n("carl", 1);
  auto carl = claim("carl", 1);
  auto out =
      s.complete_claiming({done(carl[0], {to_stage("alma")})}, {"node-b", 1000ms, {{"alma", 5}}});
  CAF_REQUIRE_EQUAL(out.claimed.size(), 1u);
  advance(1500ms); // node-b died before it ran it
  auto rescued = s.rescue_expired("node-c");
  CAF_REQUIRE_EQUAL(rescued.size(), 1u);
  CAF_CHECK_EQUAL(rescued[0].previous_owner, "node-b");
  auto again = claim("alma", 1);
  CAF_REQUIRE_EQUAL(again.size(), 1u);
  CAF_CHECK_EQUAL(again[0].epoch, 2);
  CAF_CHECK_EQUAL(again[0].lost, 1);
  // node-b's late result is fenced out.
  CAF_CHECK(s.complete({done(out.claimed[0], {to_sink("committed")}, "ok", "node-b")}).at(0) ==
            fence_result::stale);
  CAF_CHECK(violations().empty());
}

CAF_TEST(a_claiming_completion_retried_after_an_in_doubt_commit_hands_over_what_it_claimed) {
  enqueue_n("carl", 1);
  auto carl = claim("carl", 1);
  handoff_claims claims{"node-a", 30s, {{"alma", 5}}};
  auto first = s.complete_claiming({done(carl[0], {to_stage("alma")})}, claims);
  CAF_REQUIRE_EQUAL(first.claimed.size(), 1u);
  // Its caller was told the connection was lost: the retry is applied
  // already, and hands over the message the first try claimed, once.
  auto retry = s.complete_claiming({done(carl[0], {to_stage("alma")})}, claims);
  CAF_CHECK(retry.results.at(0) == fence_result::applied);
  CAF_REQUIRE_EQUAL(retry.claimed.size(), 1u);
  CAF_CHECK_EQUAL(retry.claimed[0].id, first.claimed[0].id);
  CAF_CHECK_EQUAL(retry.claimed[0].epoch, 1);
  // Not to another node, and not beyond the retry's own limit.
  CAF_CHECK(s.complete_claiming({done(carl[0], {to_stage("alma")})}, {"node-b", 30s, {{"alma", 5}}})
                .claimed.empty());
  CAF_CHECK(s.complete_claiming({done(carl[0], {to_stage("alma")})}, {"node-a", 30s, {}})
                .claimed.empty());
  CAF_CHECK_EQUAL(counts_of("alma").running, 1);
  CAF_CHECK(violations().empty());
}

CAF_TEST(one_completion_twice_in_a_claiming_batch_hands_its_message_over_once) {
  enqueue_n("carl", 1);
  auto carl = claim("carl", 1);
  auto c = done(carl[0], {to_stage("alma")});
  auto out = s.complete_claiming({c, c}, {"node-a", 30s, {{"alma", 5}}});
  CAF_CHECK_EQUAL(std::count(out.results.begin(), out.results.end(), fence_result::applied), 2);
  CAF_CHECK_EQUAL(out.claimed.size(), 1u);
  CAF_CHECK_EQUAL(counts_of("alma").running, 1);
}

CAF_TEST(derived_payloads_are_claimed_with_their_handoff_and_joins_never_are) {
  enqueue_n("carl", 1);
  auto carl = claim("carl", 1);
  handoff_claims claims{"node-a", 30s, {{"clara_a", 5}, {"clara_b", 5}}};
  auto out = s.complete_claiming(
      {derived(carl[0], json{{"domain", "tech"}}, {to_stage("clara_a"), to_stage("clara_b")})},
      claims);
  CAF_REQUIRE_EQUAL(out.claimed.size(), 2u);
  CAF_CHECK_EQUAL(out.claimed[0].payload, (json{{"n", 0}, {"domain", "tech"}}));
  std::vector<std::string> inputs{"clara_a", "clara_b"};
  out = s.complete_claiming(
      {derived(out.claimed[0], json{{"verdict", "a"}}, {to_join("compare", inputs, json())}),
       derived(out.claimed[1], json{{"verdict", "b"}}, {to_join("compare", inputs, json())})},
      {"node-a", 30s, {{"compare", 5}}});
  CAF_CHECK(out.claimed.empty());
  auto joined = claim("compare", 5);
  CAF_REQUIRE_EQUAL(joined.size(), 1u);
  CAF_CHECK_EQUAL(joined[0].payload["clara_b"]["verdict"], "b");
  // A stale completion hands off nothing, so claims nothing.
  out = s.complete_claiming({done(carl[0], {to_stage("clara_a")})},
                            {"node-a", 30s, {{"clara_a", 5}}});
  CAF_CHECK(out.results.at(0) == fence_result::applied); // done under this epoch already
  CAF_CHECK(out.claimed.empty());
  CAF_CHECK_EQUAL(counts_of("clara_a").ready + counts_of("clara_a").running, 0);
  CAF_CHECK(violations().empty());
}

CAF_TEST(a_completion_with_a_stale_epoch_changes_nothing_and_is_recorded) {
  enqueue_n("alma", 1);
  auto old = claim("alma", 1, "node-a", 1000ms).at(0);
  advance(1500ms);
  auto rescued = s.rescue_expired("node-b");
  CAF_REQUIRE_EQUAL(rescued.size(), 1u);
  auto current = claim("alma", 1, "node-b").at(0);
  CAF_CHECK_EQUAL(current.epoch, old.epoch + 1);
  CAF_CHECK_EQUAL(current.attempt, 2);
  // The first owner was only slow: its result arrives now, fenced out.
  auto r = s.complete({done(old, {to_sink("committed")}, "passed", "node-a")});
  CAF_CHECK(r.at(0) == fence_result::stale);
  auto c = counts_of("alma");
  CAF_CHECK_EQUAL(c.running, 1);
  CAF_CHECK_EQUAL(c.done, 0);
  CAF_CHECK(s.sink_counts(std::nullopt).empty());
  auto late = attempts_with(attempt_result::late_result);
  CAF_REQUIRE_EQUAL(late.size(), 1u);
  CAF_CHECK_EQUAL(late[0].epoch, old.epoch);
  CAF_CHECK_EQUAL(late[0].node, "node-a");
  CAF_CHECK_EQUAL(late[0].outcome, "passed");
  // The current owner's completion still applies.
  CAF_CHECK(s.complete({done(current, {to_sink("committed")}, "passed", "node-b")}).at(0) ==
            fence_result::applied);
  CAF_CHECK_EQUAL(attempts_with(attempt_result::completed).size(), 1u);
}

CAF_TEST(a_batch_holding_one_message_under_two_epochs_hands_it_off_once) {
  // A pump whose result write failed keeps the completion and retries it;
  // meanwhile the lease expired, the message was rescued and re-claimed by
  // the same pump, so the retried batch holds its old epoch and its new one.
  enqueue_n("carl", 1);
  auto old = claim("carl", 1, "node-a", 1000ms).at(0);
  advance(1500ms);
  CAF_REQUIRE_EQUAL(s.rescue_expired("node-a").size(), 1u);
  auto current = claim("carl", 1, "node-a").at(0);
  CAF_REQUIRE_EQUAL(current.id, old.id);
  auto r = s.complete({done(old, {to_stage("clara_a"), to_stage("clara_b")}),
                       done(current, {to_stage("clara_a"), to_stage("clara_b")})});
  CAF_REQUIRE_EQUAL(r.size(), 2u);
  CAF_CHECK(r[0] == fence_result::stale);
  CAF_CHECK(r[1] == fence_result::applied);
  CAF_CHECK_EQUAL(counts_of("clara_a").ready, 1);
  CAF_CHECK_EQUAL(counts_of("clara_b").ready, 1);
  CAF_CHECK_EQUAL(attempts_with(attempt_result::completed).size(), 1u);
  CAF_CHECK_EQUAL(attempts_with(attempt_result::late_result).size(), 1u);
  auto violations = s.check_invariants();
  CAF_CHECK(violations.empty());
  for (const auto& v : violations)
    CAF_MESSAGE("violation: " << v);
}

CAF_TEST(a_completion_retried_after_an_in_doubt_commit_is_applied_once) {
  // The first try committed but its caller was told the outcome is unknown:
  // the retry is answered applied and changes nothing, not even the audit.
  enqueue_n("carl", 1);
  auto m = claim("carl", 1).at(0);
  auto batch = std::vector<completion>{done(m, {to_stage("clara_a"), to_stage("clara_b")})};
  CAF_CHECK(s.complete(batch).at(0) == fence_result::applied);
  auto attempts_before = s.attempts(std::nullopt).size();
  CAF_CHECK(s.complete(batch).at(0) == fence_result::applied);
  CAF_CHECK_EQUAL(counts_of("clara_a").ready, 1);
  CAF_CHECK_EQUAL(counts_of("clara_b").ready, 1);
  CAF_CHECK_EQUAL(s.attempts(std::nullopt).size(), attempts_before);
  CAF_CHECK(s.check_invariants().empty());
}

CAF_TEST(a_failure_retried_after_an_in_doubt_commit_is_applied_once) {
  enqueue_n("alma", 1, 3);
  auto m = claim("alma", 1).at(0);
  auto batch = std::vector<failure>{failed(m)};
  CAF_CHECK(s.fail(batch).at(0) == fence_result::applied);
  auto attempts_before = s.attempts(std::nullopt).size();
  CAF_CHECK(s.fail(batch).at(0) == fence_result::applied);
  CAF_CHECK_EQUAL(s.attempts(std::nullopt).size(), attempts_before);
  auto again = claim("alma", 1).at(0);
  CAF_CHECK_EQUAL(again.attempt, 2);
  CAF_CHECK(s.check_invariants().empty());
}

CAF_TEST(a_release_retried_after_an_in_doubt_commit_is_applied_once) {
  enqueue_n("alma", 1, 3);
  auto m = claim("alma", 1).at(0);
  CAF_CHECK(s.release("node-a", {m.fencing()}).at(0) == fence_result::applied);
  auto attempts_before = s.attempts(std::nullopt).size();
  CAF_CHECK(s.release("node-a", {m.fencing()}).at(0) == fence_result::applied);
  CAF_CHECK_EQUAL(s.attempts(std::nullopt).size(), attempts_before);
  CAF_CHECK_EQUAL(counts_of("alma").ready, 1);
  // Claimed again (a new epoch), the old lease's release is stale.
  auto again = claim("alma", 1).at(0);
  CAF_CHECK_EQUAL(again.attempt, 1);
  CAF_CHECK(s.release("node-a", {m.fencing()}).at(0) == fence_result::stale);
  CAF_CHECK(s.check_invariants().empty());
}

CAF_TEST(a_join_fires_once_when_all_its_inputs_have_arrived) {
  auto run_id = enqueue_n("carl", 1);
  auto carl = claim("carl", 1).at(0);
  s.complete({done(carl, {to_stage("clara_a"), to_stage("clara_b")})});
  auto a = claim("clara_a", 1).at(0);
  auto b = claim("clara_b", 1).at(0);
  std::vector<std::string> inputs{"clara_a", "clara_b"};
  s.complete({done(a, {to_join("compare", inputs, json{{"domain", "technology"}})})});
  CAF_CHECK(claim("compare", 5).empty());
  CAF_CHECK_EQUAL(item_of(run_id, 0).open_branches, 1);
  s.complete({done(b, {to_join("compare", inputs, json{{"domain", "data_and_analytics"}})})});
  auto joined = claim("compare", 5);
  CAF_REQUIRE_EQUAL(joined.size(), 1u);
  CAF_CHECK_EQUAL(joined[0].payload["clara_a"]["domain"], "technology");
  CAF_CHECK_EQUAL(joined[0].payload["clara_b"]["domain"], "data_and_analytics");
  CAF_CHECK_EQUAL(item_of(run_id, 0).open_branches, 1);
  s.complete({done(joined[0], {to_sink("committed")}, "agree")});
  CAF_CHECK(run_of(run_id).finished());
}

CAF_TEST(derived_payloads_are_the_claimed_payload_with_the_output_laid_over_it) {
  auto run_id = enqueue_n("carl", 2);
  auto carl = claim("carl", 2);
  s.complete({derived(carl[0], json{{"n", 100}, {"domain", "tech"}},
                      {to_stage("clara_a"), to_stage("clara_b")}),
              derived(carl[1], json(), {to_stage("clara_a"), to_stage("clara_b")})});
  auto a = claim("clara_a", 5);
  auto b = claim("clara_b", 5);
  CAF_REQUIRE_EQUAL(a.size(), 2u);
  CAF_REQUIRE_EQUAL(b.size(), 2u);
  // Output keys win; input keys the output lacks travel along.
  CAF_CHECK_EQUAL(a[0].payload, (json{{"n", 100}, {"domain", "tech"}}));
  // A null output hands on the input as it was.
  CAF_CHECK_EQUAL(a[1].payload, (json{{"n", 1}}));
  std::vector<std::string> inputs{"clara_a", "clara_b"};
  s.complete({derived(a[0], json{{"verdict", "a"}}, {to_join("compare", inputs, json())}),
              derived(b[0], json{{"verdict", "b"}}, {to_join("compare", inputs, json())})});
  auto joined = claim("compare", 5);
  CAF_REQUIRE_EQUAL(joined.size(), 1u);
  CAF_CHECK_EQUAL(joined[0].payload["clara_a"],
                  (json{{"n", 100}, {"domain", "tech"}, {"verdict", "a"}}));
  CAF_CHECK_EQUAL(joined[0].payload["clara_b"],
                  (json{{"n", 100}, {"domain", "tech"}, {"verdict", "b"}}));
  // A non-object output replaces the payload; a sink keeps it as the result.
  s.complete({derived(joined[0], json::array({"x", 2}), {to_sink("committed")})});
  CAF_CHECK_EQUAL(item_of(run_id, 0).result, json::array({"x", 2}));
  CAF_CHECK(item_of(run_id, 0).finished);
  s.complete({derived(a[1], json{{"tag", "kept"}}, {to_sink("rejected")})});
  CAF_CHECK_EQUAL(item_of(run_id, 1).result, (json{{"n", 1}, {"tag", "kept"}}));
}

CAF_TEST(a_join_over_two_large_branches_fires_once_with_both) {
  // 300 KB that does not compress: PostgreSQL stores it once and assembles
  // each stage's payload when it is claimed; the payloads seen are the same.
  auto document = turing::testing::incompressible_text(300'000);
  enqueue_request r;
  r.stage = "carl";
  r.label = "test";
  r.items = {{"big", json{{"document", document}}}};
  auto run_id = s.enqueue(r).run_id;
  auto carl = claim("carl", 1).at(0);
  CAF_CHECK(carl.payload["document"] == document);
  s.complete({derived(carl, json{{"domain", "tech"}}, {to_stage("clara_a"), to_stage("clara_b")})});
  auto a = claim("clara_a", 5);
  auto b = claim("clara_b", 5);
  CAF_REQUIRE_EQUAL(a.size(), 1u);
  CAF_REQUIRE_EQUAL(b.size(), 1u);
  CAF_CHECK(a[0].payload["document"] == document);
  CAF_CHECK_EQUAL(b[0].payload["domain"], "tech");
  std::vector<std::string> inputs{"clara_a", "clara_b"};
  s.complete({derived(a[0], json{{"verdict", "a"}}, {to_join("compare", inputs, json())})});
  CAF_CHECK(claim("compare", 5).empty());
  s.complete({derived(b[0], json{{"verdict", "b"}}, {to_join("compare", inputs, json())})});
  auto joined = claim("compare", 5);
  CAF_REQUIRE_EQUAL(joined.size(), 1u);
  CAF_CHECK(claim("compare", 5).empty());
  for (auto [side, verdict] : {std::pair{"clara_a", "a"}, std::pair{"clara_b", "b"}}) {
    CAF_CHECK(joined[0].payload[side]["document"] == document);
    CAF_CHECK_EQUAL(joined[0].payload[side]["domain"], "tech");
    CAF_CHECK_EQUAL(joined[0].payload[side]["verdict"], verdict);
  }
  // A stage after the join sees the join's payload with its output laid over.
  s.complete({derived(joined[0], json{{"agreed", false}}, {to_stage("arbitrator")})});
  auto arbitrator = claim("arbitrator", 5);
  CAF_REQUIRE_EQUAL(arbitrator.size(), 1u);
  CAF_CHECK(arbitrator[0].payload["clara_b"]["document"] == document);
  CAF_CHECK_EQUAL(arbitrator[0].payload["agreed"], false);
  s.complete({derived(arbitrator[0], json{{"skill", "owl"}}, {to_sink("committed")})});
  auto item = item_of(run_id, 0);
  CAF_CHECK(item.finished);
  CAF_CHECK(item.result["clara_a"]["document"] == document);
  CAF_CHECK_EQUAL(item.result["skill"], "owl");
  CAF_CHECK(run_of(run_id).finished());
  CAF_CHECK(s.check_invariants().empty());
}

CAF_TEST(a_join_whose_one_side_died_finishes_the_item_as_dead) {
  auto run_id = enqueue_n("carl", 1);
  auto carl = claim("carl", 1).at(0);
  s.complete({done(carl, {to_stage("clara_a"), to_stage("clara_b")})});
  auto a = claim("clara_a", 1).at(0);
  auto b = claim("clara_b", 1).at(0);
  s.fail({failed(a, 0ms, false)});
  CAF_CHECK_EQUAL(run_of(run_id).pending, 1);
  s.complete({done(b, {to_join("compare", {"clara_a", "clara_b"}, json::object())})});
  CAF_CHECK(claim("compare", 5).empty());
  auto item = s.items(run_id).at(0);
  CAF_CHECK(item.finished);
  CAF_CHECK_EQUAL(item.sink.value_or(""), "dead");
  CAF_CHECK(run_of(run_id).finished());
}

CAF_TEST(a_failure_retries_after_its_backoff_then_dead_letters) {
  auto run_id = enqueue_n("alma", 1, 2);
  auto m = claim("alma", 1).at(0);
  CAF_CHECK(s.fail({failed(m, 5000ms)}).at(0) == fence_result::applied);
  auto c = counts_of("alma");
  CAF_CHECK_EQUAL(c.delayed, 1);
  CAF_CHECK_EQUAL(c.retrying, 1);
  CAF_CHECK(claim("alma", 1).empty());
  CAF_CHECK(s.next_available_at("alma").has_value());
  advance(5001ms);
  auto again = claim("alma", 1);
  CAF_REQUIRE_EQUAL(again.size(), 1u);
  CAF_CHECK_EQUAL(again[0].attempt, 2);
  s.fail({failed(again[0], 5000ms)});
  c = counts_of("alma");
  CAF_CHECK_EQUAL(c.dead, 1);
  CAF_CHECK_EQUAL(c.delayed, 0);
  auto item = s.items(run_id).at(0);
  CAF_CHECK_EQUAL(item.sink.value_or(""), "dead");
  CAF_CHECK(run_of(run_id).finished());
  CAF_CHECK_EQUAL(attempts_with(attempt_result::failed).size(), 2u);
}

CAF_TEST(a_non_retryable_failure_dead_letters_at_once) {
  enqueue_n("alma", 1, 5);
  auto m = claim("alma", 1).at(0);
  s.fail({failed(m, 0ms, false)});
  CAF_CHECK_EQUAL(counts_of("alma").dead, 1);
}

CAF_TEST(a_stale_failure_changes_nothing_and_is_recorded) {
  enqueue_n("alma", 1);
  auto m = claim("alma", 1, "node-a", 100ms).at(0);
  advance(200ms);
  s.rescue_expired("node-b");
  auto current = claim("alma", 1).at(0);
  CAF_CHECK(s.fail({failed(m)}).at(0) == fence_result::stale);
  CAF_CHECK_EQUAL(counts_of("alma").running, 1);
  CAF_CHECK_EQUAL(attempts_with(attempt_result::late_result).size(), 1u);
  CAF_CHECK(current.epoch > m.epoch);
}

CAF_TEST(release_returns_work_to_ready_without_consuming_an_attempt) {
  enqueue_n("alma", 2, 1);
  auto ms = claim("alma", 2);
  auto r = s.release("node-a", {ms[0].fencing(), ms[1].fencing()});
  CAF_CHECK_EQUAL(std::count(r.begin(), r.end(), fence_result::applied), 2);
  auto again = claim("alma", 2);
  CAF_REQUIRE_EQUAL(again.size(), 2u);
  CAF_CHECK_EQUAL(again[0].attempt, 1);
  CAF_CHECK_EQUAL(attempts_with(attempt_result::released).size(), 2u);
  // Another node's leases are not this node's to release.
  CAF_CHECK(s.release("node-z", {again[0].fencing()}).at(0) == fence_result::stale);
}

CAF_TEST(rescue_touches_only_expired_leases) {
  enqueue_n("alma", 3);
  auto short_lease = claim("alma", 1, "node-a", 1000ms);
  auto long_lease = claim("alma", 1, "node-b", 60000ms);
  advance(2000ms);
  CAF_CHECK_EQUAL(counts_of("alma").expired, 1);
  auto rescued = s.rescue_expired("node-c");
  CAF_REQUIRE_EQUAL(rescued.size(), 1u);
  CAF_CHECK_EQUAL(rescued[0].message_id, short_lease[0].id);
  CAF_CHECK_EQUAL(rescued[0].previous_owner, "node-a");
  CAF_CHECK(!rescued[0].dead);
  auto c = counts_of("alma");
  CAF_CHECK_EQUAL(c.running, 1);
  CAF_CHECK_EQUAL(c.ready, 2);
  auto lost = attempts_with(attempt_result::lost);
  CAF_REQUIRE_EQUAL(lost.size(), 1u);
  CAF_CHECK_EQUAL(lost[0].node, "node-a");
  CAF_CHECK(s.rescue_expired("node-c").empty());
}

// Issue 9, defect 3: an outage longer than the lease cost every leased
// message an attempt. A lost lease is the node's fault, not the item's.
CAF_TEST(a_lost_attempt_does_not_count_against_max_attempts) {
  auto run_id = enqueue_n("alma", 1, 1);
  claim("alma", 1, "node-a", 100ms);
  advance(200ms);
  auto rescued = s.rescue_expired("node-c");
  CAF_REQUIRE_EQUAL(rescued.size(), 1u);
  CAF_CHECK(!rescued[0].dead);
  CAF_CHECK_EQUAL(counts_of("alma").ready, 1);
  // Its one counted attempt is still to come: the failure of the second
  // execution is its last.
  auto again = claim("alma", 1);
  CAF_REQUIRE_EQUAL(again.size(), 1u);
  CAF_CHECK_EQUAL(again[0].attempt, 2);
  CAF_CHECK_EQUAL(again[0].lost, 1);
  CAF_CHECK_EQUAL(again[0].counted_attempt(), 1);
  s.fail({failed(again[0], 0ms)});
  CAF_CHECK_EQUAL(counts_of("alma").dead, 1);
  CAF_CHECK(run_of(run_id).finished());
}

CAF_TEST(rescue_dead_letters_after_max_lost_attempts_naming_them) {
  auto run_id = enqueue_n("alma", 1, 3);
  for (int i = 1; i <= 3; ++i) {
    CAF_REQUIRE_EQUAL(claim("alma", 1, "node-a", 100ms).size(), 1u);
    advance(200ms);
    auto rescued = s.rescue_expired("node-c", 3);
    CAF_REQUIRE_EQUAL(rescued.size(), 1u);
    CAF_CHECK_EQUAL(rescued[0].dead, i == 3);
  }
  CAF_CHECK_EQUAL(counts_of("alma").dead, 1);
  CAF_CHECK(run_of(run_id).finished());
  auto lost = attempts_with(attempt_result::lost);
  CAF_CHECK_EQUAL(lost.size(), 3u);
  auto item = item_of(run_id, 0);
  CAF_CHECK_EQUAL(item.sink.value_or(""), "dead");
}

CAF_TEST(heartbeat_extends_held_leases_and_reports_lost_ones) {
  // Leases of 10 s moved 8 s on: on PostgreSQL real time passes as well, and
  // a loaded machine must not expire a lease between two steps.
  enqueue_n("alma", 2);
  auto ms = claim("alma", 2, "node-a", 10000ms);
  advance(8000ms);
  auto lost = s.heartbeat("node-a", {ms[0].fencing(), ms[1].fencing()}, 10000ms);
  CAF_CHECK(lost.empty());
  advance(8000ms);
  CAF_CHECK(s.rescue_expired("node-c").empty());
  // A lease this node does not hold (wrong epoch) is reported lost.
  auto stale = ms[1].fencing();
  stale.epoch += 7;
  lost = s.heartbeat("node-a", {ms[0].fencing(), stale}, 10000ms);
  CAF_REQUIRE_EQUAL(lost.size(), 1u);
  CAF_CHECK(lost[0] == stale);
  // Work finished under its lease has ended, not been lost (the keeper may
  // heartbeat it once more before its owner says it ended).
  s.complete({done(ms[0], {to_sink("committed")})});
  lost = s.heartbeat("node-a", {ms[0].fencing()}, 10000ms);
  CAF_CHECK(lost.empty());
  // A lease that was rescued and released is lost.
  advance(15000ms);
  s.rescue_expired("node-c");
  lost = s.heartbeat("node-a", {ms[1].fencing()}, 10000ms);
  CAF_CHECK_EQUAL(lost.size(), 1u);
}

CAF_TEST(rescue_node_returns_every_lease_of_a_gone_node) {
  enqueue_n("alma", 3);
  claim("alma", 2, "node-a");
  claim("alma", 1, "node-b");
  auto rescued = s.rescue_node("node-a", "node-b");
  CAF_CHECK_EQUAL(rescued.size(), 2u);
  auto c = counts_of("alma");
  CAF_CHECK_EQUAL(c.ready, 2);
  CAF_CHECK_EQUAL(c.running, 1);
  auto again = claim("alma", 5, "node-b");
  CAF_REQUIRE_EQUAL(again.size(), 2u);
  CAF_CHECK_EQUAL(again[0].attempt, 2);
}

CAF_TEST(attempts_are_recorded_in_order_with_ordered_timestamps) {
  enqueue_n("alma", 1);
  auto m = claim("alma", 1).at(0);
  advance(10ms);
  s.fail({failed(m)});
  auto m2 = claim("alma", 1).at(0);
  advance(10ms);
  s.complete({done(m2, {to_sink("committed")})});
  auto all = s.attempts(std::nullopt);
  CAF_REQUIRE_EQUAL(all.size(), 2u);
  CAF_CHECK(all[0].id < all[1].id);
  CAF_CHECK(all[0].result == attempt_result::failed);
  CAF_CHECK(all[1].result == attempt_result::completed);
  for (const auto& a : all)
    CAF_CHECK(a.finished_at >= a.started_at);
  CAF_CHECK_EQUAL(all[0].attempt, 1);
  CAF_CHECK_EQUAL(all[1].attempt, 2);
}

CAF_TEST(the_invariants_hold_after_retries_rescues_late_results_and_joins) {
  auto run_id = enqueue_n("carl", 3, 2);
  auto carl = claim("carl", 3);
  s.complete({done(carl[0], {to_stage("clara_a"), to_stage("clara_b")})});
  s.fail({failed(carl[1])});
  s.complete({done(carl[2], {to_sink("rejected")})});
  auto a = claim("clara_a", 1, "node-a", 100ms).at(0);
  auto b = claim("clara_b", 1).at(0);
  advance(200ms);
  s.rescue_expired("node-c");
  s.complete({done(a, {to_join("compare", {"clara_a", "clara_b"}, json::object())})}); // late
  auto a2 = claim("clara_a", 1).at(0);
  s.complete({done(a2, {to_join("compare", {"clara_a", "clara_b"}, json::object())})});
  s.complete({done(b, {to_join("compare", {"clara_a", "clara_b"}, json::object())})});
  auto joined = claim("compare", 1).at(0);
  s.complete({done(joined, {to_sink("committed")}, "agree")});
  auto retry = claim("carl", 1).at(0);
  s.fail({failed(retry)});
  auto violations = s.check_invariants();
  for (const auto& v : violations)
    CAF_MESSAGE(v);
  CAF_CHECK(violations.empty());
  CAF_CHECK(run_of(run_id).finished());
  CAF_CHECK_EQUAL(attempts_with(attempt_result::late_result).size(), 1u);
}

CAF_TEST(nodes_report_liveness_and_failed_stages) {
  node_report r;
  r.name = "node-a";
  r.started_at = turing::persistence::wall_clock::now() - std::chrono::hours(1);
  s.report_node(r);
  r.failed_stages["doomed"] = "intensity exceeded";
  s.report_node(r);
  auto all = s.nodes();
  CAF_REQUIRE_EQUAL(all.size(), 1u);
  CAF_CHECK_EQUAL(all[0].name, "node-a");
  CAF_CHECK_EQUAL(all[0].failed_stages.size(), 1u);
  CAF_CHECK_EQUAL(all[0].failed_stages["doomed"], "intensity exceeded");
  CAF_CHECK(!all[0].stopped_at.has_value());
  CAF_CHECK(all[0].seen_at >= all[0].started_at);
  r.stopped_at = r.started_at;
  s.report_node(r);
  CAF_CHECK(s.nodes().at(0).stopped_at.has_value());
  // A model it cannot reach, for `turing status`.
  r.unavailable_models["mistral"] = {r.started_at + std::chrono::seconds(5),
                                     "cannot connect to http://gpu-1:11434/api/chat", 7};
  s.report_node(r);
  auto outage = s.nodes().at(0).unavailable_models;
  CAF_REQUIRE_EQUAL(outage.size(), 1u);
  CAF_CHECK_EQUAL(outage["mistral"].error, "cannot connect to http://gpu-1:11434/api/chat");
  CAF_CHECK_EQUAL(outage["mistral"].waiting, 7);
  CAF_CHECK(std::chrono::abs(outage["mistral"].since - (r.started_at + std::chrono::seconds(5))) <
            std::chrono::microseconds(1));
  r.unavailable_models.clear();
  s.report_node(r);
  CAF_CHECK(s.nodes().at(0).unavailable_models.empty());
}

#ifdef TURING_FIXTURE_VIRTUAL_CLOCK

// Exact instants, where the test moves the store's clock: a simulation in
// virtual time must see the same leases, backoffs and timestamps on either store.

CAF_TEST(claims_and_attempts_carry_the_store_clocks_times) {
  auto run_id = enqueue_n("alma", 2);
  CAF_CHECK_EQUAL(us_since_start(run_of(run_id).created_at), 0);
  advance(10ms);
  auto ms = claim("alma", 2, "node-a", 1000ms);
  CAF_REQUIRE_EQUAL(ms.size(), 2u);
  CAF_CHECK_EQUAL(us_since_start(ms[0].started_at), 10000);
  CAF_CHECK_EQUAL(us_since_start(ms[1].started_at), 10000);
  auto c = counts_of("alma");
  CAF_CHECK_EQUAL(us_since_start(c.oldest_started_at.value()), 10000);
  CAF_CHECK_EQUAL(us_since_start(c.oldest_heartbeat_at.value()), 10000);
  advance(250ms);
  CAF_CHECK(s.complete({done(ms[0], {to_sink("committed")})}).at(0) == fence_result::applied);
  advance(40ms);
  CAF_CHECK(s.fail({failed(ms[1], 0ms, false)}).at(0) == fence_result::applied);
  auto all = s.attempts(std::nullopt);
  CAF_REQUIRE_EQUAL(all.size(), 2u);
  CAF_CHECK(all[0].result == attempt_result::completed);
  CAF_CHECK_EQUAL(us_since_start(all[0].started_at), 10000);
  CAF_CHECK_EQUAL(us_since_start(all[0].finished_at), 260000);
  CAF_CHECK(all[1].result == attempt_result::failed);
  CAF_CHECK_EQUAL(us_since_start(all[1].started_at), 10000);
  CAF_CHECK_EQUAL(us_since_start(all[1].finished_at), 300000);
  auto run = run_of(run_id);
  CAF_REQUIRE(run.finished_at.has_value());
  CAF_CHECK_EQUAL(us_since_start(*run.finished_at), 300000);
  // A late result is stamped with the clock too, never before its start.
  advance(5ms);
  CAF_CHECK(s.complete({done(ms[1], {to_sink("committed")})}).at(0) == fence_result::stale);
  auto late = attempts_with(attempt_result::late_result);
  CAF_REQUIRE_EQUAL(late.size(), 1u);
  CAF_CHECK_EQUAL(us_since_start(late[0].started_at), 10000);
  CAF_CHECK_EQUAL(us_since_start(late[0].finished_at), 305000);
}

CAF_TEST(a_lease_is_rescued_only_once_its_ttl_has_passed_on_the_clock) {
  enqueue_n("alma", 1);
  auto m = claim("alma", 1, "node-a", 1000ms).at(0);
  advance(800ms);
  CAF_CHECK(s.heartbeat("node-a", {m.fencing()}, 1000ms).empty()); // now held until 1800 ms
  advance(999ms);
  CAF_CHECK(s.rescue_expired("node-b").empty());
  advance(1ms); // exactly at lease_expires_at: not yet expired
  CAF_CHECK_EQUAL(counts_of("alma").expired, 0);
  CAF_CHECK(s.rescue_expired("node-b").empty());
  CAF_CHECK_EQUAL(counts_of("alma").running, 1);
  advance(1ms);
  CAF_CHECK_EQUAL(counts_of("alma").expired, 1);
  auto rescued = s.rescue_expired("node-b");
  CAF_REQUIRE_EQUAL(rescued.size(), 1u);
  CAF_CHECK_EQUAL(rescued[0].message_id, m.id);
  auto lost = attempts_with(attempt_result::lost);
  CAF_REQUIRE_EQUAL(lost.size(), 1u);
  CAF_CHECK_EQUAL(us_since_start(lost[0].started_at), 0);
  CAF_CHECK_EQUAL(us_since_start(lost[0].finished_at), 1801000);
  // Rescued work is ready at once, and its next claim starts now.
  auto again = claim("alma", 1, "node-b");
  CAF_REQUIRE_EQUAL(again.size(), 1u);
  CAF_CHECK_EQUAL(again[0].attempt, 2);
  CAF_CHECK_EQUAL(us_since_start(again[0].started_at), 1801000);
}

CAF_TEST(a_backoff_holds_a_failed_message_until_the_clock_reaches_it) {
  enqueue_n("alma", 1, 3);
  advance(5ms);
  auto m = claim("alma", 1).at(0);
  advance(20ms);
  CAF_CHECK(s.fail({failed(m, 5000ms)}).at(0) == fence_result::applied);
  auto failed_attempt = attempts_with(attempt_result::failed).at(0);
  CAF_CHECK_EQUAL(us_since_start(failed_attempt.started_at), 5000);
  CAF_CHECK_EQUAL(us_since_start(failed_attempt.finished_at), 25000);
  auto next = s.next_available_at("alma");
  CAF_REQUIRE(next.has_value());
  CAF_CHECK_EQUAL(us_since_start(*next), 5025000);
  advance(4999ms);
  CAF_CHECK(claim("alma", 1).empty());
  CAF_CHECK_EQUAL(counts_of("alma").delayed, 1);
  CAF_CHECK_EQUAL(counts_of("alma").ready, 0);
  advance(1ms); // exactly at available_at: ready
  CAF_CHECK_EQUAL(counts_of("alma").delayed, 0);
  CAF_CHECK_EQUAL(counts_of("alma").ready, 1);
  auto again = claim("alma", 1);
  CAF_REQUIRE_EQUAL(again.size(), 1u);
  CAF_CHECK_EQUAL(again[0].attempt, 2);
  CAF_CHECK_EQUAL(us_since_start(again[0].started_at), 5025000);
}

CAF_TEST(recent_latencies_are_the_newest_completed_attempts_of_the_stage_within_the_window) {
  enqueue_n("alma", 4);
  enqueue_request other;
  other.stage = "carl";
  other.label = "other";
  other.items.push_back({"carl-0", json{{"n", 0}}});
  s.enqueue(other);
  advance(1ms);
  // alma: completions taking 10, 20 and 30 ms, one failure of 99 ms.
  for (int i = 0; i < 3; ++i) {
    auto m = claim("alma", 1).at(0);
    advance(millis{10 * (i + 1)});
    s.complete({done(m, {to_sink("committed")})});
  }
  auto f = claim("alma", 1).at(0);
  advance(99ms);
  s.fail({failed(f, 0ms, false)});
  auto c = claim("carl", 1).at(0);
  advance(7ms);
  s.complete({done(c, {to_sink("committed")})});
  CAF_CHECK_EQUAL(s.recent_latencies("alma", 10, 3600s),
                  (std::vector<millis>{30ms, 20ms, 10ms})); // newest first, failures left out
  CAF_CHECK_EQUAL(s.recent_latencies("alma", 2, 3600s), (std::vector<millis>{30ms, 20ms}));
  CAF_CHECK_EQUAL(s.recent_latencies("carl", 10, 3600s), (std::vector<millis>{7ms}));
  // The alma completions finished 156, 136 and 106 ms ago.
  CAF_CHECK_EQUAL(s.recent_latencies("alma", 10, 140ms), (std::vector<millis>{30ms, 20ms}));
  CAF_CHECK(s.recent_latencies("alma", 10, 100ms).empty());
  CAF_CHECK(s.recent_latencies("nobody", 10, 3600s).empty());
}

CAF_TEST(retention_removes_done_history_of_finished_items_and_keeps_the_totals) {
  auto run_id = enqueue_n("alma", 3);
  auto ms = claim("alma", 3);
  s.complete({done(ms[0], {to_stage("commit")}), done(ms[1], {to_sink("committed")})});
  s.fail({failed(ms[2], 0ms, false)}); // dead: kept for the dead-letter workflow
  s.complete({done(claim("commit", 1).at(0), {to_sink("committed")})});
  // An item still in flight keeps its done messages, however old.
  enqueue_request open_item;
  open_item.stage = "alma";
  open_item.label = "open";
  open_item.max_attempts = 3;
  open_item.items.push_back({"open", json{{"n", 99}}});
  auto open_run = s.enqueue(open_item).run_id;
  s.complete({done(claim("alma", 1).at(0), {to_stage("commit")})});
  advance(10min);
  CAF_CHECK_EQUAL(s.prune_history(15min, 100).messages, 0); // not old enough
  advance(10min);
  // Oldest first, at most `limit` per call.
  auto first = s.prune_history(15min, 1);
  CAF_CHECK_EQUAL(first.messages, 1);
  CAF_CHECK_EQUAL(first.attempts, 1);
  auto rest = s.prune_history(15min, 100);
  CAF_CHECK_EQUAL(rest.messages, 2);
  CAF_CHECK_EQUAL(rest.attempts, 2);
  CAF_CHECK_EQUAL(s.prune_history(15min, 100).messages, 0);
  // Totals are unchanged: status and report still tell the whole run.
  CAF_CHECK_EQUAL(counts_of("alma").done, 3);
  CAF_CHECK_EQUAL(counts_of("alma").dead, 1);
  CAF_CHECK_EQUAL(counts_of("commit").done, 1);
  CAF_CHECK_EQUAL(counts_of("commit").ready, 1);
  auto sinks = s.sink_counts(run_id);
  CAF_REQUIRE_EQUAL(sinks.size(), 2u);
  CAF_CHECK_EQUAL(sinks[0].sink, "committed");
  CAF_CHECK_EQUAL(sinks[0].items, 2);
  CAF_CHECK_EQUAL(sinks[1].items, 1);
  CAF_CHECK(run_of(run_id).finished());
  CAF_CHECK(!run_of(open_run).finished());
  // Left: the dead message's failure and the open item's completion.
  auto left = s.attempts(std::nullopt);
  CAF_REQUIRE_EQUAL(left.size(), 2u);
  CAF_CHECK(left[0].result == attempt_result::failed);
  CAF_CHECK(left[1].result == attempt_result::completed);
  CAF_CHECK_EQUAL(left[1].run_id, open_run);
  auto violations = s.check_invariants();
  CAF_CHECK(violations.empty());
  for (const auto& v : violations)
    CAF_MESSAGE(v);
  // The open item finishes and its history ages out like any other.
  s.complete({done(claim("commit", 1).at(0), {to_sink("committed")})});
  advance(20min);
  CAF_CHECK_EQUAL(s.prune_history(15min, 100).messages, 2);
  CAF_CHECK_EQUAL(counts_of("alma").done, 3);
  CAF_CHECK_EQUAL(counts_of("commit").done, 2);
  CAF_CHECK(s.check_invariants().empty());
}

CAF_TEST(retention_keeps_the_history_of_an_item_with_a_dead_letter_until_retried_or_purged) {
  enqueue_keyed("alma", "r", 2);
  auto ms = claim("alma", 2);
  s.complete({done(ms[0], {to_stage("commit")}), done(ms[1], {to_stage("commit")})});
  auto commits = claim("commit", 2);
  kill(commits[0], "bad json");
  kill(commits[1], "model timeout");
  advance(20min);
  // Both items ended dead; their alma messages are what a retry assembles from.
  CAF_CHECK_EQUAL(s.prune_history(15min, 100).messages, 0);
  dead_filter bad_json;
  bad_json.reason = "bad json";
  CAF_CHECK_EQUAL(s.purge_dead(bad_json, "bob@ops").count(), 1);
  CAF_CHECK_EQUAL(s.prune_history(15min, 100).messages, 1); // the purged item's alma message
  dead_filter timeout;
  timeout.reason = "timeout";
  CAF_CHECK_EQUAL(s.retry_dead(timeout, "bob@ops").count(), 1);
  CAF_CHECK_EQUAL(s.prune_history(15min, 100).messages, 0); // its item is open again
  auto again = claim("commit", 1);
  CAF_REQUIRE_EQUAL(again.size(), 1u);
  CAF_CHECK_EQUAL(again[0].payload.value("via", ""), "commit");
  s.complete({done(again[0], {to_sink("committed")})});
  advance(20min);
  CAF_CHECK_EQUAL(s.prune_history(15min, 100).messages, 2); // alma and commit, done
  CAF_CHECK_EQUAL(counts_of("alma").done, 2);
  CAF_CHECK_EQUAL(counts_of("commit").done, 1);
  CAF_CHECK(violations().empty());
}

#endif // TURING_FIXTURE_VIRTUAL_CLOCK

// -- operators' actions on dead letters and runs ---------------------------------

CAF_TEST(dead_letters_are_listed_with_reason_and_attempt_history_and_filtered) {
  auto run_a = enqueue_keyed("alma", "a", 2);
  auto run_b = enqueue_keyed("bert", "b", 1);
  auto alma = claim("alma", 2);
  kill(alma[0], "Model first: TIMEOUT after 1s");
  kill(alma[1], "bad json");
  kill(claim("bert", 1).at(0), "model first: timeout after 1s");
  auto all = s.dead_messages({}, 100);
  CAF_REQUIRE_EQUAL(all.size(), 3u);
  CAF_CHECK_EQUAL(all[0].id, alma[0].id);
  CAF_CHECK_EQUAL(all[0].stage, "alma");
  CAF_CHECK_EQUAL(all[0].run_id, run_a);
  CAF_CHECK_EQUAL(all[0].item_id, alma[0].item_id);
  CAF_CHECK_EQUAL(all[0].item_key.value_or(""), "a0");
  CAF_CHECK_EQUAL(all[0].epoch, alma[0].epoch);
  CAF_CHECK_EQUAL(all[0].reason, "Model first: TIMEOUT after 1s");
  CAF_REQUIRE_EQUAL(all[0].attempts.size(), 1u);
  CAF_CHECK_EQUAL(all[0].attempts[0].attempt, 1);
  CAF_CHECK_EQUAL(all[0].attempts[0].node, "node-a");
  CAF_CHECK(all[0].attempts[0].result == attempt_result::failed);
  CAF_CHECK_EQUAL(all[0].attempts[0].error, "Model first: TIMEOUT after 1s");
  CAF_CHECK(all[0].died_at >= all[0].attempts[0].started_at);
  dead_filter stage;
  stage.stage = "bert";
  CAF_CHECK_EQUAL(s.dead_messages(stage, 100).size(), 1u);
  CAF_CHECK_EQUAL(s.dead_messages(by_run(run_a), 100).size(), 2u);
  CAF_CHECK_EQUAL(s.dead_messages(by_run(run_b), 100).size(), 1u);
  dead_filter reason;
  reason.reason = "timeout"; // any case, a substring
  auto timeouts = s.dead_messages(reason, 100);
  CAF_REQUIRE_EQUAL(timeouts.size(), 2u);
  CAF_CHECK_EQUAL(timeouts[1].stage, "bert");
  reason.stage = "alma";
  CAF_CHECK_EQUAL(s.dead_messages(reason, 100).size(), 1u);
  CAF_CHECK_EQUAL(s.dead_messages({}, 2).size(), 2u);
}

CAF_TEST(a_retried_dead_letter_is_fresh_under_a_new_epoch_and_its_old_owner_is_fenced) {
  auto run_id = enqueue_keyed("alma", "a", 1);
  auto first = claim("alma", 1).at(0);
  kill(first, "model down");
  CAF_REQUIRE(run_of(run_id).finished());
  CAF_CHECK_EQUAL(run_of(run_id).dead, 1);
  auto retried = s.retry_dead(by_run(run_id), "alice@ops");
  CAF_REQUIRE_EQUAL(retried.count(), 1);
  CAF_CHECK_EQUAL(retried.message_ids[0], first.id);
  // Ready again, with no attempt behind it; the item and the run are open again.
  auto c = counts_of("alma");
  CAF_CHECK_EQUAL(c.ready, 1);
  CAF_CHECK_EQUAL(c.retrying, 0);
  CAF_CHECK_EQUAL(c.dead, 0);
  CAF_CHECK_EQUAL(run_of(run_id).pending, 1);
  CAF_CHECK(!run_of(run_id).finished_at.has_value());
  CAF_CHECK_EQUAL(run_of(run_id).dead, 0);
  CAF_CHECK(!item_of(run_id, 0).finished);
  CAF_CHECK(!item_of(run_id, 0).sink.has_value());
  CAF_CHECK(s.sink_counts(run_id).empty());
  CAF_CHECK(s.dead_messages({}, 10).empty());
  CAF_CHECK(violations().empty());
  // The old owner's late failure is fenced: its epoch is no longer current.
  CAF_CHECK(s.fail({failed(first)}).at(0) == fence_result::stale);
  auto again = claim("alma", 1);
  CAF_REQUIRE_EQUAL(again.size(), 1u);
  CAF_CHECK_EQUAL(again[0].attempt, 1);
  CAF_CHECK_EQUAL(again[0].epoch, first.epoch + 2);
  CAF_CHECK(s.complete({done(first, {to_sink("committed")})}).at(0) == fence_result::stale);
  CAF_CHECK(s.complete({done(again[0], {to_sink("committed")})}).at(0) == fence_result::applied);
  CAF_CHECK(run_of(run_id).finished());
  CAF_CHECK_EQUAL(item_of(run_id, 0).sink.value_or(""), "committed");
  CAF_CHECK_EQUAL(run_of(run_id).dead, 0);
  CAF_CHECK_EQUAL(counts_of("alma").done, 1);
  CAF_CHECK_EQUAL(counts_of("alma").dead, 0);
  CAF_CHECK_EQUAL(attempts_with(attempt_result::late_result).size(), 2u);
  CAF_CHECK(violations().empty());
  auto log = s.operator_log(10);
  CAF_REQUIRE_EQUAL(log.size(), 1u);
  CAF_CHECK_EQUAL(log[0].action, "retry");
  CAF_CHECK_EQUAL(log[0].by, "alice@ops");
  CAF_CHECK_EQUAL(log[0].filter, (json{{"run", run_id}}));
  CAF_CHECK_EQUAL(log[0].count, 1);
  CAF_CHECK(log[0].message_ids == std::vector<int64_t>{first.id});
}

CAF_TEST(a_retried_side_of_a_join_lets_the_join_fire_and_the_item_leave_the_dead_sink) {
  auto run_id = enqueue_n("carl", 1);
  auto carl = claim("carl", 1).at(0);
  s.complete({done(carl, {to_stage("clara_a"), to_stage("clara_b")})});
  auto a = claim("clara_a", 1).at(0);
  auto b = claim("clara_b", 1).at(0);
  kill(a, "boom");
  s.complete({done(b, {to_join("compare", {"clara_a", "clara_b"}, json::object())})});
  CAF_REQUIRE_EQUAL(item_of(run_id, 0).sink.value_or(""), "dead");
  dead_filter stage;
  stage.stage = "clara_a";
  CAF_CHECK_EQUAL(s.retry_dead(stage, "op").count(), 1);
  auto a2 = claim("clara_a", 1).at(0);
  s.complete({done(a2, {to_join("compare", {"clara_a", "clara_b"}, json::object())})});
  auto joined = claim("compare", 1);
  CAF_REQUIRE_EQUAL(joined.size(), 1u);
  s.complete({done(joined[0], {to_sink("committed")}, "agree")});
  CAF_CHECK(item_of(run_id, 0).finished);
  CAF_CHECK_EQUAL(item_of(run_id, 0).sink.value_or(""), "committed");
  CAF_CHECK(run_of(run_id).finished());
  CAF_CHECK(violations().empty());
}

CAF_TEST(purged_dead_letters_are_kept_but_no_longer_listed_and_count_as_purged) {
  auto run_a = enqueue_keyed("alma", "a", 2);
  enqueue_keyed("bert", "b", 1);
  auto alma = claim("alma", 2);
  kill(alma[0], "boom");
  kill(alma[1], "boom");
  kill(claim("bert", 1).at(0), "boom");
  dead_filter stage;
  stage.stage = "alma";
  auto purged = s.purge_dead(stage, "bob@ops");
  CAF_CHECK_EQUAL(purged.count(), 2);
  CAF_CHECK(purged.message_ids == (std::vector<int64_t>{alma[0].id, alma[1].id}));
  CAF_CHECK(s.dead_messages(stage, 10).empty());
  CAF_CHECK_EQUAL(s.dead_messages({}, 10).size(), 1u);
  CAF_CHECK_EQUAL(counts_of("alma").dead, 0);
  CAF_CHECK_EQUAL(counts_of("alma").purged, 2);
  CAF_CHECK_EQUAL(counts_of("bert").dead, 1);
  CAF_CHECK_EQUAL(counts_of("bert").purged, 0);
  // The items stay dead; the run stays finished; purged ones are not retried.
  CAF_CHECK(run_of(run_a).finished());
  CAF_CHECK_EQUAL(run_of(run_a).dead, 2);
  CAF_CHECK_EQUAL(s.retry_dead(stage, "bob@ops").count(), 0);
  CAF_CHECK_EQUAL(s.purge_dead(stage, "bob@ops").count(), 0);
  CAF_CHECK(violations().empty());
  auto log = s.operator_log(10);
  CAF_REQUIRE_EQUAL(log.size(), 1u);
  CAF_CHECK_EQUAL(log[0].action, "purge");
  CAF_CHECK_EQUAL(log[0].by, "bob@ops");
  CAF_CHECK_EQUAL(log[0].filter, (json{{"stage", "alma"}}));
  CAF_CHECK_EQUAL(log[0].count, 2);
}

CAF_TEST(cancel_dead_letters_ready_delayed_and_running_messages_and_fences_the_owner) {
  auto run_id = enqueue_keyed("alma", "a", 3, 3);
  auto other = enqueue_keyed("alma", "o", 1, 3);
  auto ms = claim("alma", 2);       // a0, a1
  s.fail({failed(ms[1], 60000ms)}); // a1: delayed, retrying
  auto running = ms[0];
  auto cancelled = s.cancel_run(run_id, "carol@ops");
  CAF_CHECK_EQUAL(cancelled.count(), 3);
  auto run = run_of(run_id);
  CAF_CHECK(run.finished());
  CAF_CHECK(run.cancelled());
  CAF_CHECK_EQUAL(run.cancelled_by, "carol@ops");
  CAF_CHECK_EQUAL(run.dead, 3);
  for (const auto& i : s.items(run_id))
    CAF_CHECK_EQUAL(i.sink.value_or(""), "dead");
  // The other run is untouched.
  CAF_CHECK_EQUAL(run_of(other).pending, 1);
  CAF_CHECK_EQUAL(counts_of("alma").ready, 1);
  CAF_CHECK_EQUAL(counts_of("alma").running, 0);
  CAF_CHECK_EQUAL(counts_of("alma").dead, 3);
  auto dead = s.dead_messages(by_run(run_id), 10);
  CAF_REQUIRE_EQUAL(dead.size(), 3u);
  for (const auto& d : dead)
    CAF_CHECK_EQUAL(d.reason, "run cancelled by carol@ops");
  CAF_CHECK_EQUAL(dead[0].epoch, running.epoch + 1);
  // The running owner learns it lost its lease, and its result is late.
  auto lost = s.heartbeat("node-a", {running.fencing()}, 30000ms);
  CAF_CHECK_EQUAL(lost.size(), 1u);
  CAF_CHECK(s.complete({done(running, {to_sink("committed")})}).at(0) == fence_result::stale);
  CAF_CHECK_EQUAL(attempts_with(attempt_result::late_result).size(), 1u);
  CAF_CHECK_EQUAL(run_of(run_id).dead, 3);
  CAF_CHECK(violations().empty());
  // No more work joins a cancelled run.
  enqueue_request more;
  more.stage = "alma";
  more.run_id = run_id;
  more.items = {{"a9", json{{"n", 9}}}};
  CAF_CHECK(refuses_as_invalid([&] { s.enqueue(more); }));
  auto log = s.operator_log(10);
  CAF_REQUIRE(!log.empty());
  CAF_CHECK_EQUAL(log[0].action, "cancel");
  CAF_CHECK_EQUAL(log[0].by, "carol@ops");
  CAF_CHECK_EQUAL(log[0].filter, (json{{"run", run_id}}));
  CAF_CHECK_EQUAL(log[0].count, 3);
  CAF_CHECK(log[0].message_ids == cancelled.message_ids);
}

CAF_TEST(retrying_the_dead_letters_of_a_cancelled_run_is_refused) {
  auto run_id = enqueue_keyed("alma", "a", 2);
  kill(claim("alma", 1).at(0), "boom");
  s.cancel_run(run_id, "carol@ops");
  try {
    s.retry_dead(by_run(run_id), "dave@ops");
    CAF_FAIL("retry of a cancelled run's dead letters was not refused");
  } catch (const store_error& e) {
    CAF_CHECK(e.code() == store_errc::invalid_argument);
    CAF_CHECK(std::string(e.what()).find("cancelled") != std::string::npos);
  }
  // Filters that reach past the run leave its dead letters dead.
  dead_filter stage;
  stage.stage = "alma";
  auto r = s.retry_dead(stage, "dave@ops");
  CAF_CHECK_EQUAL(r.count(), 0);
  CAF_CHECK_EQUAL(r.skipped_cancelled, 2);
  CAF_CHECK_EQUAL(counts_of("alma").dead, 2);
  CAF_CHECK(run_of(run_id).finished());
  CAF_CHECK(violations().empty());
}

CAF_TEST(cancel_refuses_a_run_that_does_not_exist_or_finished_uncancelled) {
  auto run_id = enqueue_keyed("alma", "a", 1);
  s.complete({done(claim("alma", 1).at(0), {to_sink("committed")})});
  CAF_CHECK(refuses_as_invalid([&] { s.cancel_run(run_id, "op"); }));
  CAF_CHECK(refuses_as_invalid([&] { s.cancel_run(run_id + 100, "op"); }));
  CAF_CHECK(!run_of(run_id).cancelled());
  CAF_CHECK(s.operator_log(10).empty());
}

CAF_TEST(the_operator_log_is_newest_first_and_bounded) {
  auto run_id = enqueue_keyed("alma", "a", 3);
  auto ms = claim("alma", 3);
  for (const auto& m : ms)
    kill(m, "boom");
  dead_filter one;
  one.reason = "boom";
  one.run_id = run_id;
  s.purge_dead(by_run(run_id + 50), "op"); // matches nothing: not recorded
  s.retry_dead(one, "op-1");
  auto again = claim("alma", 3);
  kill(again.at(0), "boom again");
  s.purge_dead(one, "op-2");
  auto log = s.operator_log(10);
  CAF_REQUIRE_EQUAL(log.size(), 2u);
  CAF_CHECK_EQUAL(log[0].action, "purge");
  CAF_CHECK_EQUAL(log[0].by, "op-2");
  CAF_CHECK_EQUAL(log[1].action, "retry");
  CAF_CHECK_EQUAL(log[1].count, 3);
  CAF_CHECK(log[0].id > log[1].id);
  CAF_CHECK(log[0].at >= log[1].at);
  CAF_CHECK_EQUAL(s.operator_log(1).size(), 1u);
  CAF_CHECK(violations().empty());
}

CAF_TEST(text_with_quotes_backslashes_braces_and_null_words_is_stored_exactly) {
  // A batch reaches PostgreSQL as array literals: every character they
  // quote or escape, and the unquoted word NULL, must come back unchanged.
  const std::string odd = "a\"b\\c{d},e NULL \\\" é 漢\n\t}";
  auto run_id = enqueue_keyed("alma", "t", 3);
  auto ms = claim("alma", 3);
  CAF_REQUIRE_EQUAL(ms.size(), 3u);
  auto plain =
      done(ms[0], {to_sink("committed", json{{"text", odd}, {"list", {odd, "NULL"}}})}, odd);
  plain.model = odd;
  plain.output = json{{"text", odd}};
  auto derived_result = derived(ms[1], json{{"text", odd}}, {to_sink("committed")});
  derived_result.outcome = "NULL";
  auto f = failed(ms[2], 0ms, false);
  f.error = odd;
  f.model = odd;
  CAF_CHECK_EQUAL(s.complete({plain, derived_result}),
                  (std::vector<fence_result>{fence_result::applied, fence_result::applied}));
  CAF_CHECK_EQUAL(s.fail({f}), std::vector<fence_result>{fence_result::applied});
  std::map<int64_t, attempt_record> by_message;
  for (auto& a : s.attempts(run_id))
    by_message[a.message_id] = a;
  CAF_REQUIRE_EQUAL(by_message.size(), 3u);
  const auto& first = by_message[ms[0].id];
  CAF_CHECK_EQUAL(first.outcome, odd);
  CAF_CHECK_EQUAL(first.model, odd);
  CAF_CHECK_EQUAL(first.output, (json{{"text", odd}}));
  CAF_CHECK_EQUAL(by_message[ms[1].id].outcome, "NULL");
  CAF_CHECK_EQUAL(by_message[ms[2].id].error, odd);
  CAF_CHECK_EQUAL(by_message[ms[2].id].model, odd);
  std::map<std::string, item_record> by_key;
  for (auto& i : s.items(run_id))
    by_key[i.key.value_or("")] = i;
  CAF_CHECK_EQUAL(by_key["t0"].result, (json{{"text", odd}, {"list", {odd, "NULL"}}}));
  CAF_CHECK_EQUAL(by_key["t1"].result, (json{{"n", 1}, {"text", odd}}));
  CAF_CHECK_EQUAL(by_key["t2"].sink.value_or(""), "dead");
  CAF_CHECK(violations().empty());
}

CAF_TEST_FIXTURE_SCOPE_END()
