// Script handler executor: runs one script stage as a child process in its own
// process group (JSON in on stdin, {"outcome", "output"} out on stdout), so a
// deadline can kill it and everything it started — a thread could not be.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
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

/// SIGKILLs the whole process group (the script and anything it started). Thread-safe,
/// async-signal-safe; a no-op if already gone, and for pgid <= 1 (which would mean "our own
/// group" or "every process").
void kill_process_group(pid_t pgid);

} // namespace turing::actors
