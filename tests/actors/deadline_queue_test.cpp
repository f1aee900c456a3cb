// deadline_queue: the pump's deadlines in time order, served by one timer.
#define CAF_SUITE deadline_queue
#include "actors/deadline_queue.hpp"

#include <caf/test/unit_test.hpp>
#include <chrono>

using turing::actors::deadline_queue;
using namespace std::chrono_literals;
using time_point = std::chrono::steady_clock::time_point;

namespace {
const time_point t0{};
} // namespace

CAF_TEST(deadlines_expire_in_time_order_and_only_when_due) {
  deadline_queue<time_point> q;
  q.arm(3, t0 + 30s);
  q.arm(1, t0 + 10s);
  q.arm(2, t0 + 10s); // same time: armed later, expires later
  CAF_CHECK(q.earliest() == t0 + 10s);
  CAF_CHECK(q.expire(t0 + 9s).empty());
  CAF_CHECK_EQUAL(q.expire(t0 + 10s), (std::vector<std::int64_t>{1, 2}));
  CAF_CHECK(q.earliest() == t0 + 30s);
  CAF_CHECK_EQUAL(q.expire(t0 + 60s), (std::vector<std::int64_t>{3}));
  CAF_CHECK(!q.earliest());
}

CAF_TEST(a_disarmed_deadline_never_expires_and_holds_nothing) {
  deadline_queue<time_point> q;
  auto ended = q.arm(1, t0 + 10s);
  q.arm(2, t0 + 20s);
  q.disarm(ended);
  q.disarm(ended); // twice: ignored
  CAF_CHECK_EQUAL(q.size(), 1u);
  CAF_CHECK_EQUAL(q.expire(t0 + 60s), (std::vector<std::int64_t>{2}));
  CAF_CHECK_EQUAL(q.size(), 0u);
}
