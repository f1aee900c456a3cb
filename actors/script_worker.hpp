// Worker mode of script stages, the I/O side: one long-lived child per call of
// serve_script_worker, fed requests as JSON lines and answering one JSON line each. The pool
// that owns the children and matches replies to executions is script_worker_pool.
#pragma once

#include "actors/script_runner.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

namespace turing::actors {

/// What serve_script_worker reports, from the thread that called it.
struct script_worker_callbacks {
  /// Right after the child exists.
  std::function<void(pid_t)> started;
  /// Each reply line, judged by the stdout contract (judge_script_exit: one JSON object with a
  /// non-empty string "outcome"); a failure's error ends with the stderr the child wrote since
  /// its request was sent. `in_step` is false when the line was not one JSON value: the stream
  /// can then no longer be matched to requests.
  std::function<void(script_result reply, bool in_step)> reply;
};

/// What a worker-mode child's I/O threads (serve_script_worker) and the actor feeding it share:
/// the requests not yet written to the child's stdin and a stop request. send() and stop() are
/// thread-safe and never block, so an actor on CAF's scheduler may call them.
class script_worker_control {
public:
  /// One request: a document written to the child's stdin as one line of JSON. Shared, not
  /// copied: a payload of megabytes is serialized straight into the pipe, never held as text.
  using request = std::shared_ptr<const nlohmann::json>;

  script_worker_control(); // throws std::system_error if its wake-up pipe cannot be made
  ~script_worker_control();
  script_worker_control(const script_worker_control&) = delete;
  script_worker_control& operator=(const script_worker_control&) = delete;

  /// Queues one request for the child's stdin.
  void send(request r);
  /// Ends the child: its I/O thread SIGKILLs the process group, reaps it and returns. Only that
  /// thread kills, before it reaps, so the kill can never reach a recycled pid.
  void stop();

  // For serve_script_worker's side:
  /// Readable when send() or stop() was called; drain it before state().
  int wake_fd() const { return wake_r_; }
  struct snapshot {
    bool stop = false;
    std::uint64_t sent = 0; ///< requests queued so far
  };
  snapshot state();
  /// Blocks until a request is queued (and takes it) or the control is stopped or closed
  /// (returns null).
  request next_request();
  /// No more requests will be taken: next_request() returns null from now on.
  void close();

private:
  void wake();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<request> requests_;
  std::uint64_t sent_ = 0;
  bool stop_ = false;
  bool closed_ = false;
  int wake_r_ = -1;
  int wake_w_ = -1;
};

/// A reply line longer than this ends the worker: an error, not our memory exhausted.
inline constexpr std::size_t default_max_reply_line = std::size_t{64} << 20;

/// Runs one long-lived worker child (same spawning as run_script: own process group, PATH
/// resolved first) and serves it until it exits or `control.stop()`. A thread of its own writes
/// each request to the child's stdin as it serializes it, and another parses each stdout line
/// as it arrives, so neither a request nor a reply is ever held as text; this thread keeps the
/// stderr tail and reports each reply in order. Blocking; call it on a dedicated thread.
/// Returns once the child is reaped, always with ok=false and `error` saying why it ended
/// ("exit status 2; stderr: …", "killed by signal 9", "reply line exceeds 64 MiB", "stopped",
/// "cannot start '…': …"), plus pid, exit_status, term_signal and stderr_tail as run_script
/// fills them.
script_result serve_script_worker(const script_spec& spec, script_worker_control& control,
                                  const script_worker_callbacks& callbacks,
                                  std::size_t max_line_bytes = default_max_reply_line);

} // namespace turing::actors
