// The one place that tells of a database outage: its first failure, a summary
// every so often while it lasts, and its end, instead of one warning per
// failed operation from every actor that talks to the database.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <spdlog/common.h>
#include <string>
#include <utility>
#include <vector>

namespace spdlog {
class logger;
}

namespace turing::persistence {

/// How it works: the store workers report every operation that could not
/// reach the database (`unreachable`) and every one that did (`reachable`);
/// the first failure of an outage logs one warning naming the masked
/// connection and the error, later failures are only counted, and once
/// `summary_interval` has passed since the last line the next report logs
/// "database unreachable for 12 s, 48 writes waiting". The first success
/// logs "database reachable again after 25 s". Actors that see a failure
/// second hand (a heartbeat, a rescue pass, a claim answered with an error)
/// ask `secondhand_failure()` for the level to log it at: debug while an
/// outage explains it, warn otherwise. Thread-safe: the store workers run on
/// their own threads.
class outage_log {
public:
  using clock_function = std::function<std::chrono::steady_clock::time_point()>;

  struct options {
    /// The database as log lines name it (describe_connection: no secrets).
    std::string database;
    std::chrono::milliseconds summary_interval{10000};
    /// Steady clock by default; tests inject their own.
    clock_function clock;
    /// spdlog's default logger when empty.
    std::shared_ptr<spdlog::logger> logger;
  };

  explicit outage_log(options o);

  /// `operation` failed because the database could not be reached.
  void unreachable(const std::string& operation, const std::string& error);

  /// An operation reached the database: ends the outage, if one is on.
  void reachable();

  /// Result writes that failed and will be retried, by (message id, epoch):
  /// the "writes waiting" of the summary. Written ones leave the count.
  void writes_failed(const std::vector<std::pair<int64_t, int64_t>>& fences);
  void writes_done(const std::vector<std::pair<int64_t, int64_t>>& fences);

  /// A failure seen second hand: counted, and the level to log it at (debug
  /// while an outage is on, warn otherwise). May log a due summary.
  spdlog::level::level_enum secondhand_failure();

  bool down() const;
  /// Outages seen so far (ended or not), for tests and the final log line.
  int64_t outages() const;

private:
  void summarise_if_due(std::chrono::steady_clock::time_point now);
  std::chrono::steady_clock::time_point now() const;

  options options_;
  mutable std::mutex mutex_;
  bool down_ = false;
  int64_t outages_ = 0;
  std::chrono::steady_clock::time_point since_;
  std::chrono::steady_clock::time_point last_line_;
  int64_t failures_ = 0; ///< failed operations in this outage, first hand and second
  std::set<std::pair<int64_t, int64_t>> waiting_;
};

/// The level for a failure seen second hand: warn when there is no outage
/// log (the simulation) or no outage, debug while one is on.
inline spdlog::level::level_enum secondhand_level(const std::shared_ptr<outage_log>& log) {
  return log ? log->secondhand_failure() : spdlog::level::warn;
}

} // namespace turing::persistence
