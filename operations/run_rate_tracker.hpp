// Items per second over the last minute, per run, from successive snapshots:
// cheaper than asking the database which items finished when (no index on it).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>

namespace turing::operations {

class run_rate_tracker {
public:
  using clock = std::chrono::steady_clock;

  explicit run_rate_tracker(std::chrono::seconds window = std::chrono::seconds(60))
      : window_(window) {}

  /// Records that `run` had `done` finished items at `now`.
  void observe(int64_t run, int64_t done, clock::time_point now);

  /// Finished items per second over the window (or as much of it as has
  /// been observed); nothing until two observations at least 1 s apart.
  std::optional<double> rate(int64_t run) const;

private:
  struct sample {
    clock::time_point at;
    int64_t done;
  };
  std::chrono::seconds window_;
  mutable std::mutex mutex_; // the HTTP server answers on several threads
  std::map<int64_t, std::deque<sample>> samples_;
};

} // namespace turing::operations
