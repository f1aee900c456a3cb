// model_budget: when a model's next call may start under its requests and
// tokens per minute, with calls in flight holding their estimated tokens.
#define CAF_SUITE model_budget
#include "actors/model_budget.hpp"

#include <caf/test/unit_test.hpp>

using namespace turing::actors;
using namespace std::chrono_literals;

namespace {

const model_budget::time_point t0{std::chrono::hours(1)};

} // namespace

CAF_TEST(requests_per_minute_lets_the_next_call_start_when_the_oldest_leaves_the_window) {
  model_budget b{3, 0, 60s};
  for (int i = 0; i < 3; ++i) {
    CAF_CHECK(b.next_start(t0 + i * 1s) == t0 + i * 1s);
    b.started(t0 + i * 1s);
  }
  CAF_CHECK(b.next_start(t0 + 5s) == t0 + 60s); // the first start leaves then
  CAF_CHECK(b.next_start(t0 + 60s) == t0 + 60s);
  CAF_CHECK_EQUAL(b.requests_in_window(t0 + 60s), 2);
}

CAF_TEST(the_first_call_under_a_token_budget_runs_alone_until_its_cost_is_known) {
  model_budget b{0, 5000, 60s};
  CAF_CHECK(b.next_start(t0) == t0);
  auto r = b.started(t0);
  CAF_CHECK_EQUAL(r, 0);
  CAF_CHECK(!b.next_start(t0 + 1s)); // waits for the answer, not for a time
  b.ended(t0 + 2s, r, 1000);
  CAF_CHECK(b.next_start(t0 + 2s) == t0 + 2s);
}

CAF_TEST(calls_in_flight_hold_their_estimate_and_spent_tokens_leave_after_the_window) {
  model_budget b{0, 5000, 60s};
  b.ended(t0, b.started(t0), 1000); // 1,000 spent at t0: the estimate
  int64_t held = 0;
  for (int i = 0; i < 4; ++i) { // 1,000 spent + 4 × 1,000 reserved = 5,000
    CAF_REQUIRE(b.next_start(t0 + 1s) == t0 + 1s);
    held += b.started(t0 + 1s);
  }
  CAF_CHECK_EQUAL(held, 4000);
  CAF_CHECK(b.next_start(t0 + 1s) == t0 + 60s); // when the 1,000 of t0 leave
  // The four answer at 3 s: 5,000 spent in the window; the next start waits
  // for t0's 1,000 to leave, then for nothing more.
  for (int i = 0; i < 4; ++i)
    b.ended(t0 + 3s, 1000, 1000);
  CAF_CHECK_EQUAL(b.tokens_in_window(t0 + 3s), 5000);
  CAF_CHECK(b.next_start(t0 + 3s) == t0 + 60s);
  CAF_CHECK(b.next_start(t0 + 60s) == t0 + 60s);
}

CAF_TEST(the_estimate_follows_a_costlier_answer_at_once_and_a_cheaper_one_slowly) {
  model_budget b{0, 100000, 60s};
  b.ended(t0, b.started(t0), 1000);
  CAF_CHECK_EQUAL(b.started(t0), 1000);
  b.ended(t0, 1000, 3000);
  CAF_CHECK_EQUAL(b.started(t0), 3000);
  b.ended(t0, 3000, 1000);
  CAF_CHECK_EQUAL(b.started(t0), 2800); // 3,000 × 0.9 + 1,000 × 0.1
}

CAF_TEST(an_answer_without_counts_spends_its_reservation) {
  model_budget b{0, 3000, 60s};
  b.ended(t0, b.started(t0), 1000);
  auto r = b.started(t0 + 1s);
  b.ended(t0 + 2s, r, -1);
  CAF_CHECK_EQUAL(b.tokens_in_window(t0 + 2s), 2000);
}

CAF_TEST(a_call_costlier_than_the_whole_budget_runs_alone) {
  model_budget b{0, 500, 60s};
  b.ended(t0, b.started(t0), 800);
  CAF_CHECK(b.next_start(t0 + 1s) == t0 + 60s);  // the 800 must leave first
  CAF_CHECK(b.next_start(t0 + 60s) == t0 + 60s); // then it runs, alone
  b.started(t0 + 60s);
  CAF_CHECK(!b.next_start(t0 + 61s));
}
