// Runs a script stage as a child process: posix_spawn into its own process group, one poll()
// loop feeding stdin and draining stdout/stderr, then the exit status and stdout checked against
// the {"outcome", "output"} contract. Every child-side problem becomes a one-line error.
#include "actors/script_runner.hpp"

#include "config/byte_size.hpp"
#include "persistence/storable_text.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <istream>
#include <memory>
#include <optional>
#include <ostream>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <string_view>
#include <sys/stat.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <utility>

extern char** environ;

namespace turing::actors {

namespace {

constexpr std::size_t stderr_tail_bytes = 2048;
constexpr std::size_t stdout_excerpt_bytes = 200;
constexpr std::size_t io_chunk = 64 * 1024;

// --- small helpers -----------------------------------------------------------------------------

// strerror() is not guaranteed thread-safe; strerror_r comes in a GNU and an XSI flavour, and
// these overloads accept whichever one the headers declare.
[[maybe_unused]] const char* strerror_result(char* gnu, const char*) {
  return gnu;
}
[[maybe_unused]] const char* strerror_result(int xsi, const char* buf) {
  return xsi == 0 ? buf : "unknown error";
}

std::string errno_text(int err) {
  char buf[256] = {};
  return strerror_result(strerror_r(err, buf, sizeof buf), buf);
}

class unique_fd {
public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other)
      reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Never retry close() on EINTR: on Linux the descriptor is gone either way, and a retry could
  // close a descriptor another thread just received.
  void reset(int fd = -1) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }

private:
  int fd_ = -1;
};

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

// Makes arbitrary child bytes fit in a one-line error that JSON serialisation accepts: line
// breaks become " | " (blank lines dropped), other control characters a space, and invalid
// UTF-8 (a tail cut mid-character, binary noise) U+FFFD — nlohmann::json::dump() would throw on it.
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

/// What stdout_excerpt() reads of a stdout: past its leading white space, a
/// little more than the excerpt.
std::string stdout_excerpt_source(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  return std::string(s.substr(0, stdout_excerpt_bytes + 56));
}

