// fork/exec/waitpid behind run_process(): the child does only async-signal-safe
// work between fork and exec, because the parent may have other threads.
#include "persistence/detail/run_process.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>

extern char** environ;

namespace turing::persistence::detail {

namespace {

using clock_type = std::chrono::steady_clock;

/// Closes a descriptor once; keeps the error paths below short.
struct fd_closer {
  int fd = -1;
  ~fd_closer() { reset(); }
  void reset() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
};

/// The child's environment: ours, with HOME/USER/LOGNAME naming the user it
/// runs as (tools look there, and root's HOME is not readable by postgres).
std::vector<std::string> child_environment(const process_identity* run_as) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    if (run_as != nullptr && (entry.rfind("HOME=", 0) == 0 || entry.rfind("USER=", 0) == 0 ||
                              entry.rfind("LOGNAME=", 0) == 0))
      continue;
    env.push_back(std::move(entry));
  }
  if (run_as != nullptr) {
    env.push_back("HOME=" + run_as->home);
    env.push_back("USER=" + run_as->name);
    env.push_back("LOGNAME=" + run_as->name);
  }
  return env;
}

std::vector<char*> as_c_array(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings)
    out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

/// Reports errno to the parent through the error pipe, then leaves.
[[noreturn]] void child_fail(int error_fd) {
  int err = errno;
  [[maybe_unused]] auto n = ::write(error_fd, &err, sizeof(err));
  ::_exit(127);
}

/// Everything between fork and exec. Async-signal-safe calls only.
[[noreturn]] void exec_child(const char* path, char* const* argv, char* const* envp, int devnull,
                             int out_fd, int error_fd, const process_identity* run_as,
                             const gid_t* groups, size_t group_count, int max_fd) {
  // Own process group: a timeout kills initdb and its bootstrap backends
  // together, and a terminal's Ctrl-C does not reach the child mid-start.
  ::setpgid(0, 0);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Ignored signals survive exec; the postmaster must not inherit ours.
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP)
      ::signal(sig, SIG_DFL);
  if (::dup2(devnull, STDIN_FILENO) < 0 || ::dup2(out_fd, STDOUT_FILENO) < 0 ||
      ::dup2(out_fd, STDERR_FILENO) < 0)
    child_fail(error_fd);
  // The caller's cwd may not be readable by the user we switch to.
  if (::chdir("/") != 0)
    child_fail(error_fd);
  if (run_as != nullptr) {
    if (::setgroups(group_count, groups) != 0 || ::setgid(run_as->gid) != 0 ||
        ::setuid(run_as->uid) != 0)
      child_fail(error_fd);
  }
  // Descriptors the caller opened without O_CLOEXEC (a flock'ed file, a
  // socket) must not end up held by a daemon the child leaves behind.
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd < max_fd; ++fd)
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  ::execve(path, argv, envp);
  child_fail(error_fd);
}

int decode_status(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return -1;
}

void append_available(int fd, std::string& out) {
  char buf[4096];
  for (;;) {
    auto n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    return;
  }
}

} // namespace

process_result run_process(const std::vector<std::string>& argv, const process_identity* run_as,
                           std::chrono::milliseconds timeout) {
  if (argv.empty())
    throw std::invalid_argument("run_process: empty argv");
  // Everything the child needs is prepared before fork: it must not allocate.
  auto args = argv;
  auto c_args = as_c_array(args);
  auto env = child_environment(run_as);
  auto c_env = as_c_array(env);
  std::vector<gid_t> groups;
  if (run_as != nullptr)
    groups = run_as->groups.empty() ? std::vector<gid_t>{run_as->gid} : run_as->groups;
  rlimit limit{};
  int max_fd = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    max_fd = static_cast<int>(limit.rlim_cur);

  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0)
    throw std::system_error(errno, std::generic_category(), "pipe2");
  fd_closer out_read{out_pipe[0]};
  fd_closer out_write{out_pipe[1]};
  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0)
    throw std::system_error(errno, std::generic_category(), "pipe2");
  fd_closer error_read{error_pipe[0]};
  fd_closer error_write{error_pipe[1]};
  fd_closer devnull{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
  if (devnull.fd < 0)
    throw std::system_error(errno, std::generic_category(), "open /dev/null");

  pid_t pid = ::fork();
  if (pid < 0)
    throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0)
    exec_child(c_args[0], c_args.data(), c_env.data(), devnull.fd, out_write.fd, error_write.fd,
               run_as, groups.data(), groups.size(), max_fd);

  // Also from this side, so a timeout that fires before the child got to
  // setpgid still finds the group.
  ::setpgid(pid, pid);
  out_write.reset();
  error_write.reset();
  process_result result;

  // The error pipe closes on a successful exec; otherwise it carries errno.
  int child_errno = 0;
  ssize_t got;
  do {
    got = ::read(error_read.fd, &child_errno, sizeof(child_errno));
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof(child_errno))) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_code = 127;
    result.output = "cannot execute " + argv[0] + ": " + std::strerror(child_errno);
    return result;
  }

  auto deadline = clock_type::now() + timeout;
  bool eof = false;
  int status = 0;
  for (;;) {
    auto now = clock_type::now();
    if (now >= deadline) {
      // Kill the whole group: initdb's bootstrap backends must go too.
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      result.timed_out = true;
      result.exit_code = decode_status(status);
      return result;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    // Short waits: the child may exit while a grandchild (a daemon) still
    // holds the pipe, so EOF alone cannot tell us it is done.
    int wait_ms = static_cast<int>(left < 50 ? left : 50);
    if (!eof) {
      pollfd p{out_read.fd, POLLIN, 0};
      int ready = ::poll(&p, 1, wait_ms);
      if (ready > 0) {
        char buf[4096];
        auto n = ::read(out_read.fd, buf, sizeof(buf));
        if (n > 0)
          result.output.append(buf, static_cast<size_t>(n));
        else if (n == 0 || (errno != EINTR && errno != EAGAIN))
          eof = true;
      }
    } else {
      ::poll(nullptr, 0, wait_ms);
    }
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      ::fcntl(out_read.fd, F_SETFL, O_NONBLOCK);
      append_available(out_read.fd, result.output);
      result.exit_code = decode_status(status);
      return result;
    }
    if (done < 0 && errno == ECHILD) {
      // Someone else reaped it (SIGCHLD ignored): the status is lost.
      result.exit_code = -1;
      return result;
    }
  }
}

} // namespace turing::persistence::detail
