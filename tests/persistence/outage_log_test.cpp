// The outage log: a database outage is one line when it starts, a summary
// every interval while it lasts, and one line when it ends, however many
// operations fail meanwhile (issue 9: 1,228 warnings for a 25 s outage).
#define CAF_SUITE outage_log
#include "persistence/outage_log.hpp"

#include <caf/test/unit_test.hpp>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sstream>

using namespace turing::persistence;
using namespace std::chrono_literals;

namespace {

struct fixture {
  std::ostringstream lines;
  std::chrono::steady_clock::time_point now{std::chrono::hours(1)};
  std::shared_ptr<outage_log> log;

  fixture() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(lines);
    sink->set_pattern("%l %v");
    auto logger = std::make_shared<spdlog::logger>("outage_test", sink);
    logger->set_level(spdlog::level::debug);
    outage_log::options o;
    o.database = "host=/tmp/socket dbname=turing user=turing password=***";
    o.summary_interval = 10s;
    o.clock = [this] { return now; };
    o.logger = logger;
    log = std::make_shared<outage_log>(o);
  }

  std::vector<std::string> logged() const {
    std::vector<std::string> out;
    std::istringstream in{lines.str()};
    for (std::string line; std::getline(in, line);)
      out.push_back(line);
    return out;
  }

  static bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(outage_log_tests, fixture)

CAF_TEST(a_25_s_outage_with_a_thousand_failures_is_one_line_two_summaries_and_one_end) {
  // 40 failures a second for 25 s: store workers, heartbeats, claims.
  for (int ms = 0; ms < 25000; ms += 25) {
    now = std::chrono::steady_clock::time_point{std::chrono::hours(1)} +
          std::chrono::milliseconds(ms);
    log->unreachable("claim", "cannot connect to database 'host=/tmp/socket': refused");
  }
  now += 25ms;
  log->reachable();
  auto out = logged();
  for (const auto& l : out)
    CAF_MESSAGE(l);
  CAF_REQUIRE_EQUAL(out.size(), 4u);
  CAF_CHECK(has(out[0], "warning database unreachable (host=/tmp/socket"));
  CAF_CHECK(has(out[0], "claim: cannot connect"));
  CAF_CHECK(has(out[1], "database unreachable for 10 s"));
  CAF_CHECK(has(out[2], "database unreachable for 20 s"));
  CAF_CHECK(has(out[3], "info database reachable again after 25 s"));
  CAF_CHECK(has(out[3], "1000 operation(s) failed"));
  CAF_CHECK(!log->down());
  CAF_CHECK_EQUAL(log->outages(), 1);
}

CAF_TEST(the_summary_counts_the_distinct_writes_waiting_and_forgets_written_ones) {
  log->unreachable("complete", "database connection lost");
  log->writes_failed({{1, 1}, {2, 1}, {3, 1}});
  log->writes_failed({{1, 1}, {2, 1}, {3, 1}}); // the same batch, retried
  log->writes_failed({{4, 2}});
  log->writes_done({{4, 2}});
  now += 12s;
  log->unreachable("complete", "database connection lost");
  auto out = logged();
  CAF_REQUIRE_EQUAL(out.size(), 2u);
  CAF_MESSAGE(out[1]);
  CAF_CHECK(has(out[1], "database unreachable for 12 s"));
  CAF_CHECK(has(out[1], "3 write(s) waiting"));
}

CAF_TEST(secondhand_failures_are_warnings_without_an_outage_and_debug_during_one) {
  CAF_CHECK_EQUAL(log->secondhand_failure(), spdlog::level::warn);
  log->unreachable("heartbeat", "database connection lost");
  CAF_CHECK_EQUAL(log->secondhand_failure(), spdlog::level::debug);
  // A secondhand failure after the interval brings the summary too.
  now += 11s;
  CAF_CHECK_EQUAL(log->secondhand_failure(), spdlog::level::debug);
  log->reachable();
  CAF_CHECK_EQUAL(log->secondhand_failure(), spdlog::level::warn);
  auto out = logged();
  CAF_REQUIRE_EQUAL(out.size(), 3u);
  CAF_CHECK(has(out[1], "database unreachable for 11 s"));
  CAF_CHECK(has(out[2], "reachable again after 11 s"));
}

CAF_TEST(a_second_outage_is_told_afresh_and_a_success_without_outage_says_nothing) {
  log->reachable();
  CAF_CHECK(logged().empty());
  log->unreachable("claim", "refused");
  now += 2s;
  log->reachable();
  now += 30s;
  log->unreachable("rescue", "refused again");
  now += 3s;
  log->reachable();
  auto out = logged();
  CAF_REQUIRE_EQUAL(out.size(), 4u);
  CAF_CHECK(has(out[2], "rescue: refused again"));
  CAF_CHECK(has(out[3], "reachable again after 3 s"));
  CAF_CHECK_EQUAL(log->outages(), 2);
}

CAF_TEST_FIXTURE_SCOPE_END()