std::string stdout_excerpt(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  if (s.size() <= stdout_excerpt_bytes)
    return one_line(s);
  std::size_t cut = stdout_excerpt_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
    --cut; // do not split a UTF-8 character
  return one_line(s.substr(0, cut)) + "...";
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

// Blocks SIGPIPE for this thread while we write to the child's stdin, then discards the SIGPIPE
// an EPIPE write raised: signal dispositions are process-wide and belong to the application, so
// the runner must not rely on SIGPIPE being ignored — nor ignore it for everyone else.
class sigpipe_guard {
public:
  sigpipe_guard() {
    sigemptyset(&sigpipe_);
    sigaddset(&sigpipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    // A SIGPIPE already pending (hence already blocked) belongs to someone else: leave it.
    was_pending_ = ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    ::pthread_sigmask(SIG_BLOCK, &sigpipe_, &old_mask_);
  }
  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;
  ~sigpipe_guard() {
    if (raised_ && !was_pending_) {
      const timespec zero{0, 0};
      while (::sigtimedwait(&sigpipe_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  void note_epipe() { raised_ = true; }

private:
  sigset_t sigpipe_;
  sigset_t old_mask_;
  bool was_pending_ = false;
  bool raised_ = false;
};

// Kills and reaps the child if run_script leaves early (an exception from on_started or an
// allocation), so no child and no zombie outlive the call.
struct child_guard {
  pid_t pid = 0;
  bool reaped = false;
  ~child_guard() {
    if (pid <= 0 || reaped)
      return;
    kill_process_group(pid);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
};

// Writes a JSON document to a child's stdin from a thread of its own, 64 KB
// at a time, so that a payload of megabytes is never also held as text.
// Blocking writes: a child that stops reading holds the thread until it
// exits or is killed at its deadline; EPIPE then ends the writing quietly.
class json_stdin_writer {
public:
  json_stdin_writer(unique_fd fd, const nlohmann::json& input)
      : fd_(std::move(fd)), input_(input), thread_([this] { run(); }) {}
  json_stdin_writer(const json_stdin_writer&) = delete;
  json_stdin_writer& operator=(const json_stdin_writer&) = delete;
  ~json_stdin_writer() { join(); }
  void join() {
    if (thread_.joinable())
      thread_.join();
  }

private:
  class fd_buffer : public std::streambuf {
  public:
    fd_buffer(int fd, sigpipe_guard& guard) : fd_(fd), guard_(guard) {
      setp(buffer_.get(), buffer_.get() + io_chunk);
    }

  protected:
    int_type overflow(int_type c) override {
      if (!drain())
        return traits_type::eof();
      if (!traits_type::eq_int_type(c, traits_type::eof())) {
        *pptr() = traits_type::to_char_type(c);
        pbump(1);
      }
      return traits_type::not_eof(c);
    }
    int sync() override { return drain() ? 0 : -1; }

  private:
    bool drain() {
      const char* at = pbase();
      auto left = static_cast<std::size_t>(pptr() - pbase());
      while (!broken_ && left > 0) {
        ssize_t n = ::write(fd_, at, left);
        if (n >= 0) {
          at += n;
          left -= static_cast<std::size_t>(n);
        } else if (errno != EINTR) {
          if (errno == EPIPE)
            guard_.note_epipe();
          broken_ = true; // the script stopped reading: its exit status and stdout decide
        }
      }
      setp(buffer_.get(), buffer_.get() + io_chunk);
      return !broken_;
    }
    int fd_;
    sigpipe_guard& guard_;
    std::unique_ptr<char[]> buffer_ = std::make_unique<char[]>(io_chunk);
    bool broken_ = false;
  };

  void run() {
    sigpipe_guard no_sigpipe; // the mask is per thread: this one writes
    try {
      fd_buffer buffer{fd_.get(), no_sigpipe};
      std::ostream out{&buffer};
      out << input_; // the same text as input_.dump(); a broken pipe makes the rest no-ops
      out.flush();
    } catch (...) {
      // Text the serializer refuses (invalid UTF-8 cannot come from the store): the script
      // gets a cut input and fails on it; nothing here may throw out of its thread.
    }
    fd_.reset(); // EOF tells the script its input is complete
  }

  unique_fd fd_;
  const nlohmann::json& input_;
  std::thread thread_; // last: started once the members it uses exist
};

// Parses a child's stdout as it arrives, from a thread of its own, so that
// an output of megabytes is never also held as text. Keeps what the stdout
// contract's errors quote (the start of the text, whether it was blank) and
// stops a child whose stdout passes its limit.
class json_stdout_reader {
public:
  json_stdout_reader(unique_fd fd, std::size_t max_bytes, pid_t group)
      : fd_(std::move(fd)), max_bytes_(max_bytes), group_(group), thread_([this] { run(); }) {}
  json_stdout_reader(const json_stdout_reader&) = delete;
  json_stdout_reader& operator=(const json_stdout_reader&) = delete;
  ~json_stdout_reader() { join(); }
  void join() {
    if (thread_.joinable())
      thread_.join();
  }
  /// After join(): what the child wrote, parsed (discarded if not one JSON value).
  parsed_stdout take() { return std::move(parsed_); }
  bool overflowed() const { return overflow_; }

private:
  class fd_buffer : public std::streambuf {
  public:
    explicit fd_buffer(json_stdout_reader& owner) : owner_(owner) {}

  protected:
    int_type underflow() override {
      if (gptr() < egptr())
        return traits_type::to_int_type(*gptr());
      for (;;) {
        if (owner_.overflow_ || !owner_.fd_)
          return traits_type::eof();
        ssize_t n = ::read(owner_.fd_.get(), buffer_.get(), io_chunk);
        if (n < 0 && errno == EINTR)
          continue;
        if (n <= 0) {
          owner_.fd_.reset();
          return traits_type::eof();
        }
        owner_.seen(std::string_view(buffer_.get(), static_cast<std::size_t>(n)));
        if (owner_.overflow_)
          return traits_type::eof();
        setg(buffer_.get(), buffer_.get(), buffer_.get() + n);
        return traits_type::to_int_type(*gptr());
      }
    }

  private:
    json_stdout_reader& owner_;
    std::unique_ptr<char[]> buffer_ = std::make_unique<char[]>(io_chunk);
  };

  /// Counts, keeps the start for error excerpts, and kills a runaway child.
  void seen(std::string_view chunk) {
    total_ += chunk.size();
    if (total_ > max_bytes_) {
      overflow_ = true;
      kill_process_group(group_); // our memory stays bounded; it and what it started stop
      return;
    }
    for (char c : chunk) {
      if (parsed_.blank && std::isspace(static_cast<unsigned char>(c)))
        continue;
      parsed_.blank = false;
      if (parsed_.head.size() >= head_bytes)
        break;
      parsed_.head += c;
    }
  }

  void run() {
    fd_buffer buffer{*this};
    std::istream in{&buffer};
    parsed_.document = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    // A parse that stopped early leaves the rest unread: drain it, or the
    // child would block writing to a full pipe.
    while (buffer.sbumpc() != std::streambuf::traits_type::eof()) {
    }
    fd_.reset();
  }

  // More than stdout_excerpt() quotes, so that the excerpt is the same as
  // from the whole text.
  static constexpr std::size_t head_bytes = stdout_excerpt_bytes + 56;
  unique_fd fd_;
  std::size_t max_bytes_;
  pid_t group_;
  std::size_t total_ = 0;
  bool overflow_ = false;
  parsed_stdout parsed_;
  std::thread thread_; // last: started once the members it uses exist
};

script_result cannot_start(const script_spec& spec, const std::string& why) {
  script_result r;
  std::string name = spec.command.empty() ? std::string() : spec.command.front();
  r.error = one_line("cannot start '" + name + "': " + why);
  return r;
}

} // namespace

void kill_process_group(pid_t pgid) {
  // kill(0, …) would hit our own group and kill(-1, …) every process we may signal.
  if (pgid <= 1)
    return;
  ::kill(-pgid, SIGKILL); // ESRCH: the whole group is already gone
}

namespace {

// A started child and our ends of its pipes; pid 0 and `error` set when it could not start.
struct started_child {
  pid_t pid = 0;
  unique_fd in_w, out_r, err_r;
  std::string error;
};

// Checks the spec and spawns the child in its own process group with stdin, stdout and stderr
// on pipes. Shared by run_script (one execution) and serve_script_worker (a long-lived child).
started_child spawn_child(const script_spec& spec) {
  started_child child;
  auto fail = [&](const std::string& why) {
    child.error = cannot_start(spec, why).error;
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

} // namespace

namespace {

/// run_script with its input as text (`text`) or as a document streamed to
/// stdin from a thread (`document`); exactly one of them is given.
script_result run_child(const script_spec& spec, const std::string* text,
                        const nlohmann::json* document,
                        const std::function<void(pid_t)>& on_started) {
  static const std::string no_text;
  const std::string& input = text ? *text : no_text;
  // Declared before the child's guard, so destroyed after it: the guard
  // kills the child first, which ends a blocked write with EPIPE.
  std::optional<json_stdin_writer> writer;
  std::optional<json_stdout_reader> reader;
  auto child = spawn_child(spec);
  if (child.pid == 0) {
    script_result r;
    r.error = std::move(child.error);
    return r;
  }
  pid_t pid = child.pid;
  child_guard guard{pid};
  unique_fd in_w = std::move(child.in_w);
  unique_fd out_r = std::move(child.out_r);
  unique_fd err_r = std::move(child.err_r);

  if (on_started)
    on_started(pid);
  if (document) {
    writer.emplace(std::move(in_w), *document);
    reader.emplace(std::move(out_r), spec.max_stdout, pid);
  }

  // --- I/O: feed stdin, drain stdout and stderr, all at once ----------------------------------
  // A child may write megabytes before it reads its input; serving the three pipes from one
  // poll() loop means neither side ever waits for the other.
  std::string out;
  std::string err_tail;
  bool stdout_overflow = false;
  std::string io_error;
  {
    sigpipe_guard no_sigpipe;
    std::size_t written = 0;
    if (input.empty()) {
      in_w.reset();
    } else {
      int flags = ::fcntl(in_w.get(), F_GETFL);
      if (flags < 0 || ::fcntl(in_w.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
        io_error = "cannot make stdin non-blocking: " + errno_text(errno);
        kill_process_group(pid);
        in_w.reset();
      }
    }
    auto buffer = std::make_unique<char[]>(io_chunk);

    while (in_w || out_r || err_r) {
      pollfd fds[3];
      nfds_t count = 0;
      auto watch = [&](const unique_fd& fd, short events) {
        if (!fd)
          return -1;
        fds[count] = {fd.get(), events, 0};
        return static_cast<int>(count++);
      };
      int in_slot = watch(in_w, POLLOUT);
      int out_slot = watch(out_r, POLLIN);
      int err_slot = watch(err_r, POLLIN);

      if (::poll(fds, count, -1) < 0) {
        if (errno == EINTR)
          continue;
        io_error = "poll: " + errno_text(errno);
        kill_process_group(pid);
        break;
      }

      // POLLERR on the write end means the child closed its stdin: the write below then fails
      // with EPIPE, which is how we learn it.
      if (in_slot >= 0 && (fds[in_slot].revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))) {
        ssize_t n = ::write(in_w.get(), input.data() + written, input.size() - written);
        if (n >= 0) {
          written += static_cast<std::size_t>(n);
          if (written == input.size())
            in_w.reset(); // EOF tells the script its input is complete
        } else if (errno == EPIPE) {
          // The script stopped reading (or never started): not an error by itself; its exit
          // status and stdout decide.
          no_sigpipe.note_epipe();
          in_w.reset();
        } else if (errno != EINTR && errno != EAGAIN) {
          in_w.reset();
        }
      }

      if (out_slot >= 0 && (fds[out_slot].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))) {
        ssize_t n = ::read(out_r.get(), buffer.get(), io_chunk);
        if (n > 0) {
          if (out.size() + static_cast<std::size_t>(n) > spec.max_stdout) {
            // A runaway script must not exhaust our memory: stop it and everything it started.
            stdout_overflow = true;
            kill_process_group(pid);
            out_r.reset();
            in_w.reset();
          } else {
            out.append(buffer.get(), static_cast<std::size_t>(n));
          }
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          out_r.reset();
        }
      }

      if (err_slot >= 0 && (fds[err_slot].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))) {
        ssize_t n = ::read(err_r.get(), buffer.get(), io_chunk);
        if (n > 0) {
          err_tail.append(buffer.get(), static_cast<std::size_t>(n));
          if (err_tail.size() > 2 * stderr_tail_bytes) // trim in batches, not per read
            err_tail.erase(0, err_tail.size() - stderr_tail_bytes);
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          err_r.reset();
        }
      }
    }
  }

  // --- exit status --------------------------------------------------------------------------
  // Reaping only now keeps the pid (= pgid) reserved while the pipes were open, so a deadline
  // kill issued before this point cannot reach a recycled process group.
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  int wait_errno = errno;
  guard.reaped = true;
  if (writer)
    writer->join(); // the child is gone: its stdin's read end is closed
  if (reader) {
    reader->join(); // stdout reached EOF (or its limit)
    stdout_overflow = reader->overflowed();
  }

  script_result r;
  r.pid = pid;
  if (err_tail.size() > stderr_tail_bytes)
    err_tail.erase(0, err_tail.size() - stderr_tail_bytes);
  r.stderr_tail = std::move(err_tail);
  if (waited == pid) {
    if (WIFEXITED(status))
      r.exit_status = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      r.term_signal = WTERMSIG(status);
  }

  std::string transport_problem =
      !io_error.empty() ? io_error
      : waited != pid // e.g. SIGCHLD set to SIG_IGN by the application: children auto-reaped
          ? "cannot collect exit status: " + errno_text(wait_errno)
          : stdout_overflow ? "stdout exceeds " + config::format_byte_size(spec.max_stdout)
                            : std::string();
  if (reader)
    return judge_script_exit(std::move(r), reader->take(), transport_problem);
  return judge_script_exit(std::move(r), out, transport_problem);
}

} // namespace

script_result run_script(const script_spec& spec, const std::string& input,
                         const std::function<void(pid_t)>& on_started) {
  return run_child(spec, &input, nullptr, on_started);
}

script_result run_script_streamed(const script_spec& spec, const nlohmann::json& input,
                                  const std::function<void(pid_t)>& on_started) {
  return run_child(spec, nullptr, &input, on_started);
}

// --- worker mode: a long-lived child, one JSON line in and one out per request -------------

script_worker_control::script_worker_control() {
  // Non-blocking both ways: send() and stop() must never block their (scheduler) thread, and the
  // I/O thread drains the pipe until EAGAIN.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
    throw std::system_error(errno, std::generic_category(), "script worker wake-up pipe");
  wake_r_ = fds[0];
  wake_w_ = fds[1];
}

script_worker_control::~script_worker_control() {
  ::close(wake_r_);
  ::close(wake_w_);
}

void script_worker_control::send(std::string bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pending_.empty())
      pending_ = std::move(bytes);
    else
      pending_ += bytes;
  }
  wake();
}

void script_worker_control::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake();
}

bool script_worker_control::take(std::string& into) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (into.empty())
    into.swap(pending_);
  else
    into += pending_;
  pending_.clear();
  return stop_;
}

void script_worker_control::wake() {
  char byte = 1;
  // EAGAIN: the pipe is full of wake-ups already, which is as good as one more.
  while (::write(wake_w_, &byte, 1) < 0 && errno == EINTR) {
  }
}

script_result serve_script_worker(const script_spec& spec, script_worker_control& control,
                                  const script_worker_callbacks& callbacks,
                                  std::size_t max_line_bytes) {
  auto child = spawn_child(spec);
  if (child.pid == 0) {
    script_result r;
    r.error = std::move(child.error);
    return r;
  }
  pid_t pid = child.pid;
  child_guard guard{pid};
  unique_fd in_w = std::move(child.in_w);
  unique_fd out_r = std::move(child.out_r);
  unique_fd err_r = std::move(child.err_r);
  if (callbacks.started)
    callbacks.started(pid);

  std::string to_write; // request bytes for the child's stdin, from `written` on
  std::size_t written = 0;
  std::string line;           // stdout since the last '\n'
  std::string err_tail;       // the child's whole stderr, tail
  std::string request_stderr; // stderr since the current request was taken, tail
  std::string problem;        // why we ended the child, if we did
  auto keep_tail = [](std::string& s) {
    if (s.size() > 2 * stderr_tail_bytes) // trim in batches, not per read
      s.erase(0, s.size() - stderr_tail_bytes);
  };
  auto end_child = [&](std::string why) {
    if (problem.empty())
      problem = std::move(why);
    kill_process_group(pid); // still unreaped: the group cannot have been recycled
    in_w.reset();
    out_r.reset();
  };
  auto take_control = [&] {
    auto before = to_write.size();
    bool stop = control.take(to_write);
    if (to_write.size() != before)
      request_stderr.clear(); // a new request: earlier stderr belongs to earlier ones
    if (stop)
      end_child("stopped");
  };

  {
    sigpipe_guard no_sigpipe;
    int flags = ::fcntl(in_w.get(), F_GETFL);
    if (flags < 0 || ::fcntl(in_w.get(), F_SETFL, flags | O_NONBLOCK) < 0)
      end_child("cannot make stdin non-blocking: " + errno_text(errno));
    auto buffer = std::make_unique<char[]>(io_chunk);
    take_control();

    // Until stdout ends (the child exited or we ended it): stderr is only drained on the way,
    // since a grandchild may hold it open forever.
    while (out_r) {
      pollfd fds[4];
      nfds_t count = 0;
      auto watch = [&](int fd, short events) {
        fds[count] = {fd, events, 0};
        return static_cast<int>(count++);
      };
      int wake_slot = watch(control.wake_fd(), POLLIN);
      int in_slot = in_w && !to_write.empty() ? watch(in_w.get(), POLLOUT) : -1;
      int err_slot = err_r ? watch(err_r.get(), POLLIN) : -1;
      int out_slot = watch(out_r.get(), POLLIN);
      if (::poll(fds, count, -1) < 0) {
        if (errno != EINTR)
          end_child("poll: " + errno_text(errno));
        continue;
      }
      if (fds[wake_slot].revents & POLLIN) {
        char drain[64];
        while (::read(control.wake_fd(), drain, sizeof drain) > 0) {
        }
        take_control();
        if (!out_r)
          break;
      }
      if (in_slot >= 0 && (fds[in_slot].revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))) {
        ssize_t n = ::write(in_w.get(), to_write.data() + written, to_write.size() - written);
        if (n >= 0) {
          // An offset, not an erase per write: erasing the front of a 50 MB
          // request 64 KB at a time moved gigabytes.
          written += static_cast<std::size_t>(n);
          if (written == to_write.size()) {
            to_write.clear();
            written = 0;
          }
        } else if (errno == EPIPE) {
          // It closed its stdin: it can take no more requests; its exit will say why.
          no_sigpipe.note_epipe();
          in_w.reset();
          to_write.clear();
          written = 0;
        } else if (errno != EINTR && errno != EAGAIN) {
          end_child("writing to stdin: " + errno_text(errno));
          break;
        }
      }
      // stderr before stdout, so that what a child logs before its reply goes with that reply.
      if (err_slot >= 0 && (fds[err_slot].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))) {
        ssize_t n = ::read(err_r.get(), buffer.get(), io_chunk);
        if (n > 0) {
          err_tail.append(buffer.get(), static_cast<std::size_t>(n));
          request_stderr.append(buffer.get(), static_cast<std::size_t>(n));
          keep_tail(err_tail);
          keep_tail(request_stderr);
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          err_r.reset();
        }
      }
      if (fds[out_slot].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) {
        ssize_t n = ::read(out_r.get(), buffer.get(), io_chunk);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
          out_r.reset();
          break;
        }
        if (n < 0)
          continue;
        std::size_t scan_from = line.size(); // only the new bytes can hold a new '\n'
        line.append(buffer.get(), static_cast<std::size_t>(n));
        std::size_t begin = 0;
        for (auto nl = line.find('\n', scan_from); nl != std::string::npos;
             nl = line.find('\n', begin)) {
          std::string reply = line.substr(begin, nl - begin);
          begin = nl + 1;
          if (request_stderr.size() > stderr_tail_bytes)
            request_stderr.erase(0, request_stderr.size() - stderr_tail_bytes);
          if (callbacks.line)
            callbacks.line(std::move(reply), std::move(request_stderr));
          request_stderr.clear();
        }
        line.erase(0, begin);
        if (line.size() > max_line_bytes) {
          // A runaway child must not exhaust our memory; its stream is lost anyway.
          end_child("reply line exceeds " + std::to_string(max_line_bytes >> 20) + " MiB");
          line.clear();
        }
      }
    }
    in_w.reset();
    out_r.reset();

    // The child closed stdout: it exited or is about to. Anything left in its group is the
    // orphaned work of a worker nobody can talk to any more.
    kill_process_group(pid);
  }

  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  int wait_errno = errno;
  guard.reaped = true;

  // Its last words on stderr: the group is dead, so EOF comes at once unless something escaped
  // the group; a second bounds that case.
  if (err_r) {
    auto buffer = std::make_unique<char[]>(io_chunk);
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (err_r) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      give_up - std::chrono::steady_clock::now())
                      .count();
      pollfd fd{err_r.get(), POLLIN, 0};
      int ready = left > 0 ? ::poll(&fd, 1, static_cast<int>(left)) : 0;
      if (ready < 0 && errno == EINTR)
        continue;
      if (ready <= 0)
        break;
      ssize_t n = ::read(err_r.get(), buffer.get(), io_chunk);
      if (n > 0) {
        err_tail.append(buffer.get(), static_cast<std::size_t>(n));
        keep_tail(err_tail);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        break;
      }
    }
    err_r.reset();
  }

  script_result r;
  r.pid = pid;
  if (err_tail.size() > stderr_tail_bytes)
    err_tail.erase(0, err_tail.size() - stderr_tail_bytes);
  r.stderr_tail = std::move(err_tail);
  if (waited == pid) {
    if (WIFEXITED(status))
      r.exit_status = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      r.term_signal = WTERMSIG(status);
  }
  if (problem.empty())
    problem = waited != pid        ? "cannot collect exit status: " + errno_text(wait_errno)
              : r.term_signal != 0 ? "killed by signal " + std::to_string(r.term_signal)
                                   : "exit status " + std::to_string(r.exit_status);
  return judge_script_exit(std::move(r), "", problem);
}

