// Test clusters: temp data dirs guarded by a cleanup process, and the shared
// per-binary cluster that hands out a fresh database to each test.
#include "tests/support/pg_test_cluster.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <libpq-fe.h>
#include <memory>
#include <signal.h>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace turing::testing {

namespace {

namespace fs = std::filesystem;

/// Runs in the guardian. $1 = pg_ctl, $2 = cluster dir, $3 = data dir. It
/// reads "done" when the owner cleaned up itself, and EOF when the owner
/// died without doing so (every copy of the write end is gone).
constexpr const char* guardian_script = R"sh(read -r line
[ "$line" = done ] && exit 0
if [ -f "$2/postmaster.pid" ]; then
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$1" stop -D "$2" -m immediate -w -t 30
  else
    "$1" stop -D "$2" -m immediate -w -t 30
  fi
fi >/dev/null 2>&1
rm -rf -- "$3"
)sh";

fs::path pg_ctl_path() {
  const char* env = std::getenv("TURING_PG_BIN_DIR");
  fs::path bin = env != nullptr && *env != '\0' ? env : "/usr/lib/postgresql/15/bin";
  return bin / "pg_ctl";
}

std::string conninfo_value(const std::string& v) {
  bool plain = !v.empty() && v.find_first_of(" \t\n\r'\\") == std::string::npos;
  if (plain)
    return v;
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "'";
}

persistence::embedded_cluster start_cluster(const fs::path& data_dir) {
  persistence::embedded_cluster_options options;
  options.data_dir = data_dir;
  // A throwaway cluster: nothing here must survive a crash of the machine,
  // and the suite spends less time waiting on the disk.
  options.fsync = false;
  return persistence::embedded_cluster::ensure_running(options);
}

} // namespace

// -- temp_data_dir ---------------------------------------------------------------

temp_data_dir::temp_data_dir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr)
    throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
  path_ = buf.data();
  // mkdtemp makes it 0700; the postgres user must be able to traverse it.
  ::chmod(path_.c_str(), 0755);

  // Prepared before fork: the child may only make async-signal-safe calls.
  std::vector<std::string> args = {"sh",
                                   "-c",
                                   guardian_script,
                                   "turing-test-guardian",
                                   pg_ctl_path().string(),
                                   (path_ / "postgres").string(),
                                   path_.string()};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // Own session: a Ctrl-C or a group kill aimed at the test binary must not
    // take the guardian with it.
    ::setsid();
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(fds[0], STDIN_FILENO);
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, STDOUT_FILENO);
    ::dup2(devnull, STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    ::execv("/bin/sh", argv.data());
    ::_exit(127);
  }
  ::close(fds[0]);
  guardian_fd_ = fds[1];
  guardian_pid_ = pid;
}

temp_data_dir::~temp_data_dir() {
  try {
    persistence::embedded_cluster::stop(path_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "temp_data_dir: %s\n", e.what());
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
  if (guardian_fd_ >= 0) {
    // A guardian that died already must not turn our write into a SIGPIPE.
    sigset_t pipe_only;
    sigset_t old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    if (::write(guardian_fd_, "done\n", 5) < 0) {
      timespec zero{0, 0};
      ::sigtimedwait(&pipe_only, nullptr, &zero);
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ::close(guardian_fd_);
  }
  if (guardian_pid_ > 0)
    while (::waitpid(guardian_pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
}

// -- pg_test_cluster ---------------------------------------------------------------

pg_test_cluster::pg_test_cluster() : dir_("turing-pg"), cluster_(start_cluster(dir_.path())) {
  // nop
}

pg_test_cluster::~pg_test_cluster() {
  // dir_ stops the cluster and removes the directory.
}

pg_test_cluster& pg_test_cluster::instance() {
  // A function-local static: started once, even with concurrent first calls,
  // and destroyed at exit.
  static pg_test_cluster cluster;
  return cluster;
}

std::string pg_test_cluster::admin_connection_string() const {
  return with_database(cluster_.connection_string(), "postgres");
}

std::string pg_test_cluster::fresh_database() {
  auto name = "t_" + std::to_string(next_database_++) + "_" + std::to_string(::getpid());
  std::unique_ptr<PGconn, decltype(&::PQfinish)> conn(
      ::PQconnectdb(admin_connection_string().c_str()), &::PQfinish);
  if (::PQstatus(conn.get()) != CONNECTION_OK)
    throw std::runtime_error("pg_test_cluster: cannot connect: " +
                             std::string(::PQerrorMessage(conn.get())));
  std::unique_ptr<PGresult, decltype(&::PQclear)> res(
      ::PQexec(conn.get(), ("CREATE DATABASE " + name).c_str()), &::PQclear);
  if (::PQresultStatus(res.get()) != PGRES_COMMAND_OK)
    throw std::runtime_error("pg_test_cluster: CREATE DATABASE " + name + ": " +
                             ::PQerrorMessage(conn.get()));
  return with_database(cluster_.connection_string(), name);
}

std::string with_database(const std::string& conninfo, const std::string& database) {
  char* error = nullptr;
  PQconninfoOption* options = ::PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    std::string message = error != nullptr ? error : "out of memory";
    ::PQfreemem(error);
    throw std::invalid_argument("bad connection string: " + message);
  }
  std::string out;
  bool replaced = false;
  for (auto* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr)
      continue;
    std::string keyword = o->keyword;
    std::string value = o->val;
    if (keyword == "dbname") {
      value = database;
      replaced = true;
    }
    out += (out.empty() ? "" : " ") + keyword + "=" + conninfo_value(value);
  }
  ::PQconninfoFree(options);
  if (!replaced)
    out += (out.empty() ? "" : " ") + std::string("dbname=") + conninfo_value(database);
  return out;
}

} // namespace turing::testing
