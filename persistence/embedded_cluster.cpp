// Brings up turing's private PostgreSQL cluster: initdb, pg_ctl start/stop,
// recovery from stale lock files after a crash, and database creation — all
// serialised between processes by a flock on data_dir/cluster.lock.
#include "persistence/embedded_cluster.hpp"

#include "persistence/detail/run_process.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <grp.h>
#include <libpq-fe.h>
#include <locale.h>
#include <memory>
#include <optional>
#include <pwd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sstream>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace turing::persistence {

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

using detail::process_identity;
using detail::run_process;

constexpr const char* default_bin_dir = "/usr/lib/postgresql/15/bin";
constexpr const char* port_text = "5432";
constexpr const char* socket_name = ".s.PGSQL.5432";

/// sockaddr_un::sun_path is 108 bytes including the terminating NUL; both
/// the postmaster and libpq refuse longer socket paths.
constexpr size_t max_socket_path = 107;

/// On top of start_timeout, how long a caller waits for the cluster lock:
/// the holder may be running initdb (seconds) before its own start.
constexpr auto lock_allowance = 120s;

/// How long a start is retried while backends of a SIGKILLed postmaster
/// still hold the old shared memory; they exit as soon as they notice.
constexpr auto shared_memory_retry_window = 15s;

constexpr auto poll_interval = 100ms;

// -- paths -------------------------------------------------------------------

struct cluster_layout {
  fs::path data_dir;
  fs::path cluster_dir;
  fs::path socket_dir;
  std::string socket_path;
  fs::path lock_file;
  fs::path log_file;
  fs::path pid_file;
  /// initdb writes here and the result is renamed to cluster_dir, so an
  /// interrupted initdb never leaves a half-made cluster where one is expected.
  fs::path initdb_dir;
  bool fsync = true; ///< embedded_cluster_options::fsync
};

cluster_layout layout_for(const fs::path& data_dir) {
  if (data_dir.empty())
    throw cluster_error("embedded cluster: no data dir given");
  auto abs = fs::absolute(data_dir).lexically_normal();
  if (!abs.has_filename() && abs.has_relative_path())
    abs = abs.parent_path(); // "/x/y/" -> "/x/y"
  cluster_layout l;
  l.data_dir = abs;
  l.cluster_dir = abs / "postgres";
  l.socket_dir = abs / "socket";
  l.socket_path = (l.socket_dir / socket_name).string();
  l.lock_file = abs / "cluster.lock";
  l.log_file = abs / "postgres.log";
  l.pid_file = l.cluster_dir / "postmaster.pid";
  l.initdb_dir = abs / "postgres.initdb-partial";
  return l;
}

void check_socket_path(const cluster_layout& l) {
  if (l.socket_path.size() > max_socket_path)
    throw cluster_error("socket path " + l.socket_path + " is " +
                        std::to_string(l.socket_path.size()) + " bytes, longer than the " +
                        std::to_string(max_socket_path) +
                        " a unix socket allows; choose a shorter data dir");
}

/// pg_ctl hands -D and -l to /bin/sh inside double quotes, so these
/// characters would be interpreted by the shell instead of naming the path.
void check_shell_safe(const cluster_layout& l) {
  auto s = l.data_dir.string();
  bool bad = std::any_of(s.begin(), s.end(), [](char c) {
    return c == '"' || c == '\\' || c == '$' || c == '`' || static_cast<unsigned char>(c) < 0x20;
  });
  if (bad)
    throw cluster_error("data dir " + s +
                        " contains a character pg_ctl cannot pass through its shell "
                        "(\" \\ $ ` or a control character); choose another data dir");
}

// -- text helpers --------------------------------------------------------------

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

/// The last `n` non-empty lines of `text`, joined into one line: errors
/// must stay one line in turing's log.
std::string last_lines(const std::string& text, size_t n) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    line = trim(line);
    if (!line.empty())
      lines.push_back(std::move(line));
  }
  auto first = lines.size() > n ? lines.size() - n : 0;
  std::string out;
  for (auto i = first; i < lines.size(); ++i) {
    if (!out.empty())
      out += " | ";
    out += lines[i];
  }
  return out.empty() ? "(no output)" : out;
}

