// The progress bar `turing run` shows on a terminal instead of the periodic
// `progress:` log line: the runs this node is working on, done/total, rate, ETA.
#pragma once

#include <atomic>
#include <string>
#include <thread>

namespace turing::cli {

class run_progress {
public:
  /// Polls the runs every second on a connection of its own to `dsn`.
  explicit run_progress(std::string dsn);
  ~run_progress(); ///< one last look, then the final line is logged and the bar cleared
  run_progress(const run_progress&) = delete;
  run_progress& operator=(const run_progress&) = delete;

private:
  void loop();

  std::string dsn_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace turing::cli
