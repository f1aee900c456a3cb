// Script handler executor: runs one script stage as a child process in its own
// process group (JSON in on stdin, {"outcome", "output"} out on stdout), so a
// deadline can kill it and everything it started — a thread could not be.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/types.h>
#include <vector>

namespace turing::actors {

struct script_spec {
  std::vector<std::string> command;       // argv; argv[0] resolved through PATH (of the parent's
                                          // environment) BEFORE spawning
  std::filesystem::path working_dir;      // empty = inherit
  std::map<std::string, std::string> env; // added to (overriding) the parent's environment
  /// A one-shot script whose stdout grows past this is killed (runtime.max_payload: its
  /// output could never be stored anyway, and our memory stays bounded).
  std::size_t max_stdout = std::size_t{16} << 20;
};

struct script_result {
  bool ok = false;
  std::string outcome;   // when ok
  nlohmann::json output; // when ok (null if the script gave none)
  /// When !ok: ONE line (valid UTF-8, no control characters) naming the problem, e.g.
  /// "exit status 3; stderr: <tail>", "killed by signal 9", "stdout is not JSON: <first 200
  /// chars>", "stdout has no string field 'outcome'", "cannot start 'lucyy.py': No such file or
  /// directory". Failures after the child ran end with "; stderr: <tail>" when it wrote any.
  std::string error;
  int exit_status = -1;    // -1 if signalled or never started
  int term_signal = 0;     // the signal that ended the child, 0 if it exited
  std::string stderr_tail; // last 2048 bytes of stderr, always kept (raw bytes)
  pid_t pid = 0;           // the child's pid == its process group id; 0 if never started
};

/// Runs the script: writes `input` to its stdin (then closes it), reads stdout and stderr fully,
/// waits for exit. Blocking; call it on a dedicated thread, never on CAF's scheduler.
///
/// `on_started(pid)` is called right after the child exists (so another thread can kill its group
/// at a deadline). There is no timeout in here: if the child exits while a grandchild keeps stdout
/// or stderr open, this keeps waiting for EOF until the caller's deadline kills the group.
/// The pid stays reserved (unreaped) until both pipes reach EOF, so killing it before run_script
/// returns can never hit a recycled pid.
///
/// Never throws for child-side problems; returns ok=false with the reason. If `on_started`
/// throws, the child's group is killed and reaped and the exception propagates.
script_result run_script(const script_spec& spec, const std::string& input,
                         const std::function<void(pid_t)>& on_started = {});

/// run_script with `input` streamed to stdin as JSON text from a thread of its
/// own, 64 KB at a time, never held as one string: a payload of megabytes
/// costs no copy. `input` must outlive the call (it is read until the child
/// has taken it all or is gone).
script_result run_script_streamed(const script_spec& spec, const nlohmann::json& input,
                                  const std::function<void(pid_t)>& on_started = {});

/// Judges a finished child by the contract: a signal or a non-zero exit
/// status fails, else stdout must be one JSON object with a non-empty string
/// "outcome". `r` carries exit_status, term_signal and stderr_tail; `out` is
/// everything the child wrote to stdout; a non-empty `transport_problem`
/// (the pipes or the wait failed) fails it first. The simulation judges
/// scripted exits with it too, so both fail the same way on the same output.
script_result judge_script_exit(script_result r, const std::string& out,
                                const std::string& transport_problem = "");

/// A child's stdout as the contract reads it: parsed (discarded if it is not
/// one JSON value), whether it was blank, and its start (past leading white
/// space) for the error excerpts.
struct parsed_stdout {
  nlohmann::json document;
  bool blank = true;
  std::string head;
};

/// judge_script_exit for a stdout parsed as it arrived (run_script_streamed).
script_result judge_script_exit(script_result r, parsed_stdout out,
                                const std::string& transport_problem = {});

// --- worker mode ---------------------------------------------------------------------------

/// What serve_script_worker reports, from its own thread.
struct script_worker_callbacks {
  /// Right after the child exists (from the I/O thread).
  std::function<void(pid_t)> started;
  /// Each line the child writes to stdout, without its '\n', with the stderr (tail, raw bytes)
  /// it wrote since its current request was queued.
  std::function<void(std::string line, std::string request_stderr)> line;
};

/// What a worker-mode child's I/O thread (serve_script_worker) and the actor feeding it share:
/// request bytes queued for the child's stdin and a stop request. Both calls are thread-safe
/// and never block, so an actor on CAF's scheduler may make them.
class script_worker_control {
public:
  script_worker_control(); // throws std::system_error if its wake-up pipe cannot be made
  ~script_worker_control();
  script_worker_control(const script_worker_control&) = delete;
  script_worker_control& operator=(const script_worker_control&) = delete;

  /// Queues bytes for the child's stdin: one request, a JSON line ending in '\n'.
  void send(std::string bytes);
  /// Ends the child: its I/O thread SIGKILLs the process group, reaps it and returns. Only that
  /// thread kills, before it reaps, so the kill can never reach a recycled pid.
  void stop();

  // For serve_script_worker's side:
  /// Readable when send() or stop() was called; drain it before take().
  int wake_fd() const { return wake_r_; }
  /// Moves the queued bytes to the end of `into`; true if stop() was called.
  bool take(std::string& into);

private:
  void wake();

  std::mutex mutex_;
  std::string pending_;
  bool stop_ = false;
  int wake_r_ = -1;
  int wake_w_ = -1;
};

/// A reply line longer than this ends the worker: an error, not our memory exhausted.
inline constexpr std::size_t default_max_reply_line = std::size_t{64} << 20;

/// Runs one long-lived worker child (same spawning as run_script: own process group, PATH
/// resolved first) and serves it until it exits or `control.stop()`: writes what
/// `control.send` queued to its stdin, reports every stdout line, keeps the stderr tail.
/// Blocking; call it on a dedicated thread. Returns once the child is reaped, always with
/// ok=false and `error` saying why it ended ("exit status 2; stderr: …", "killed by signal 9",
/// "reply line exceeds 64 MiB", "stopped", "cannot start '…': …"), plus pid, exit_status,
/// term_signal and stderr_tail as run_script fills them.
script_result serve_script_worker(const script_spec& spec, script_worker_control& control,
                                  const script_worker_callbacks& callbacks,
                                  std::size_t max_line_bytes = default_max_reply_line);

/// SIGKILLs the whole process group (the script and anything it started). Thread-safe,
/// async-signal-safe; a no-op if already gone, and for pgid <= 1 (which would mean "our own
/// group" or "every process").
void kill_process_group(pid_t pgid);

} // namespace turing::actors