/// Up to the last `max_bytes` of a file, from `offset` on.
std::string read_file_from(const fs::path& file, std::uintmax_t offset,
                           std::uintmax_t max_bytes = 64 * 1024) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    return {};
  in.seekg(0, std::ios::end);
  auto end = static_cast<std::uintmax_t>(in.tellg());
  if (offset > end)
    offset = 0; // the log was truncated or replaced
  if (end - offset > max_bytes)
    offset = end - max_bytes;
  in.seekg(static_cast<std::streamoff>(offset));
  std::string out(end - offset, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

std::uintmax_t file_size_or_zero(const fs::path& file) {
  std::error_code ec;
  auto size = fs::file_size(file, ec);
  return ec ? 0 : size;
}

std::string log_tail(const cluster_layout& l) {
  return "last lines of " + l.log_file.string() + ": " +
         last_lines(read_file_from(l.log_file, 0, 16 * 1024), 8);
}

/// A libpq key/value value, quoted when it would not parse bare.
std::string conninfo_value(const std::string& v) {
  bool plain = !v.empty() && std::none_of(v.begin(), v.end(), [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) || c == '\'' || c == '\\';
  });
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

std::string make_conninfo(const cluster_layout& l, const std::string& database,
                          const std::string& user) {
  return "host=" + conninfo_value(l.socket_dir.string()) + " port=" + port_text +
         " dbname=" + conninfo_value(database) + " user=" + conninfo_value(user);
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

// -- tools and users ---------------------------------------------------------

struct pg_tools {
  fs::path initdb;
  fs::path pg_ctl;
  fs::path postgres;
  /// Set when we are root: the cluster's processes run as `postgres`.
  std::optional<process_identity> run_as;

  const process_identity* identity() const { return run_as ? &*run_as : nullptr; }
};

process_identity postgres_identity() {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc = ::getpwnam_r("postgres", &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr)
    throw cluster_error("running as root but there is no `postgres` user to run the cluster as "
                        "(PostgreSQL refuses to run as root); install postgresql-15, which "
                        "creates it");
  process_identity id;
  id.uid = pw.pw_uid;
  id.gid = pw.pw_gid;
  id.name = pw.pw_name;
  id.home = pw.pw_dir != nullptr ? pw.pw_dir : "/";
  int count = 32;
  for (;;) {
    id.groups.resize(static_cast<size_t>(count));
    int n = count;
    if (::getgrouplist(id.name.c_str(), id.gid, id.groups.data(), &n) >= 0) {
      id.groups.resize(static_cast<size_t>(n));
      break;
    }
    count = n > count ? n : count * 2;
  }
  return id;
}

pg_tools locate_tools() {
  const char* env = std::getenv("TURING_PG_BIN_DIR");
  fs::path bin = env != nullptr && *env != '\0' ? fs::path(env) : fs::path(default_bin_dir);
  pg_tools t;
  t.initdb = bin / "initdb";
  t.pg_ctl = bin / "pg_ctl";
  t.postgres = bin / "postgres";
  for (auto* p : {&t.initdb, &t.pg_ctl, &t.postgres})
    if (::access(p->c_str(), X_OK) != 0)
      throw cluster_error("PostgreSQL server binary " + p->string() +
                          " is missing or not executable; install postgresql-15 "
                          "(apt-get install postgresql-15) or set TURING_PG_BIN_DIR to its bin "
                          "directory");
  if (::geteuid() == 0)
    t.run_as = postgres_identity();
  return t;
}

std::string initdb_locale() {
  // C.UTF-8 sorts like C but knows UTF-8 characters; older systems lack it.
  if (locale_t loc = ::newlocale(LC_ALL_MASK, "C.UTF-8", locale_t{}); loc != locale_t{}) {
    ::freelocale(loc);
    return "C.UTF-8";
  }
  return "C";
}

// -- directories ---------------------------------------------------------------

std::string mode_text(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

bool can_search(const struct stat& st, const process_identity& who) {
  // Permission classes are exclusive: an owner without u+x is refused even
  // when o+x is set.
  if (st.st_uid == who.uid)
    return (st.st_mode & S_IXUSR) != 0;
  bool in_group = st.st_gid == who.gid ||
                  std::find(who.groups.begin(), who.groups.end(), st.st_gid) != who.groups.end();
  if (in_group)
    return (st.st_mode & S_IXGRP) != 0;
  return (st.st_mode & S_IXOTH) != 0;
}

void check_traversable(const fs::path& data_dir, const process_identity& who) {
  for (fs::path p = data_dir;; p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0)
      throw cluster_error("cannot stat " + p.string() + ": " + std::strerror(errno));
    if (!can_search(st, who))
      throw cluster_error("the postgres user cannot traverse " + p.string() + " (mode " +
                          mode_text(st.st_mode) + ", uid " + std::to_string(st.st_uid) +
                          "), which the cluster under " + data_dir.string() +
                          " needs; chmod o+x it or choose another data dir");
    if (p == p.root_path() || p.parent_path() == p)
      break;
  }
}

/// Creates `dir` if missing and gives it `mode` and, under root, the
/// postgres owner.
void make_owned_dir(const fs::path& dir, mode_t mode,
                    const std::optional<process_identity>& owner) {
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST)
    throw cluster_error("cannot create " + dir.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw cluster_error(dir.string() + " is not a directory");
  if (owner && (st.st_uid != owner->uid || st.st_gid != owner->gid) &&
      ::chown(dir.c_str(), owner->uid, owner->gid) != 0)
    throw cluster_error("cannot chown " + dir.string() + " to postgres: " + std::strerror(errno));
  if ((st.st_mode & 07777) != mode && ::chmod(dir.c_str(), mode) != 0)
    throw cluster_error("cannot chmod " + dir.string() + ": " + std::strerror(errno));
}

void chown_tree(const fs::path& root, const process_identity& owner) {
  auto change = [&](const fs::path& p) {
    if (::lchown(p.c_str(), owner.uid, owner.gid) != 0)
      throw cluster_error("cannot chown " + p.string() + " to postgres: " + std::strerror(errno));
  };
  change(root);
  for (auto& entry : fs::recursive_directory_iterator(root))
    change(entry.path());
}

void prepare_directories(const cluster_layout& l, const pg_tools& t) {
  // Only levels we create get our mode; existing ones are the user's.
  std::vector<fs::path> missing;
  std::error_code ec;
  for (auto p = l.data_dir; !fs::exists(p, ec); p = p.parent_path()) {
    missing.push_back(p);
    if (p.parent_path() == p)
      break;
  }
  fs::create_directories(l.data_dir, ec);
  if (ec || !fs::is_directory(l.data_dir))
    throw cluster_error("cannot create data dir " + l.data_dir.string() + ": " +
                        (ec ? ec.message() : "not a directory"));
  if (t.run_as) {
    // A umask of 077 would otherwise lock postgres out of what we just made.
    for (auto& p : missing)
      ::chmod(p.c_str(), 0755);
    check_traversable(l.data_dir, *t.run_as);
  }
  // Trust authentication is safe only because nobody else can reach the socket.
  make_owned_dir(l.socket_dir, 0700, t.run_as);
  if (!fs::exists(l.log_file, ec)) {
    int fd = ::open(l.log_file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
      throw cluster_error("cannot create " + l.log_file.string() + ": " + std::strerror(errno));
    ::close(fd);
  }
  if (t.run_as) {
    // pg_ctl (as postgres) appends to the log through its shell.
    struct stat st {};
    if (::stat(l.log_file.c_str(), &st) == 0 && st.st_uid != t.run_as->uid &&
        ::chown(l.log_file.c_str(), t.run_as->uid, t.run_as->gid) != 0)
      throw cluster_error("cannot chown " + l.log_file.string() +
                          " to postgres: " + std::strerror(errno));
    if (::stat(l.cluster_dir.c_str(), &st) == 0 && st.st_uid != t.run_as->uid) {
      // Restored from a backup as root, say: the postmaster insists on owning it all.
      spdlog::warn("cluster dir {} is owned by uid {}, not postgres; changing its owner",
                   l.cluster_dir.string(), st.st_uid);
      chown_tree(l.cluster_dir, *t.run_as);
    }
  }
}

// -- the inter-process lock ------------------------------------------------------

/// Exclusive flock on data_dir/cluster.lock for the lifetime of the object.
/// The descriptor is O_CLOEXEC and children get no inherited descriptors, so
/// a postmaster we start cannot keep the lock held after we return.
class cluster_lock {
public:
  cluster_lock(const fs::path& file, clock_type::duration max_wait) {
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw cluster_error("cannot open lock file " + file.string() + ": " + std::strerror(errno));
    auto deadline = clock_type::now() + max_wait;
    bool told = false;
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        auto err = errno;
        ::close(fd_);
        throw cluster_error("cannot lock " + file.string() + ": " + std::strerror(err));
      }
      if (clock_type::now() >= deadline) {
        ::close(fd_);
        throw cluster_error(
            "timed out after " +
            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(max_wait).count()) +
            "s waiting for " + file.string() + ", held by another process bringing up the cluster");
      }
      if (!told) {
        spdlog::info("waiting for {}: another process is bringing up the cluster", file.string());
        told = true;
      }
      std::this_thread::sleep_for(50ms);
    }
  }
  ~cluster_lock() { ::close(fd_); } // closing releases the flock
  cluster_lock(const cluster_lock&) = delete;
  cluster_lock& operator=(const cluster_lock&) = delete;

private:
  int fd_ = -1;
};

