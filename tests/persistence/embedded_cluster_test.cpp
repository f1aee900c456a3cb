// embedded_cluster: starting and reusing the private cluster, from one and from
// racing processes, and recovering from stale postmaster.pid files and crashes.
#define CAF_SUITE embedded_cluster
#include "persistence/detail/run_process.hpp"
#include "persistence/embedded_cluster.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <algorithm>
#include <caf/test/unit_test.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <libpq-fe.h>
#include <map>
#include <memory>
#include <optional>
#include <signal.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace turing::persistence;
using turing::testing::pg_test_cluster;
using turing::testing::temp_data_dir;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

/// Exit codes of a forked ensure_running.
constexpr int child_started = 10;
constexpr int child_reused = 11;
constexpr int child_failed = 1;

embedded_cluster_options options_for(const fs::path& data_dir) {
  embedded_cluster_options options;
  options.data_dir = data_dir;
  return options;
}

/// Runs `sql` and returns the first field of its last result: "" for a
/// command, "<...>" describing what went wrong otherwise, so a failed check
/// shows the server's message.
std::string query(const std::string& conninfo, const std::string& sql) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(conninfo.c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK)
    return "<cannot connect: " + std::string(PQerrorMessage(conn.get())) + ">";
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn.get(), sql.c_str()), &PQclear);
  switch (PQresultStatus(res.get())) {
  case PGRES_COMMAND_OK:
    return "";
  case PGRES_TUPLES_OK:
    return PQntuples(res.get()) > 0 ? PQgetvalue(res.get(), 0, 0) : "<no rows>";
  default:
    return "<error: " + std::string(PQerrorMessage(conn.get())) + ">";
  }
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// The pid on the first line of postmaster.pid, 0 when there is none.
pid_t postmaster_pid(const fs::path& cluster_dir) {
  std::ifstream in(cluster_dir / "postmaster.pid");
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

/// postmaster.pid with its first line replaced by `pid`.
std::string with_pid(const std::string& pid_file_text, pid_t pid) {
  auto rest = pid_file_text.substr(pid_file_text.find('\n'));
  return std::to_string(pid) + rest;
}

/// Live postmasters serving `cluster_dir`, found by their -D argument (the
/// postmaster keeps its argv; backends retitle themselves and carry no -D).
/// A child the postmaster has just forked (a backend, an autovacuum worker)
/// still shows the postmaster's argv until it retitles itself: a process
/// whose parent matches too is such a child, not a second postmaster.
int count_postmasters(const fs::path& cluster_dir) {
  std::map<pid_t, pid_t> parent_of; // every process with -D cluster_dir
  for (auto& entry : fs::directory_iterator("/proc")) {
    auto name = entry.path().filename().string();
    if (!std::all_of(name.begin(), name.end(), ::isdigit))
      continue;
    auto cmdline = read_file(entry.path() / "cmdline");
    std::vector<std::string> args;
    std::string arg;
    for (char c : cmdline) {
      if (c == '\0') {
        args.push_back(arg);
        arg.clear();
      } else {
        arg += c;
      }
    }
    if (args.empty() || fs::path(args[0]).filename() != "postgres")
      continue;
    for (size_t i = 0; i + 1 < args.size(); ++i)
      if (args[i] == "-D" && fs::path(args[i + 1]) == cluster_dir) {
        // /proc/<pid>/stat: "pid (comm) state ppid ...", comm may hold spaces.
        auto stat = read_file(entry.path() / "stat");
        auto close = stat.rfind(')');
        long ppid = 0;
        if (close != std::string::npos)
          std::sscanf(stat.c_str() + close + 1, " %*c %ld", &ppid);
        parent_of[static_cast<pid_t>(std::stol(name))] = static_cast<pid_t>(ppid);
        break;
      }
  }
  int count = 0;
  for (const auto& [pid, ppid] : parent_of)
    count += parent_of.count(ppid) == 0 ? 1 : 0;
  return count;
}

int count_files_named(const fs::path& dir, const std::string& name) {
  int count = 0;
  for (auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.path().filename() == name)
      ++count;
  return count;
}

/// Polls `condition` until it holds or `timeout` passes.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = 30s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

fs::path pg_ctl() {
  const char* env = std::getenv("TURING_PG_BIN_DIR");
  return fs::path(env != nullptr && *env != '\0' ? env : "/usr/lib/postgresql/15/bin") / "pg_ctl";
}

/// A pid that no process has right now: a child's, after reaping it.
pid_t free_pid() {
  for (;;) {
    pid_t pid = fork();
    if (pid == 0)
      _exit(0);
    waitpid(pid, nullptr, 0);
    if (kill(pid, 0) != 0 && errno == ESRCH)
      return pid;
  }
}

/// Forks a child that waits until every copy of `go[1]` is closed (so
/// several children start at the same moment), runs ensure_running and
/// reports through its exit code. The child leaves with _exit: it must not
/// run this process's static destructors.
pid_t fork_ensure_running(const embedded_cluster_options& options, const int go[2]) {
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  if (go != nullptr) {
    close(go[1]);
    char c;
    ssize_t n;
    do {
      n = read(go[0], &c, 1);
    } while (n > 0 || (n < 0 && errno == EINTR));
  }
  try {
    auto cluster = embedded_cluster::ensure_running(options);
    _exit(cluster.started_here() ? child_started : child_reused);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child %d: %s\n", getpid(), e.what());
    _exit(child_failed);
  }
}

int exit_code_of(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// Captures what turing logs through spdlog's default logger while it lives.
/// Install it before starting threads that log, remove it after joining them.
class log_capture {
public:
  log_capture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~log_capture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  bool saw(const std::string& text) const {
    auto lines = sink_->last_formatted();
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& line) { return contains(line, text); });
  }

private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

/// Restores an environment variable when the test ends.
struct scoped_env {
  std::string name;
  std::optional<std::string> old;
  scoped_env(std::string n, const char* value) : name(std::move(n)) {
    if (const char* v = std::getenv(name.c_str()))
      old = v;
    setenv(name.c_str(), value, 1);
  }
  ~scoped_env() {
    if (old)
      setenv(name.c_str(), old->c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

} // namespace

CAF_TEST(starts_a_cluster_then_reuses_it) {
  temp_data_dir dir;
  auto options = options_for(dir.path());
  auto first = embedded_cluster::ensure_running(options);
  CAF_MESSAGE("first: " << first.found_state());
  CAF_CHECK(first.started_here());
  CAF_CHECK(contains(first.found_state(), "initialised new cluster"));
  CAF_CHECK_EQUAL(first.cluster_dir().string(), (dir.path() / "postgres").string());
  CAF_CHECK_EQUAL(first.connection_string(), "host=" + (dir.path() / "socket").string() +
                                                 " port=5432 dbname=turing user=turing");
  CAF_CHECK_EQUAL(query(first.connection_string(), "SELECT 1"), "1");
  CAF_CHECK_EQUAL(query(first.connection_string(), "SELECT current_database()"), "turing");
  // Unix socket only: no TCP listener.
  CAF_CHECK_EQUAL(query(first.connection_string(), "SHOW listen_addresses"), "");
  CAF_CHECK_EQUAL(query(first.connection_string(), "SHOW fsync"), "on");

  auto second = embedded_cluster::ensure_running(options);
  CAF_MESSAGE("second: " << second.found_state());
  CAF_CHECK(!second.started_here());
  CAF_CHECK_EQUAL(second.connection_string(), first.connection_string());
  CAF_CHECK(contains(second.found_state(), "reused running cluster (pid " +
                                               std::to_string(postmaster_pid(first.cluster_dir())) +
                                               ")"));
  CAF_CHECK_EQUAL(count_postmasters(first.cluster_dir()), 1);

  CAF_CHECK(embedded_cluster::stop(dir.path()));
  CAF_CHECK(!embedded_cluster::stop(dir.path()));
  CAF_CHECK_EQUAL(count_postmasters(first.cluster_dir()), 0);

  // Cleanly stopped: the next run starts the same cluster again.
  auto third = embedded_cluster::ensure_running(options);
  CAF_MESSAGE("third: " << third.found_state());
  CAF_CHECK(third.started_here());
  CAF_CHECK(
      contains(third.found_state(), "started existing cluster at " + first.cluster_dir().string()));
  CAF_CHECK_EQUAL(query(third.connection_string(), "SELECT 1"), "1");
  CAF_CHECK(embedded_cluster::stop(dir.path()));
  CAF_CHECK_EQUAL(count_postmasters(first.cluster_dir()), 0);
}

CAF_TEST(a_second_process_reuses_the_running_cluster) {
  temp_data_dir dir;
  auto options = options_for(dir.path());
  auto cluster = embedded_cluster::ensure_running(options);
  auto pid = postmaster_pid(cluster.cluster_dir());
  CAF_REQUIRE(pid > 0);

  CAF_CHECK_EQUAL(exit_code_of(fork_ensure_running(options, nullptr)), child_reused);
  CAF_CHECK_EQUAL(postmaster_pid(cluster.cluster_dir()), pid);
  CAF_CHECK_EQUAL(count_files_named(dir.path(), "postmaster.pid"), 1);
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 1);

  CAF_CHECK(embedded_cluster::stop(dir.path()));
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 0);
}

CAF_TEST(two_processes_racing_on_an_empty_data_dir_share_one_cluster) {
  temp_data_dir dir;
  // Not created yet, and with a space: both children create it, and the path
  // goes through pg_ctl's shell intact.
  auto data_dir = dir.path() / "racing data dir";
  auto options = options_for(data_dir);
  int go[2];
  CAF_REQUIRE_EQUAL(pipe(go), 0);
  auto a = fork_ensure_running(options, go);
  auto b = fork_ensure_running(options, go);
  close(go[0]);
  close(go[1]); // both children see EOF now and race
  std::vector<int> codes = {exit_code_of(a), exit_code_of(b)};
  std::sort(codes.begin(), codes.end());
  CAF_CHECK_EQUAL(codes[0], child_started);
  CAF_CHECK_EQUAL(codes[1], child_reused);

  auto cluster = embedded_cluster::ensure_running(options);
  CAF_CHECK(!cluster.started_here());
  CAF_CHECK_EQUAL(query(cluster.connection_string(), "SELECT 1"), "1");
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 1);
  CAF_CHECK_EQUAL(count_files_named(data_dir, "postmaster.pid"), 1);

  CAF_CHECK(embedded_cluster::stop(data_dir));
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 0);
}

