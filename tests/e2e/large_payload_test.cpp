// Large items in flight never cost a lease (issue 10): while four 16 MB (in
// CI) or 50 MB (label `slow`) payloads are claimed, handed on and written, the
// lease keeper's heartbeats (on a connection of their own) keep every lease,
// so no attempt is lost and the rescuer returns nothing. The real turing
// binary on a real PostgreSQL.
#define CAF_SUITE large_payload
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"
#include "tests/e2e/e2e_support.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/test/unit_test.hpp>
#include <fstream>
#include <pqxx/pqxx>

using namespace turing::persistence;
using namespace turing::testing;

namespace {

void four_items_in_flight_lose_no_lease(std::size_t item_bytes) {
  temp_dir dir;
  auto dsn = pg_test_cluster::instance().fresh_database();
  auto config = dir.path / "large.toml";
  // Heartbeats every second against a 15 s lease: five times the defaults'
  // ratio (10 s against 30 s). With 5 s, the suite's other tests sharing the
  // two cores once kept a claim of 16 MB items from reaching the lease keeper
  // before its lease ran out.
  std::ofstream{config} << "sinks = [\"done\"]\n\n[database]\nurl = \"" << dsn << "\"\n\n"
                        << R"toml([runtime]
lease_ttl = "15s"
heartbeat_interval = "1s"
rescue_interval = "1s"
max_payload = "128MB"

[stages.read]
handler = "builtin"
function = "turing.pass"
entry = true
routes = { ok = "grade" }

[stages.grade]
handler = "builtin"
function = "turing.pass"
routes = { ok = "commit" }

[stages.commit]
handler = "builtin"
function = "turing.pass"
routes = { ok = "done" }
)toml";
  auto items = dir.path / "large.jsonl";
  {
    std::ofstream out{items};
    for (int i = 0; i < 4; ++i) {
      std::string text;
      text.reserve(item_bytes);
      for (uint64_t x = 88172645463325252ull + i; text.size() < item_bytes;) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; // words that do not compress to nothing
        text += static_cast<char>('a' + x % 26);
        if (x % 7 == 0)
          text += ' ';
      }
      out << "{\"n\": " << i << ", \"document\": \"" << text << "\"}\n";
    }
  }
  std::string out;
  CAF_REQUIRE_EQUAL(run_turing(dir,
                               {"--log-level", "info", "enqueue", "--config", config.string(),
                                "--stage", "read", "--file", items.string()},
                               &out),
                    0);
  auto rc = run_turing(
      dir, {"--log-level", "info", "run", "--config", config.string(), "--until-drained"}, &out,
      std::chrono::minutes(5));
  CAF_CHECK_EQUAL(rc, 0);
  // What the lease keeper and the rescuer would have said.
  CAF_CHECK(out.find("heartbeat of") == std::string::npos);
  CAF_CHECK(out.find("lease(s) lost") == std::string::npos);
  CAF_CHECK(out.find("expired lease(s) to ready") == std::string::npos);
  if (out.find("heartbeat of") != std::string::npos || rc != 0)
    CAF_MESSAGE(out);
  // And what the audit log holds: every attempt completed, none lost.
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  auto r = tx.exec1("SELECT count(*) FILTER (WHERE result = 'completed'), "
                    "count(*) FILTER (WHERE result <> 'completed') FROM turing.attempts");
  CAF_CHECK_EQUAL(r[0].as<int64_t>(), 12);
  CAF_CHECK_EQUAL(r[1].as<int64_t>(), 0);
  auto sizes = tx.exec1("SELECT count(*), min(length(result->>'document')) FROM turing.items "
                        "WHERE sink = 'done'");
  CAF_CHECK_EQUAL(sizes[0].as<int64_t>(), 4);
  CAF_CHECK_GREATER_OR_EQUAL(sizes[1].as<int64_t>(), static_cast<int64_t>(item_bytes));
}

} // namespace

CAF_TEST(four_large_items_in_flight_lose_no_lease_and_fail_no_heartbeat) {
  four_items_in_flight_lose_no_lease(std::size_t{16} << 20);
}

// The issue's own size; about three times as long, so behind the `slow` label.
CAF_TEST(four_50_mb_items_in_flight_lose_no_lease_and_fail_no_heartbeat) {
  four_items_in_flight_lose_no_lease(std::size_t{50} << 20);
}
