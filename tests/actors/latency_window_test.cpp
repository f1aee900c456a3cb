// latency_window and the adaptive timeout rule: nearest-rank quantiles over
// the newest samples, p99 × factor within floor and ceiling, the midpoint
// until 20 samples.
#define CAF_SUITE latency_window
#include "actors/latency_window.hpp"

#include <caf/test/unit_test.hpp>

using namespace turing;
using namespace turing::actors;
using namespace std::chrono_literals;

CAF_TEST(quantiles_are_nearest_ranks_of_the_newest_samples) {
  latency_window w{100};
  CAF_CHECK(!w.quantile(0.5));
  for (int i = 1; i <= 100; ++i)
    w.add(config::millis{i});
  CAF_CHECK_EQUAL(w.quantile(0.5)->count(), 50);
  CAF_CHECK_EQUAL(w.quantile(0.99)->count(), 99);
  CAF_CHECK_EQUAL(w.quantile(1.0)->count(), 100);
  CAF_CHECK_EQUAL(w.quantile(0.0)->count(), 1);
  // 100 more of 1000 ms push every older sample out.
  for (int i = 0; i < 100; ++i)
    w.add(1000ms);
  CAF_CHECK_EQUAL(w.size(), 100u);
  CAF_CHECK_EQUAL(w.quantile(0.0)->count(), 1000);
}

CAF_TEST(an_adaptive_deadline_is_the_midpoint_until_twenty_samples_then_p99_times_factor) {
  config::adaptive_timeout a;
  a.floor = 1000ms;
  a.ceiling = 61000ms;
  a.factor = 2.0;
  latency_window w;
  for (int i = 0; i < 19; ++i)
    w.add(4000ms);
  CAF_CHECK_EQUAL(adaptive_deadline(a, w).count(), 31000);
  w.add(4000ms);
  CAF_CHECK_EQUAL(adaptive_deadline(a, w).count(), 8000);
  CAF_CHECK_EQUAL(recommended_timeout(w)->count(), 8000);
}

CAF_TEST(an_adaptive_deadline_stays_within_its_floor_and_ceiling) {
  config::adaptive_timeout a;
  a.floor = 1000ms;
  a.ceiling = 10000ms;
  latency_window quick;
  for (int i = 0; i < 50; ++i)
    quick.add(100ms);
  CAF_CHECK_EQUAL(adaptive_deadline(a, quick).count(), 1000);
  CAF_CHECK_EQUAL(recommended_timeout(quick)->count(), 1000); // never under 1 s
  latency_window slow;
  for (int i = 0; i < 50; ++i)
    slow.add(9000ms);
  CAF_CHECK_EQUAL(adaptive_deadline(a, slow).count(), 10000);
}