CAF_TEST(removes_a_stale_postmaster_pid_whose_pid_is_gone) {
  temp_data_dir dir;
  auto options = options_for(dir.path());
  auto cluster = embedded_cluster::ensure_running(options);
  auto pid_file = cluster.cluster_dir() / "postmaster.pid";
  auto real = read_file(pid_file);
  CAF_REQUIRE(embedded_cluster::stop(dir.path()));
  CAF_REQUIRE(!fs::exists(pid_file));

  auto dead = free_pid();
  std::ofstream(pid_file) << with_pid(real, dead);
  CAF_CHECK(!embedded_cluster::stop(dir.path())); // nothing to stop: the pid is gone

  auto again = embedded_cluster::ensure_running(options);
  CAF_MESSAGE("found: " << again.found_state());
  CAF_CHECK(again.started_here());
  CAF_CHECK(contains(again.found_state(),
                     "removed stale postmaster.pid (pid " + std::to_string(dead) + " is gone)"));
  CAF_CHECK_NOT_EQUAL(postmaster_pid(cluster.cluster_dir()), dead);
  CAF_CHECK_EQUAL(query(again.connection_string(), "SELECT 1"), "1");

  CAF_CHECK(embedded_cluster::stop(dir.path()));
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 0);
}

CAF_TEST(removes_a_stale_postmaster_pid_whose_pid_was_reused) {
  temp_data_dir dir;
  auto options = options_for(dir.path());
  auto cluster = embedded_cluster::ensure_running(options);
  auto pid_file = cluster.cluster_dir() / "postmaster.pid";
  auto real = read_file(pid_file);
  CAF_REQUIRE(embedded_cluster::stop(dir.path()));

  // After a crash and a reboot the old pid often belongs to someone else;
  // this test process plays that unrelated, very much alive process.
  std::ofstream(pid_file) << with_pid(real, getpid());
  CAF_CHECK(!embedded_cluster::stop(dir.path())); // must not signal us

  auto again = embedded_cluster::ensure_running(options);
  CAF_MESSAGE("found: " << again.found_state());
  CAF_CHECK(again.started_here());
  CAF_CHECK(contains(again.found_state(), "removed stale postmaster.pid (pid " +
                                              std::to_string(getpid()) +
                                              " is not a postmaster of this cluster)"));
  CAF_CHECK_NOT_EQUAL(postmaster_pid(cluster.cluster_dir()), getpid());
  CAF_CHECK_EQUAL(query(again.connection_string(), "SELECT 1"), "1");

  CAF_CHECK(embedded_cluster::stop(dir.path()));
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 0);
}

