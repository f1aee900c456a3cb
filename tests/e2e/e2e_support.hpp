// Support for end-to-end tests: real child processes (the turing CLI, the
// model simulator), the skill pipeline's config rendered for a test's own
// database and simulator port, and a store to check the end state with.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <sys/types.h>
#include <vector>

namespace turing::testing {

/// A child process with its output in a log file; killed (SIGKILL) when
/// destroyed if still running.
class child_process {
public:
  child_process(std::vector<std::string> argv, std::filesystem::path log_file);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  /// Sends `signal` (no-op if it ended).
  void signal(int signal);
  /// Waits up to `timeout` for the exit; returns the exit status, 128+signal
  /// if signalled, or -1 on timeout (the process is then still running).
  int wait(std::chrono::milliseconds timeout);
  /// The log so far (stdout and stderr interleaved).
  std::string output() const;

private:
  pid_t pid_ = 0;
  int status_ = -1;
  std::filesystem::path log_file_;
};

/// A fresh temporary directory, removed at destruction.
struct temp_dir {
  std::filesystem::path path;
  temp_dir();
  ~temp_dir();
};

/// Starts turing-model-sim on a free port with extra arguments; waits until
/// it listens.
struct model_simulator {
  child_process process;
  int port = 0;
  model_simulator(const temp_dir& dir, std::vector<std::string> extra_args);
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port); }
};

/// examples/owl/owl.toml with absolute script and prompt paths, the given
/// database URL and model endpoint, and `replacements` applied as plain text
/// substitutions (e.g. {"lease_ttl = \"15s\"", "lease_ttl = \"2s\""}).
std::filesystem::path
write_owl_config(const temp_dir& dir, const std::string& database_url, const std::string& endpoint,
                 const std::vector<std::pair<std::string, std::string>>& replacements = {});

/// The first `n` lines of the example's skills.jsonl, written to the dir.
std::filesystem::path write_skills(const temp_dir& dir, size_t n);

/// Runs the turing CLI to its end (up to `timeout`); returns its exit status.
int run_turing(const temp_dir& dir, std::vector<std::string> args, std::string* output,
               std::chrono::milliseconds timeout = std::chrono::minutes(3));

/// Runs the turing CLI to its end; true when it exits 0. Otherwise its exit
/// status and output go to stderr, beside the test's own report.
bool turing_ok(const temp_dir& dir, std::vector<std::string> args, std::string& output);

/// Writes `text` to dir/name; returns the path.
std::filesystem::path write_file(const temp_dir& dir, const std::string& name,
                                 const std::string& text);

/// Starts `turing args...` without waiting.
child_process start_turing(const temp_dir& dir, std::vector<std::string> args,
                           const std::string& log_name);

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
template <class F> bool eventually(F condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition())
      return true;
    struct timespec ts {
      0, 20 * 1000 * 1000
    };
    nanosleep(&ts, nullptr);
  }
  return condition();
}

} // namespace turing::testing