script_result judge_script_exit(script_result r, const std::string& out,
                                const std::string& transport_problem) {
  parsed_stdout parsed;
  parsed.document = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  parsed.blank = std::all_of(out.begin(), out.end(),
                             [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
  parsed.head = stdout_excerpt_source(out);
  return judge_script_exit(std::move(r), std::move(parsed), transport_problem);
}

script_result judge_script_exit(script_result r, parsed_stdout out,
                                const std::string& transport_problem) {
  auto fail = [&](std::string problem) {
    if (!r.stderr_tail.empty())
      problem += "; stderr: " + r.stderr_tail;
    r.ok = false;
    r.error = one_line(problem);
    return std::move(r);
  };
  if (!transport_problem.empty())
    return fail(transport_problem);
  if (r.term_signal != 0)
    return fail("killed by signal " + std::to_string(r.term_signal));
  if (r.exit_status != 0)
    return fail("exit status " + std::to_string(r.exit_status));

  // --- the stdout contract: exactly one JSON object with a string "outcome" -----------------
  auto& doc = out.document;
  if (doc.is_discarded()) {
    if (out.blank)
      return fail("stdout is empty");
    return fail("stdout is not JSON: " + stdout_excerpt(out.head));
  }
  if (!doc.is_object())
    return fail("stdout is not a JSON object: " + stdout_excerpt(out.head));
  auto outcome = doc.find("outcome");
  if (outcome == doc.end() || !outcome->is_string())
    return fail("stdout has no string field 'outcome'");
  if (outcome->get_ref<const std::string&>().empty())
    return fail("stdout field 'outcome' is empty");

  r.ok = true;
  r.outcome = outcome->get<std::string>();
  if (auto output = doc.find("output"); output != doc.end())
    r.output = std::move(*output);
  return r;
}

} // namespace turing::actors