CAF_TEST(recovers_after_the_postmaster_is_killed) {
  temp_data_dir dir;
  auto options = options_for(dir.path());
  auto cluster = embedded_cluster::ensure_running(options);
  CAF_REQUIRE_EQUAL(query(cluster.connection_string(),
                          "CREATE TABLE survivors (v text); "
                          "INSERT INTO survivors VALUES ('written before the crash')"),
                    "");
  auto pid = postmaster_pid(cluster.cluster_dir());
  CAF_REQUIRE(pid > 0);
  CAF_REQUIRE_EQUAL(kill(pid, SIGKILL), 0);

  // Straight away: the postmaster may still be dying and its backends still
  // hold shared memory; ensure_running has to cope with both.
  auto again = embedded_cluster::ensure_running(options);
  CAF_MESSAGE("found: " << again.found_state());
  CAF_CHECK(again.started_here());
  CAF_CHECK(contains(again.found_state(), "pid " + std::to_string(pid)));
  CAF_CHECK_NOT_EQUAL(postmaster_pid(cluster.cluster_dir()), pid);
  CAF_CHECK_EQUAL(query(again.connection_string(), "SELECT v FROM survivors"),
                  "written before the crash");
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 1);

  CAF_CHECK(embedded_cluster::stop(dir.path()));
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 0);
}

