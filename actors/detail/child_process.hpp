// Child processes of script stages: spawning a script in its own process group with its stdin,
// stdout and stderr on pipes, and the descriptor and signal guards that both script modes
// (one-shot in script_runner.cpp, worker in script_worker.cpp) use.
#pragma once

#include "actors/script_runner.hpp"

#include <csignal>
#include <cstddef>
#include <memory>
#include <pthread.h>
#include <streambuf>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>

namespace turing::actors::detail {

inline constexpr std::size_t stderr_tail_bytes = 2048;
inline constexpr std::size_t io_chunk = 64 * 1024;

/// strerror_r's text for `err` (strerror() is not guaranteed thread-safe).
std::string errno_text(int err);

/// Makes arbitrary child bytes fit in a one-line error that JSON serialisation accepts: line
/// breaks become " | " (blank lines dropped), other control characters a space, and invalid
/// UTF-8 (a tail cut mid-character, binary noise) U+FFFD — nlohmann::json::dump() would throw on
/// it.
std::string one_line(std::string_view s);

/// An owned file descriptor, closed on destruction.
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
  /// Waits for the child (not killing it) and fills `r`: pid, exit_status or
  /// term_signal, and the stderr tail trimmed to its size. Returns "" or the
  /// problem of a wait that collected nothing (e.g. SIGCHLD ignored by the
  /// application, so children are reaped automatically).
  std::string reap_into(script_result& r, std::string err_tail);
  ~child_guard() {
    if (pid <= 0 || reaped)
      return;
    turing::actors::kill_process_group(pid);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
};

/// A thread that runs `f` and is joined when the owner is destroyed (C++17
/// has no std::jthread). Neither copied nor moved: its function usually
/// captures its owner's `this`.
class joining_thread {
public:
  template <class F> explicit joining_thread(F f) : thread_(std::move(f)) {}
  joining_thread(const joining_thread&) = delete;
  joining_thread& operator=(const joining_thread&) = delete;
  ~joining_thread() { join(); }
  void join() {
    if (thread_.joinable())
      thread_.join();
  }

private:
  std::thread thread_;
};

/// A started child and our ends of its pipes; pid 0 and `error` set when it could not start.
struct started_child {
  pid_t pid = 0;
  unique_fd in_w, out_r, err_r;
  std::string error;
};

/// Checks the spec and spawns the child in its own process group with stdin, stdout and stderr
/// on pipes; our ends are close-on-exec. The error names the cause ("cannot start 'x': ...").
started_child spawn_child(const script_spec& spec);

/// Writes what is put into it to a descriptor, 64 KB at a time. With a halt descriptor the
/// target must be non-blocking: each write waits in poll() for room or for `halt_fd` to become
/// readable, which ends the writing (a child that stopped reading cannot then hold the writer
/// forever). Without one, writes block. A broken pipe ends the writing quietly: the child's
/// exit status and stdout decide.
class fd_output_buffer : public std::streambuf {
public:
  fd_output_buffer(int fd, sigpipe_guard& guard, int halt_fd = -1);
  /// The target stopped taking bytes (EPIPE, another error, or halted).
  bool broken() const { return broken_; }

protected:
  int_type overflow(int_type c) override;
  int sync() override;

private:
  bool drain();
  int fd_;
  int halt_fd_;
  sigpipe_guard& guard_;
  std::unique_ptr<char[]> buffer_;
  bool broken_ = false;
};

} // namespace turing::actors::detail
