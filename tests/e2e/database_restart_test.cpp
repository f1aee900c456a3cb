// PostgreSQL restarted (pg_ctl restart -m fast) twice while `turing run`
// drains a pass chain under load: the process reconnects by itself and is
// never restarted, tells each outage once and its end, and every item ends in
// exactly one sink with no message completed twice (issue 9). And the
// operations listener through an outage: one warning per route, not per poll.
#define CAF_SUITE database_restart
#include "persistence/pg_store.hpp"
#include "tests/e2e/http_support.hpp"
#include "tests/e2e/pass_chain.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/test/unit_test.hpp>
#include <csignal>
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

/// pg_ctl `action` (restart, stop or start; -m fast) on the test cluster, as
/// the postgres user under root; `round` names its log file.
int pg_ctl_cluster(const temp_dir& dir, const fs::path& data_dir, const std::string& action,
                   int round) {
  const char* env = std::getenv("TURING_PG_BIN_DIR");
  fs::path bin = env != nullptr && *env != '\0' ? env : "/usr/lib/postgresql/15/bin";
  std::vector<std::string> argv{(bin / "pg_ctl").string(),
                                action,
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
  if (action == "start") {
    // start knows nothing of the options the cluster was started with
    // (socket directory, no TCP); restart reads them from postmaster.opts,
    // which a stop leaves in place: the same line, after the program's path.
    std::string line;
    std::ifstream opts{data_dir / "postgres" / "postmaster.opts"};
    std::getline(opts, line);
    auto first_arg = line.find(" \"");
    if (first_arg != std::string::npos)
      argv.insert(argv.end(), {"-o", line.substr(first_arg + 1)});
  }
  child_process pg_ctl{argv,
                       dir.path / ("pg_ctl-" + action + "-" + std::to_string(round) + ".log")};
  int rc = pg_ctl.wait(90s);
  if (rc != 0)
    CAF_MESSAGE("pg_ctl " << action << " exited " << rc << ": " << pg_ctl.output());
  return rc;
}

/// Lines of `log` that hold every one of `parts`.
size_t lines_with(const std::string& log, std::initializer_list<std::string> parts) {
  size_t n = 0;
  size_t begin = 0;
  while (begin < log.size()) {
    auto end = log.find('\n', begin);
    if (end == std::string::npos)
      end = log.size();
    auto line = log.substr(begin, end - begin);
    bool all = true;
    for (const auto& p : parts)
      all = all && line.find(p) != std::string::npos;
    n += all ? 1 : 0;
    begin = end + 1;
  }
  return n;
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
    CAF_REQUIRE_EQUAL(pg_ctl_cluster(dir, cluster.data_dir(), "restart", round), 0);
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

CAF_TEST(the_operations_listener_warns_once_per_outage_not_once_per_poll_and_reads_again_after) {
  temp_dir dir;
  auto& cluster = pg_test_cluster::instance();
  auto dsn = cluster.fresh_database();
  auto config = write_pass_chain_config(dir, "url = \"" + dsn + "\"", 2, "", "listener.toml");
  add_http_section(config, "127.0.0.1:0");
  std::string enqueued;
  CAF_REQUIRE_EQUAL(run_turing(dir,
                               {"enqueue", "--config", config.string(), "--stage", "s1", "--file",
                                write_numbered_items(dir, 50).string()},
                               &enqueued),
                    0);
  auto node =
      start_turing(dir, {"run", "--config", config.string(), "--node", "polled"}, "listener.log");
  auto port = logged_http_port(node, 60s);
  CAF_REQUIRE(port.has_value());
  CAF_REQUIRE(eventually([&] { return http_get(*port, "/api/status").status == 200; }, 60s));

  CAF_REQUIRE_EQUAL(pg_ctl_cluster(dir, cluster.data_dir(), "stop", 1), 0);
  // A dashboard and a scraper polling through the outage. The status cache
  // rereads at most every 2 s and not at all after a failure, so every 503
  // past the first is a failed read of its own; polled until both routes have
  // failed to read, then 20 times more.
  int unavailable = 0, metrics_served = 0, metrics_polls = 0;
  auto poll = [&] {
    ++metrics_polls;
    metrics_served += http_get(*port, "/metrics").status == 200 ? 1 : 0;
    unavailable += http_get(*port, "/api/status").status == 503 ? 1 : 0;
  };
  CAF_REQUIRE(eventually(
      [&] {
        poll();
        return unavailable > 0 && lines_with(node.output(), {" warning ", "http: /metrics"}) > 0;
      },
      60s));
  for (int i = 0; i < 20; ++i)
    poll();
  CAF_CHECK_EQUAL(metrics_served, metrics_polls); // the counters, without run progress
  auto log = node.output();
  auto status_warnings = lines_with(log, {" warning ", "http: /api/status"});
  auto metrics_warnings = lines_with(log, {" warning ", "http: /metrics"});
  CAF_MESSAGE(unavailable << " answers 503 from /api/status, " << status_warnings
                          << " warning(s) for it; " << metrics_polls << " scrapes, "
                          << metrics_warnings << " warning(s) for /metrics");
  CAF_CHECK_EQUAL(status_warnings, 1u);
  CAF_CHECK_EQUAL(metrics_warnings, 1u);

  // Once the database is back, each route reads again and says so once.
  CAF_REQUIRE_EQUAL(pg_ctl_cluster(dir, cluster.data_dir(), "start", 2), 0);
  CAF_REQUIRE(eventually([&] { return http_get(*port, "/api/status").status == 200; }, 60s));
  CAF_CHECK(eventually(
      [&] {
        CAF_REQUIRE_EQUAL(http_get(*port, "/metrics").status, 200);
        return lines_with(node.output(), {"http: /metrics", "reads again after"}) == 1;
      },
      30s));
  CAF_CHECK_EQUAL(lines_with(node.output(), {"http: /api/status", "reads again after"}), 1u);
  CAF_CHECK(node.running());
  node.signal(SIGTERM);
  CAF_CHECK_EQUAL(node.wait(60s), 0);
}
