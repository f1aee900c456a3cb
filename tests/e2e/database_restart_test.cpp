// PostgreSQL restarted (pg_ctl restart -m fast) twice while `turing run`
// drains a pass chain under load: the process reconnects by itself and is
// never restarted, tells each outage once and its end, and every item ends in
// exactly one sink with no message completed twice (issue 9).
#define CAF_SUITE database_restart
#include "persistence/pg_store.hpp"
#include "tests/e2e/pass_chain.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/test/unit_test.hpp>
#include <cstdlib>
#include <fstream>
#include <pqxx/pqxx>
#include <unistd.h>

using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1))
    ++n;
  return n;
}

int postmaster_pid(const fs::path& cluster_dir) {
  std::ifstream in{cluster_dir / "postmaster.pid"};
  int pid = 0;
  in >> pid;
  return pid;
}

/// pg_ctl restart -m fast of the test cluster, as the postgres user under root.
int restart_cluster(const temp_dir& dir, const fs::path& data_dir, int round) {
  const char* env = std::getenv("TURING_PG_BIN_DIR");
  fs::path bin = env != nullptr && *env != '\0' ? env : "/usr/lib/postgresql/15/bin";
  std::vector<std::string> argv{(bin / "pg_ctl").string(),
                                "restart",
                                "-D",
                                (data_dir / "postgres").string(),
                                "-m",
                                "fast",
                                "-w",
                                "-t",
                                "60",
                                "-l",
                                (data_dir / "postgres.log").string()};
  if (geteuid() == 0)
    argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
  child_process pg_ctl{argv, dir.path / ("pg_ctl-restart-" + std::to_string(round) + ".log")};
  int rc = pg_ctl.wait(90s);
  if (rc != 0)
    CAF_MESSAGE("pg_ctl restart exited " << rc << ": " << pg_ctl.output());
  return rc;
}

/// Messages done so far; -1 while the database is unreachable.
int64_t done_messages(const std::string& dsn) {
  try {
    pqxx::connection c{dsn};
    pqxx::nontransaction tx{c};
    return tx.exec1("SELECT count(*) FROM turing.messages WHERE state = 'done'")[0].as<int64_t>();
  } catch (const std::exception&) {
    return -1;
  }
}

} // namespace

CAF_TEST(postgresql_restarted_twice_mid_run_turing_reconnects_and_every_item_ends_once) {
  constexpr size_t items = 12000;
  constexpr int stages = 3;
  temp_dir dir;
  auto& cluster = pg_test_cluster::instance();
  auto dsn = cluster.fresh_database();
  auto config = write_pass_chain_config(dir, "url = \"" + dsn + "\"", stages,
                                        "poll_interval = \"500ms\"\nrescue_interval = \"1s\"");
  std::string out;
  CAF_REQUIRE_EQUAL(run_turing(dir,
                               {"enqueue", "--config", config.string(), "--stage", "s1", "--file",
                                write_numbered_items(dir, items).string()},
                               &out),
                    0);

  auto cluster_dir = cluster.data_dir() / "postgres";
  auto first_postmaster = postmaster_pid(cluster_dir);
  auto node = start_turing(
      dir, {"run", "--config", config.string(), "--until-drained", "--node", "restarted-db"},
      "run.log");
  constexpr int64_t transitions = static_cast<int64_t>(items) * stages;
  // Each restart lands while the chain is busy: a quarter, then half of all
  // transitions done.
  for (auto [round, at] : {std::pair{1, transitions / 4}, std::pair{2, transitions / 2}}) {
    CAF_REQUIRE(eventually([&] { return done_messages(dsn) >= at; }, 120s));
    CAF_REQUIRE(node.running());
    CAF_MESSAGE("restart " << round << " at " << done_messages(dsn) << " of " << transitions
                           << " transitions");
    CAF_REQUIRE_EQUAL(restart_cluster(dir, cluster.data_dir(), round), 0);
  }
  auto last_postmaster = postmaster_pid(cluster_dir);
  CAF_CHECK_NOT_EQUAL(first_postmaster, last_postmaster);

  auto rc = node.wait(180s);
  auto log = node.output();
  CAF_CHECK_EQUAL(rc, 0);
  if (rc != 0)
    CAF_MESSAGE(log);

  // Reconnected by itself, told each outage and its end, and no actor was
  // restarted for it: no crash loop inside the process either.
  auto outages = count_of(log, "database unreachable (");
  auto ends = count_of(log, "database reachable again after");
  CAF_MESSAGE(outages << " outage(s) told, " << ends << " end(s); " << count_of(log, " warning ")
                      << " warning line(s) in the run's log");
  CAF_CHECK(outages >= 1);
  CAF_CHECK_EQUAL(outages, ends);
  CAF_CHECK_EQUAL(count_of(log, " restarted "), 0u);
  CAF_CHECK_EQUAL(count_of(log, "gave up"), 0u);
  CAF_CHECK_EQUAL(count_of(log, "FAILED"), 0u);

  auto end = read_chain_end_state(dsn);
  CAF_CHECK_EQUAL(end.items, static_cast<int64_t>(items));
  CAF_CHECK_EQUAL(end.finished_in_out, static_cast<int64_t>(items));
  CAF_CHECK_EQUAL(end.live_messages, 0);
  CAF_CHECK_EQUAL(end.duplicate_messages, 0);
  CAF_CHECK_EQUAL(end.completed_twice, 0);
  for (const auto& [result, n] : end.attempts_by_result)
    CAF_MESSAGE("attempts " << result << ": " << n);

  std::string check;
  CAF_CHECK_EQUAL(run_turing(dir, {"check", "--config", config.string()}, &check), 0);
  CAF_CHECK(check.find("invariants hold") != std::string::npos);
  if (check.find("invariants hold") == std::string::npos)
    CAF_MESSAGE(check);
}
