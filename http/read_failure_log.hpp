// One warning per run of failed database reads behind a route, not one per
// request: a dashboard polls every 2 s and a scraper every 15 s, all through
// a database outage. Repeats go to debug; the first success after says so.
#pragma once

#include <cstdint>
#include <mutex>
#include <spdlog/spdlog.h>
#include <string>

namespace turing::http {

class read_failure_log {
public:
  /// `what`: the read as log lines name it, e.g. "http: /api/status: node n1".
  explicit read_failure_log(std::string what) : what_(std::move(what)) {}

  void failed(const std::string& error) {
    std::lock_guard<std::mutex> lock{mutex_};
    if (failures_++ == 0)
      spdlog::warn("{}: could not read the database: {} (repeats at debug until a read succeeds)",
                   what_, error);
    else
      spdlog::debug("{}: could not read the database ({} failed reads in a row): {}", what_,
                    failures_, error);
  }

  void succeeded() {
    std::lock_guard<std::mutex> lock{mutex_};
    if (failures_ > 0)
      spdlog::info("{}: the database reads again after {} failed read(s)", what_, failures_);
    failures_ = 0;
  }

private:
  std::string what_;
  std::mutex mutex_;
  int64_t failures_ = 0; ///< failed reads since the last success
};

} // namespace turing::http
