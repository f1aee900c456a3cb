// Spawning a script's child process and the I/O helpers both script modes share (see
// child_process.hpp).
#include "actors/detail/child_process.hpp"

#include "persistence/storable_text.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <vector>

extern char** environ;

namespace turing::actors::detail {

namespace {

// --- small helpers -----------------------------------------------------------------------------

// strerror() is not guaranteed thread-safe; strerror_r comes in a GNU and an XSI flavour, and
// these overloads accept whichever one the headers declare.
[[maybe_unused]] const char* strerror_result(char* gnu, const char*) {
  return gnu;
}
[[maybe_unused]] const char* strerror_result(int xsi, const char* buf) {
  return xsi == 0 ? buf : "unknown error";
}

} // namespace

std::string errno_text(int err) {
  char buf[256] = {};
  return strerror_result(strerror_r(err, buf, sizeof buf), buf);
}

namespace {

template <class F> class scope_exit {
public:
  explicit scope_exit(F f) : f_(std::move(f)) {}
  scope_exit(const scope_exit&) = delete;
  scope_exit& operator=(const scope_exit&) = delete;
  ~scope_exit() { f_(); }

private:
  F f_;
};

// A close-on-exec pipe whose ends are both above 2: a daemon may run with 0/1/2 closed, and a
// pipe end landing on one of them would be clobbered by the child's own dup2 file actions.
int make_pipe(unique_fd& read_end, unique_fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return errno;
  unique_fd ends[2] = {unique_fd(fds[0]), unique_fd(fds[1])};
  for (auto& end : ends) {
    if (end.get() > 2)
      continue;
    int moved = ::fcntl(end.get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0)
      return errno;
    end.reset(moved);
  }
  read_end = std::move(ends[0]);
  write_end = std::move(ends[1]);
  return 0;
}

// execvp()'s search, done in the parent against the parent's PATH, so that a missing program is
// reported as such before anything is spawned (and PATH in spec.env cannot redirect it). Returns
// 0 or the errno execvp would have reported.
int resolve_program(const std::string& name, std::string& resolved) {
  if (name.empty())
    return ENOENT;
  if (name.find('/') != std::string::npos) {
    resolved = name; // relative to working_dir, like exec after a chdir
    return 0;
  }
  const char* path = ::getenv("PATH");
  std::string_view dirs = path ? path : "/bin:/usr/bin"; // glibc's execvp default
  int err = ENOENT;
  while (true) {
    auto colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    if (dir.empty())
      dir = "."; // an empty PATH entry means the current directory
    std::string candidate = dir + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0) {
      if (S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
        // The child chdirs into working_dir before exec: a PATH-relative hit must be absolute.
        if (candidate.front() != '/') {
          std::error_code ec;
          auto absolute = std::filesystem::absolute(candidate, ec);
          if (!ec)
            candidate = absolute.string();
        }
        resolved = std::move(candidate);
        return 0;
      }
      err = EACCES; // execvp too reports EACCES if a non-executable match was seen
    }
    if (colon == std::string_view::npos)
      return err;
    dirs.remove_prefix(colon + 1);
  }
}

// The parent's environment with spec.env added on top (overriding same-named variables).
std::vector<std::string> child_environment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto name = entry.substr(0, entry.find('='));
    if (extra.find(std::string(name)) == extra.end())
      out.emplace_back(entry);
  }
  for (const auto& [name, value] : extra)
    out.push_back(name + "=" + value);
  return out;
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const auto& s : strings)
    out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

std::string cannot_start(const script_spec& spec, const std::string& why) {
  std::string name = spec.command.empty() ? std::string() : spec.command.front();
  return one_line("cannot start '" + name + "': " + why);
}

} // namespace