// -- who owns a pid ----------------------------------------------------------------

/// The pid on the first line of a PostgreSQL lock file, if it has one.
std::optional<pid_t> read_pid_file(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  if (!in || !std::getline(in, line))
    return std::nullopt;
  line = trim(line);
  if (line.empty() || line.size() > 10 ||
      !std::all_of(line.begin(), line.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  auto pid = std::stol(line);
  if (pid <= 0)
    return std::nullopt;
  return static_cast<pid_t>(pid);
}

enum class pid_owner {
  gone,           // no such process, or a zombie nobody reaped yet
  unrelated,      // alive, but not a postgres at all: the pid was reused
  other_postgres, // a postgres serving some other data directory
  this_cluster,   // a postgres whose data directory is ours
};

std::string describe(pid_owner owner, pid_t pid) {
  auto p = "pid " + std::to_string(pid);
  switch (owner) {
  case pid_owner::gone:
    return p + " is gone";
  case pid_owner::unrelated:
    return p + " is not a postmaster of this cluster";
  case pid_owner::other_postgres:
    return p + " is a postgres of another data directory";
  case pid_owner::this_cluster:
    return p + " is a postmaster of this cluster";
  }
  return p;
}

bool same_file(const fs::path& a, const fs::path& b) {
  struct stat sa {};
  struct stat sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

std::string read_whole(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

pid_owner classify(pid_t pid, const fs::path& cluster_dir) {
  // EPERM means alive but someone else's (postgres, seen from a non-root caller).
  if (::kill(pid, 0) != 0 && errno == ESRCH)
    return pid_owner::gone;
  auto proc = fs::path("/proc") / std::to_string(pid);
  auto stat_text = read_whole(proc / "stat");
  if (stat_text.empty())
    return pid_owner::gone;
  // "pid (comm) S ppid ...": comm may contain ')' so the fields follow the last one.
  char state = '?';
  long ppid = -1;
  if (auto close = stat_text.rfind(')'); close != std::string::npos)
    std::istringstream(stat_text.substr(close + 1)) >> state >> ppid;
  if (state == 'Z' || state == 'X')
    return pid_owner::gone; // a killed postmaster whose parent has not reaped it
  std::vector<std::string> args;
  {
    auto cmdline = read_whole(proc / "cmdline");
    std::string arg;
    for (char c : cmdline) {
      if (c == '\0') {
        args.push_back(std::move(arg));
        arg.clear();
      } else {
        arg += c;
      }
    }
    if (!arg.empty())
      args.push_back(std::move(arg));
  }
  if (args.empty()) {
    // Kernel threads (children of kthreadd, pid 2) have no command line;
    // neither has a process that is in the middle of exiting.
    bool kernel_thread = pid == 2 || ppid == 2;
    return kernel_thread ? pid_owner::unrelated : pid_owner::gone;
  }
  auto name = fs::path(args[0]).filename().string();
  if (name != "postgres" && name != "postmaster")
    return pid_owner::unrelated;
  // The postmaster chdirs into its data directory early on.
  auto cwd = proc / "cwd";
  if (same_file(cwd, cluster_dir))
    return pid_owner::this_cluster;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string dir;
    if (args[i] == "-D" && i + 1 < args.size())
      dir = args[i + 1];
    else if (args[i].size() > 2 && args[i].rfind("-D", 0) == 0)
      dir = args[i].substr(2);
    else
      continue;
    fs::path d = dir;
    if (d.is_relative()) {
      std::error_code ec;
      auto base = fs::read_symlink(cwd, ec);
      if (ec)
        continue;
      d = base / d;
    }
    if (same_file(d, cluster_dir))
      return pid_owner::this_cluster;
  }
  return pid_owner::other_postgres;
}

// -- starting ----------------------------------------------------------------------

bool ping_ok(const std::string& conninfo) {
  return ::PQping(conninfo.c_str()) == PQPING_OK;
}

/// After a SIGKILL the socket lock file still names the dead postmaster; a
/// zombie or reused pid there makes the new postmaster refuse to start.
void remove_stale_socket_lock(const cluster_layout& l) {
  auto lock = l.socket_dir / (std::string(socket_name) + ".lock");
  std::error_code ec;
  if (!fs::exists(lock, ec))
    return;
  auto pid = read_pid_file(lock);
  auto owner = pid ? classify(*pid, l.cluster_dir) : pid_owner::gone;
  if (owner != pid_owner::gone && owner != pid_owner::unrelated)
    return; // a live postgres: leave it, it will say who it is
  fs::remove(lock, ec);
  fs::remove(l.socket_path, ec);
  spdlog::warn("removed stale socket lock {} ({})", lock.string(),
               pid ? describe(owner, *pid) : "it names no pid");
}

std::string postmaster_options(const cluster_layout& l) {
  // Each argument is shell-quoted because pg_ctl pastes -o into a /bin/sh
  // command line; the socket dir is double-quoted for postgres's list syntax
  // (check_shell_safe ruled out '"' in it).
  std::vector<std::string> settings = {
      "listen_addresses=",
      std::string("port=") + port_text,
      "unix_socket_directories=\"" + l.socket_dir.string() + "\"",
      "max_connections=200",
      "shared_buffers=128MB",
      l.fsync ? "fsync=on" : "fsync=off",
      // A queue's dead tuples are best vacuumed within seconds, not a minute.
      "autovacuum_naptime=10s",
  };
  std::string out;
  for (auto& s : settings) {
    if (!out.empty())
      out += ' ';
    out += "-c " + shell_quote(s);
  }
  return out;
}

int seconds_until(clock_type::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - clock_type::now());
  return static_cast<int>(std::max<std::chrono::seconds::rep>(left.count(), 1));
}

/// Runs pg_ctl start, retrying while old backends hold shared memory.
/// Returns the new postmaster's pid.
pid_t start_postmaster(const cluster_layout& l, const pg_tools& t,
                       clock_type::time_point deadline) {
  std::optional<clock_type::time_point> retry_until;
  for (;;) {
    remove_stale_socket_lock(l);
    auto log_offset = file_size_or_zero(l.log_file);
    auto secs = seconds_until(deadline);
    std::vector<std::string> argv = {
        t.pg_ctl.string(),    "start", "-D", l.cluster_dir.string(), "-l",
        l.log_file.string(),  "-w",    "-t", std::to_string(secs),   "-o",
        postmaster_options(l)};
    spdlog::info("starting PostgreSQL cluster {} (log {})", l.cluster_dir.string(),
                 l.log_file.string());
    auto r = run_process(argv, t.identity(), std::chrono::seconds(secs) + 30s);
    if (r.exit_code == 0 && !r.timed_out) {
      auto pid = read_pid_file(l.pid_file).value_or(0);
      spdlog::info("started PostgreSQL cluster {} (pid {})", l.cluster_dir.string(), pid);
      return pid;
    }
    auto new_log = read_file_from(l.log_file, log_offset);
    auto now = clock_type::now();
    if (new_log.find("pre-existing shared memory block") != std::string::npos) {
      if (!retry_until)
        retry_until = std::min(deadline, now + shared_memory_retry_window);
      if (now < *retry_until) {
        spdlog::warn("backends of a killed postmaster of {} still hold its shared memory; "
                     "retrying the start",
                     l.cluster_dir.string());
        std::this_thread::sleep_for(250ms);
        continue;
      }
    }
    throw cluster_error("could not start PostgreSQL cluster " + l.cluster_dir.string() +
                        " (pg_ctl exit " + std::to_string(r.exit_code) +
                        (r.timed_out ? ", killed after timeout" : "") +
                        "): " + last_lines(r.output, 2) + "; " + log_tail(l));
  }
}

void init_cluster(const cluster_layout& l, const pg_tools& t,
                  const embedded_cluster_options& options) {
  std::error_code ec;
  if (fs::exists(l.initdb_dir, ec)) {
    spdlog::warn("removing {}, left by an interrupted initdb", l.initdb_dir.string());
    fs::remove_all(l.initdb_dir, ec);
    if (ec)
      throw cluster_error("cannot remove " + l.initdb_dir.string() + ": " + ec.message());
  }
  if (fs::exists(l.cluster_dir, ec)) {
    if (!fs::is_empty(l.cluster_dir, ec))
      throw cluster_error(l.cluster_dir.string() +
                          " exists but is not a PostgreSQL cluster (no PG_VERSION); move it "
                          "away so turing can create one there");
    fs::remove(l.cluster_dir, ec);
  }
  make_owned_dir(l.initdb_dir, 0700, t.run_as);
  spdlog::info("initialising new PostgreSQL cluster {} (superuser {})", l.cluster_dir.string(),
               options.user);
  std::vector<std::string> argv = {t.initdb.string(),
                                   "-D",
                                   l.initdb_dir.string(),
                                   "-U",
                                   options.user,
                                   "--auth=trust",
                                   "-E",
                                   "UTF8",
                                   "--locale=" + initdb_locale(),
                                   "--no-instructions"};
  auto r = run_process(argv, t.identity(), 10min);
  if (r.exit_code != 0 || r.timed_out) {
    fs::remove_all(l.initdb_dir, ec);
    throw cluster_error(
        "initdb failed for " + l.cluster_dir.string() + " (exit " + std::to_string(r.exit_code) +
        (r.timed_out ? ", killed after timeout" : "") + "): " + last_lines(r.output, 4));
  }
  fs::rename(l.initdb_dir, l.cluster_dir, ec);
  if (ec)
    throw cluster_error("cannot rename " + l.initdb_dir.string() + " to " + l.cluster_dir.string() +
                        ": " + ec.message());
}

enum class settled { ready, exited, timed_out };

/// Waits for a postmaster of ours that is starting up (crash recovery, say)
/// or shutting down to either accept connections or go away.
settled wait_for_postmaster(pid_t pid, const cluster_layout& l, const std::string& conninfo,
                            clock_type::time_point deadline) {
  for (;;) {
    if (ping_ok(conninfo))
      return settled::ready;
    if (classify(pid, l.cluster_dir) != pid_owner::this_cluster)
      return settled::exited;
    if (clock_type::now() >= deadline)
      return settled::timed_out;
    std::this_thread::sleep_for(poll_interval);
  }
}

struct bring_up_result {
  bool started_here;
  std::string found_state;
};

bring_up_result bring_up(const cluster_layout& l, const pg_tools& t,
                         const embedded_cluster_options& options,
                         const std::string& ping_conninfo) {
  auto deadline = clock_type::now() + options.start_timeout;
  auto pid_text = [](pid_t pid) { return "pid " + std::to_string(pid); };
  std::string before; // what happened on earlier rounds, for found_state
  // Starts the postmaster; nullopt when a postmaster of this cluster that we
  // did not start (by hand, or a tool ignoring our lock) got there first, so
  // the caller goes round again and waits for that one instead.
  auto start = [&]() -> std::optional<pid_t> {
    try {
      return start_postmaster(l, t, deadline);
    } catch (const cluster_error&) {
      auto pid = read_pid_file(l.pid_file);
      if (pid && classify(*pid, l.cluster_dir) == pid_owner::this_cluster)
        return std::nullopt;
      throw;
    }
  };
  for (;;) {
    if (ping_ok(ping_conninfo)) {
      auto pid = read_pid_file(l.pid_file);
      auto who = pid ? pid_text(*pid) : std::string("pid unknown");
      spdlog::info("reusing running PostgreSQL cluster {} ({})", l.cluster_dir.string(), who);
      return {false, before + "reused running cluster (" + who + ")"};
    }
    std::error_code ec;
    if (!fs::exists(l.cluster_dir / "PG_VERSION", ec)) {
      init_cluster(l, t, options);
      auto pid = start();
      if (!pid) {
        before += "initialised new cluster at " + l.cluster_dir.string() + ", then ";
        continue;
      }
      return {true, before + "initialised new cluster at " + l.cluster_dir.string() +
                        " and started it (" + pid_text(*pid) + ")"};
    }
    if (fs::exists(l.pid_file, ec)) {
      auto pid = read_pid_file(l.pid_file);
      auto owner = pid ? classify(*pid, l.cluster_dir) : pid_owner::gone;
      if (owner == pid_owner::this_cluster) {
        spdlog::info("PostgreSQL cluster {} has a postmaster (pid {}) not accepting connections; "
                     "waiting for it to finish starting or stopping",
                     l.cluster_dir.string(), *pid);
        switch (wait_for_postmaster(*pid, l, ping_conninfo, deadline)) {
        case settled::ready:
          before += "waited for postmaster (" + pid_text(*pid) + ") to start, then ";
          break;
        case settled::exited:
          before += "waited for postmaster (" + pid_text(*pid) + ") to exit, then ";
          break;
        case settled::timed_out:
          throw cluster_error("postmaster (" + pid_text(*pid) + ") of cluster " +
                              l.cluster_dir.string() +
                              " neither accepted connections nor exited within " +
                              std::to_string(options.start_timeout.count()) + "s; " + log_tail(l));
        }
        continue;
      }
      auto why = pid ? describe(owner, *pid) : std::string("it names no pid");
      fs::remove(l.pid_file, ec);
      if (ec)
        throw cluster_error("cannot remove stale " + l.pid_file.string() + ": " + ec.message());
      spdlog::warn("removed stale {} ({}); starting the cluster", l.pid_file.string(), why);
      auto new_pid = start();
      if (!new_pid) {
        before += "removed stale postmaster.pid (" + why + "), then ";
        continue;
      }
      return {true, before + "removed stale postmaster.pid (" + why + ") and started (" +
                        pid_text(*new_pid) + ")"};
    }
    auto pid = start();
    if (!pid)
      continue;
    return {true, before + "started existing cluster at " + l.cluster_dir.string() + " (" +
                      pid_text(*pid) + ")"};
  }
}

// -- the database --------------------------------------------------------------------

struct pg_conn_deleter {
  void operator()(PGconn* c) const { ::PQfinish(c); }
};
struct pg_result_deleter {
  void operator()(PGresult* r) const { ::PQclear(r); }
};
using conn_ptr = std::unique_ptr<PGconn, pg_conn_deleter>;
using result_ptr = std::unique_ptr<PGresult, pg_result_deleter>;

std::string pq_error(PGconn* c) {
  return last_lines(::PQerrorMessage(c), 3);
}

void ensure_database(const cluster_layout& l, const embedded_cluster_options& options,
                     const std::string& admin) {
  conn_ptr conn(::PQconnectdb(admin.c_str()));
  if (!conn || ::PQstatus(conn.get()) != CONNECTION_OK)
    throw cluster_error("cannot connect to the cluster at " + l.socket_dir.string() + " as " +
                        options.user + ": " + pq_error(conn.get()));
  const char* params[] = {options.database.c_str()};
  result_ptr found(::PQexecParams(conn.get(), "SELECT 1 FROM pg_database WHERE datname = $1", 1,
                                  nullptr, params, nullptr, nullptr, 0));
  if (::PQresultStatus(found.get()) != PGRES_TUPLES_OK)
    throw cluster_error("cannot list databases of cluster " + l.cluster_dir.string() + ": " +
                        pq_error(conn.get()));
  if (::PQntuples(found.get()) > 0)
    return;
  std::unique_ptr<char, decltype(&::PQfreemem)> ident(
      ::PQescapeIdentifier(conn.get(), options.database.c_str(), options.database.size()),
      &::PQfreemem);
  if (!ident)
    throw cluster_error("cannot quote database name " + options.database + ": " +
                        pq_error(conn.get()));
  result_ptr created(::PQexec(conn.get(), ("CREATE DATABASE " + std::string(ident.get())).c_str()));
  if (::PQresultStatus(created.get()) == PGRES_COMMAND_OK) {
    spdlog::info("created database {} in PostgreSQL cluster {}", options.database,
                 l.cluster_dir.string());
    return;
  }
  const char* state = ::PQresultErrorField(created.get(), PG_DIAG_SQLSTATE);
  if (state != nullptr && std::strcmp(state, "42P04") == 0)
    return; // duplicate_database: someone outside our lock made it first; fine
  throw cluster_error("cannot create database " + options.database + " in cluster " +
                      l.cluster_dir.string() + ": " + pq_error(conn.get()));
}

} // namespace

embedded_cluster::embedded_cluster(std::string connection_string, bool started_here,
                                   std::string found_state, std::filesystem::path cluster_dir)
    : connection_string_(std::move(connection_string)), started_here_(started_here),
      found_state_(std::move(found_state)), cluster_dir_(std::move(cluster_dir)) {
  // nop
}

embedded_cluster embedded_cluster::ensure_running(const embedded_cluster_options& options) {
  auto l = layout_for(options.data_dir);
  l.fsync = options.fsync;
  if (options.database.empty() || options.user.empty())
    throw cluster_error("embedded cluster under " + l.data_dir.string() +
                        ": database and user must not be empty");
  // Checked before anything is created: a bad path should leave no trace.
  std::error_code exists_ec;
  if (!options.may_initialise && !fs::exists(l.cluster_dir / "PG_VERSION", exists_ec))
    throw cluster_error(
        "no turing database under " + l.data_dir.string() + " (" +
        (fs::exists(l.data_dir, exists_ec) ? "the directory has no cluster" : "no such directory") +
        "); is data_dir right? Only turing run, enqueue, migrate and db start "
        "create one");
  check_socket_path(l);
  check_shell_safe(l);
  auto tools = locate_tools();
  prepare_directories(l, tools);
  cluster_lock lock(l.lock_file, options.start_timeout + lock_allowance);
  // libpq waits forever by default: a hung or SIGSTOPped postmaster must not
  // hang us. A ping that gets no answer in 2 s (libpq's minimum) counts as
  // "not accepting yet", and bring_up keeps polling until its deadline.
  auto admin = make_conninfo(l, "postgres", options.user);
  auto result = bring_up(l, tools, options, admin + " connect_timeout=2");
  ensure_database(l, options, admin + " connect_timeout=10");
  spdlog::info("embedded PostgreSQL under {}: {}", l.data_dir.string(), result.found_state);
  return embedded_cluster(make_conninfo(l, options.database, options.user), result.started_here,
                          std::move(result.found_state), l.cluster_dir);
}

bool embedded_cluster::stop(const std::filesystem::path& data_dir) {
  auto l = layout_for(data_dir);
  std::error_code ec;
  if (!fs::exists(l.pid_file, ec))
    return false;
  auto tools = locate_tools();
  cluster_lock lock(l.lock_file, lock_allowance);
  auto pid = read_pid_file(l.pid_file);
  if (!pid)
    return false;
  auto owner = classify(*pid, l.cluster_dir);
  if (owner != pid_owner::this_cluster) {
    // Signalling that pid would hit whatever process reused it.
    spdlog::info("PostgreSQL cluster {} is not running ({} names a pid that {})",
                 l.cluster_dir.string(), l.pid_file.string(),
                 owner == pid_owner::gone ? "is gone" : "belongs to another process");
    return false;
  }
  spdlog::info("stopping PostgreSQL cluster {} (pid {})", l.cluster_dir.string(), *pid);
  for (const char* mode : {"fast", "immediate"}) {
    auto r = run_process(
        {tools.pg_ctl.string(), "stop", "-D", l.cluster_dir.string(), "-m", mode, "-w", "-t", "60"},
        tools.identity(), 90s);
    if ((r.exit_code == 0 && !r.timed_out) ||
        classify(*pid, l.cluster_dir) != pid_owner::this_cluster) {
      // pg_ctl returns once postmaster.pid is gone, which the postmaster
      // removes just before it exits; callers expect it to be gone for good.
      auto until = clock_type::now() + 10s;
      while (classify(*pid, l.cluster_dir) == pid_owner::this_cluster && clock_type::now() < until)
        std::this_thread::sleep_for(10ms);
      spdlog::info("stopped PostgreSQL cluster {} (pid {})", l.cluster_dir.string(), *pid);
      return true;
    }
    spdlog::warn("pg_ctl stop -m {} of {} (pid {}) failed: {}", mode, l.cluster_dir.string(), *pid,
                 last_lines(r.output, 2));
  }
  throw cluster_error("could not stop PostgreSQL cluster " + l.cluster_dir.string() + " (pid " +
                      std::to_string(*pid) + "); " + log_tail(l));
}

} // namespace turing::persistence