CAF_TEST(retries_the_start_while_old_backends_hold_shared_memory) {
  temp_data_dir dir;
  auto options = options_for(dir.path());
  auto cluster = embedded_cluster::ensure_running(options);
  CAF_REQUIRE_EQUAL(query(cluster.connection_string(),
                          "CREATE TABLE survivors (v text); "
                          "INSERT INTO survivors VALUES ('written before the crash')"),
                    "");
  // A backend busy computing does not notice its postmaster died, and keeps
  // the old shared memory attached until it is done (here: until we kill it).
  std::unique_ptr<PGconn, decltype(&PQfinish)> busy(
      PQconnectdb(cluster.connection_string().c_str()), &PQfinish);
  CAF_REQUIRE_EQUAL(PQstatus(busy.get()), CONNECTION_OK);
  auto backend = static_cast<pid_t>(PQbackendPID(busy.get()));
  CAF_REQUIRE_EQUAL(
      PQsendQuery(busy.get(), "SELECT count(*) FROM generate_series(1, 1000000000000)"), 1);
  auto activity = "SELECT state FROM pg_stat_activity WHERE pid = " + std::to_string(backend);
  CAF_REQUIRE(eventually([&] { return query(cluster.connection_string(), activity) == "active"; }));
  auto pid = postmaster_pid(cluster.cluster_dir());
  CAF_REQUIRE_EQUAL(kill(pid, SIGKILL), 0);

  std::optional<embedded_cluster> result;
  std::string error;
  {
    log_capture log;
    std::thread caller([&] {
      try {
        result = embedded_cluster::ensure_running(options);
      } catch (const std::exception& e) {
        error = e.what();
      }
    });
    CAF_CHECK(eventually([&] { return log.saw("still hold its shared memory"); }));
    kill(backend, SIGKILL);
    caller.join();
  }
  CAF_CHECK_EQUAL(error, "");
  CAF_REQUIRE(result.has_value());
  CAF_MESSAGE("found: " << result->found_state());
  CAF_CHECK(result->started_here());
  CAF_CHECK_EQUAL(query(result->connection_string(), "SELECT v FROM survivors"),
                  "written before the crash");
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 1);

  CAF_CHECK(embedded_cluster::stop(dir.path()));
  CAF_CHECK_EQUAL(count_postmasters(cluster.cluster_dir()), 0);
}