std::string one_line(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  std::string out;
  out.reserve(s.size());
  bool pending_break = false;
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n' || c == '\r') {
      pending_break = true;
      ++i;
      continue;
    }
    if (pending_break) {
      out += " | ";
      pending_break = false;
    }
    if (c < 0x20 || c == 0x7F) {
      out += ' ';
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if (auto len = persistence::utf8_sequence_length(s, i); len > 0) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

started_child spawn_child(const script_spec& spec) {
  started_child child;
  auto fail = [&](const std::string& why) {
    child.error = cannot_start(spec, why);
    return std::move(child);
  };
  // --- checks and preparation in the parent, so failures name their cause --------------------
  if (spec.command.empty())
    return fail("empty command");
  for (const auto& arg : spec.command)
    if (arg.find('\0') != std::string::npos)
      return fail("an argument contains a NUL byte");
  for (const auto& [name, value] : spec.env)
    if (name.empty() || name.find_first_of(std::string_view("=\0", 2)) != std::string::npos ||
        value.find('\0') != std::string::npos)
      return fail("invalid environment variable '" + name + "'");

  std::string program;
  if (int err = resolve_program(spec.command.front(), program); err != 0)
    return fail(errno_text(err));

  // posix_spawn reports a failed chdir with the same errno as a missing program; check first so
  // the error says which one is missing.
  if (!spec.working_dir.empty()) {
    struct stat st;
    int err = ::stat(spec.working_dir.c_str(), &st) != 0 ? errno
              : S_ISDIR(st.st_mode)                      ? 0
                                                         : ENOTDIR;
    if (err != 0)
      return fail("working directory '" + spec.working_dir.string() + "': " + errno_text(err));
  }

  auto env = child_environment(spec.env);
  auto argv = c_strings(spec.command);
  auto envp = c_strings(env);

  unique_fd in_r, in_w, out_r, out_w, err_r, err_w;
  for (auto [read_end, write_end] :
       {std::pair(&in_r, &in_w), std::pair(&out_r, &out_w), std::pair(&err_r, &err_w)})
    if (int err = make_pipe(*read_end, *write_end); err != 0)
      return fail("pipe: " + errno_text(err));

  posix_spawn_file_actions_t actions;
  if (int err = ::posix_spawn_file_actions_init(&actions); err != 0)
    return fail(errno_text(err));
  scope_exit destroy_actions([&] { ::posix_spawn_file_actions_destroy(&actions); });
  posix_spawnattr_t attr;
  if (int err = ::posix_spawnattr_init(&attr); err != 0)
    return fail(errno_text(err));
  scope_exit destroy_attr([&] { ::posix_spawnattr_destroy(&attr); });

  // dup2 clears close-on-exec on 0/1/2 only; every other descriptor of ours is O_CLOEXEC.
  int err = ::posix_spawn_file_actions_adddup2(&actions, in_r.get(), STDIN_FILENO);
  if (err == 0)
    err = ::posix_spawn_file_actions_adddup2(&actions, out_w.get(), STDOUT_FILENO);
  if (err == 0)
    err = ::posix_spawn_file_actions_adddup2(&actions, err_w.get(), STDERR_FILENO);
  if (err == 0 && !spec.working_dir.empty())
    err = ::posix_spawn_file_actions_addchdir_np(&actions, spec.working_dir.c_str());

  // Own process group (pgid = its pid) so a deadline can kill the script with everything it
  // started. Empty signal mask and default dispositions: our thread may block signals (we block
  // SIGPIPE ourselves) and the application may ignore SIGPIPE; a script must not inherit either.
  sigset_t empty_mask, all_signals;
  sigemptyset(&empty_mask);
  sigfillset(&all_signals);
  if (err == 0)
    err = ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                POSIX_SPAWN_SETSIGDEF);
  if (err == 0)
    err = ::posix_spawnattr_setpgroup(&attr, 0);
  if (err == 0)
    err = ::posix_spawnattr_setsigmask(&attr, &empty_mask);
  if (err == 0)
    err = ::posix_spawnattr_setsigdefault(&attr, &all_signals);
  if (err != 0)
    return fail(errno_text(err));

  // --- spawn ----------------------------------------------------------------------------------
  // glibc's posix_spawn returns only once the child has exec'd (or failed to: that errno comes
  // back here), so the child already leads its own group when the caller learns its pid.
  pid_t pid = 0;
  err = ::posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(), envp.data());
  if (err != 0)
    return fail(errno_text(err));

  // The child holds its own copies of the other ends; ours must go or we would never see EOF.
  child.pid = pid;
  child.in_w = std::move(in_w);
  child.out_r = std::move(out_r);
  child.err_r = std::move(err_r);
  return child;
}

std::string child_guard::reap_into(script_result& r, std::string err_tail) {
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  int wait_errno = errno;
  reaped = true;
  r.pid = pid;
  if (err_tail.size() > stderr_tail_bytes)
    err_tail.erase(0, err_tail.size() - stderr_tail_bytes);
  r.stderr_tail = std::move(err_tail);
  if (waited != pid)
    return "cannot collect exit status: " + errno_text(wait_errno);
  if (WIFEXITED(status))
    r.exit_status = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    r.term_signal = WTERMSIG(status);
  return "";
}

fd_output_buffer::fd_output_buffer(int fd, sigpipe_guard& guard, int halt_fd)
    : fd_(fd), halt_fd_(halt_fd), guard_(guard), buffer_(std::make_unique<char[]>(io_chunk)) {
  setp(buffer_.get(), buffer_.get() + io_chunk);
}

fd_output_buffer::int_type fd_output_buffer::overflow(int_type c) {
  if (!drain())
    return traits_type::eof();
  if (!traits_type::eq_int_type(c, traits_type::eof())) {
    *pptr() = traits_type::to_char_type(c);
    pbump(1);
  }
  return traits_type::not_eof(c);
}

int fd_output_buffer::sync() {
  return drain() ? 0 : -1;
}

bool fd_output_buffer::drain() {
  const char* at = pbase();
  auto left = static_cast<std::size_t>(pptr() - pbase());
  while (!broken_ && left > 0) {
    if (halt_fd_ >= 0) {
      pollfd fds[2] = {{fd_, POLLOUT, 0}, {halt_fd_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno != EINTR)
          broken_ = true;
        continue;
      }
      if (fds[1].revents != 0) {
        broken_ = true; // halted: whoever reads the other end is gone or going
        break;
      }
    }
    ssize_t n = ::write(fd_, at, left);
    if (n >= 0) {
      at += n;
      left -= static_cast<std::size_t>(n);
    } else if (errno != EINTR && errno != EAGAIN) {
      if (errno == EPIPE)
        guard_.note_epipe();
      broken_ = true; // the script stopped reading: its exit status and stdout decide
    }
  }
  setp(buffer_.get(), buffer_.get() + io_chunk);
  return !broken_;
}

} // namespace turing::actors::detail