CAF_TEST(waits_for_a_postmaster_that_is_still_starting) {
  temp_data_dir dir;
  auto options = options_for(dir.path());
  auto cluster_dir = embedded_cluster::ensure_running(options).cluster_dir();
  CAF_REQUIRE(embedded_cluster::stop(dir.path()));

  // Someone starts the cluster behind turing's back (pg_ctl -W: no waiting)
  // and we freeze the postmaster mid-start, so ensure_running finds a
  // postmaster of this cluster that does not accept connections.
  std::vector<std::string> argv;
  if (geteuid() == 0)
    argv = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  for (std::string arg : {pg_ctl().string(), std::string("start"), std::string("-W"),
                          std::string("-D"), cluster_dir.string(), std::string("-l"),
                          (dir.path() / "postgres.log").string(), std::string("-o"),
                          "-c listen_addresses='' -c unix_socket_directories='" +
                              (dir.path() / "socket").string() + "'"})
    argv.push_back(arg);
  auto started = turing::persistence::detail::run_process(argv, nullptr, 30s);
  CAF_REQUIRE_EQUAL(started.exit_code, 0);
  CAF_REQUIRE(eventually([&] { return postmaster_pid(cluster_dir) > 0; }));
  auto pid = postmaster_pid(cluster_dir);
  CAF_REQUIRE_EQUAL(kill(pid, SIGSTOP), 0);

  std::optional<embedded_cluster> result;
  std::string error;
  {
    log_capture log;
    std::thread caller([&] {
      try {
        result = embedded_cluster::ensure_running(options);
      } catch (const std::exception& e) {
        error = e.what();
      }
    });
    CAF_CHECK(eventually([&] { return log.saw("waiting for it to finish starting or stopping"); }));
    kill(pid, SIGCONT);
    caller.join();
  }

  CAF_CHECK_EQUAL(error, "");
  CAF_REQUIRE(result.has_value());
  CAF_MESSAGE("found: " << result->found_state());
  CAF_CHECK(!result->started_here());
  CAF_CHECK(contains(result->found_state(), "waited for postmaster (pid " + std::to_string(pid) +
                                                ") to start, then reused running cluster"));
  CAF_CHECK_EQUAL(postmaster_pid(cluster_dir), pid);
  CAF_CHECK_EQUAL(count_postmasters(cluster_dir), 1);
  CAF_CHECK_EQUAL(query(result->connection_string(), "SELECT 1"), "1");

  CAF_CHECK(embedded_cluster::stop(dir.path()));
  CAF_CHECK_EQUAL(count_postmasters(cluster_dir), 0);
}

CAF_TEST(rejects_a_socket_path_that_is_too_long) {
  temp_data_dir dir;
  auto data_dir = dir.path() / std::string(100, 'x');
  auto socket = (data_dir / "socket" / ".s.PGSQL.5432").string();
  std::string message;
  try {
    embedded_cluster::ensure_running(options_for(data_dir));
  } catch (const cluster_error& e) {
    message = e.what();
  }
  CAF_MESSAGE("error: " << message);
  CAF_CHECK(contains(message, socket));
  CAF_CHECK(contains(message, "107"));
  CAF_CHECK(!contains(message, "\n"));
  CAF_CHECK(!fs::exists(data_dir)); // refused before creating anything
}

CAF_TEST(names_the_package_when_binaries_are_missing) {
  temp_data_dir dir;
  scoped_env bin_dir("TURING_PG_BIN_DIR", "/nonexistent/pg/bin");
  std::string message;
  try {
    embedded_cluster::ensure_running(options_for(dir.path()));
  } catch (const cluster_error& e) {
    message = e.what();
  }
  CAF_MESSAGE("error: " << message);
  CAF_CHECK(contains(message, "/nonexistent/pg/bin/"));
  CAF_CHECK(contains(message, "install postgresql-15"));
}

CAF_TEST(names_a_parent_directory_postgres_cannot_traverse) {
  if (geteuid() != 0) {
    CAF_MESSAGE("skipped: only root runs the cluster as another user");
    return;
  }
  temp_data_dir dir;
  auto locked = dir.path() / "locked";
  fs::create_directory(locked);
  chmod(locked.c_str(), 0700);
  std::string message;
  try {
    embedded_cluster::ensure_running(options_for(locked / "data"));
  } catch (const cluster_error& e) {
    message = e.what();
  }
  CAF_MESSAGE("error: " << message);
  CAF_CHECK(contains(message, "cannot traverse " + locked.string() + " "));
}

CAF_TEST(test_harness_hands_out_empty_databases) {
  auto& cluster = pg_test_cluster::instance();
  auto a = cluster.fresh_database();
  auto b = cluster.fresh_database();
  CAF_CHECK_NOT_EQUAL(a, b);
  CAF_CHECK_EQUAL(query(a, "CREATE TABLE only_in_a (x int)"), "");
  CAF_CHECK_EQUAL(query(b, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0");
  CAF_CHECK_EQUAL(query(a, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "1");
  CAF_CHECK_EQUAL(query(cluster.admin_connection_string(), "SELECT current_database()"),
                  "postgres");
  CAF_CHECK_EQUAL(query(a, "SELECT left(current_database(), 2)"), "t_");
}
