// A database outage told in three kinds of line: the first failure, a
// summary every so often, and the end.
#include "persistence/outage_log.hpp"

#include <spdlog/spdlog.h>

namespace turing::persistence {

namespace {

int64_t whole_seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

} // namespace

outage_log::outage_log(options o) : options_(std::move(o)) {
  if (!options_.clock)
    options_.clock = [] { return std::chrono::steady_clock::now(); };
  if (!options_.logger)
    options_.logger = spdlog::default_logger();
}

std::chrono::steady_clock::time_point outage_log::now() const {
  return options_.clock();
}

void outage_log::unreachable(const std::string& operation, const std::string& error) {
  std::lock_guard<std::mutex> guard{mutex_};
  auto t = now();
  ++failures_;
  if (down_) {
    summarise_if_due(t);
    return;
  }
  down_ = true;
  ++outages_;
  since_ = t;
  last_line_ = t;
  options_.logger->warn("database unreachable ({}): {}: {}; retrying, a summary follows every {} "
                        "s while it lasts",
                        options_.database, operation, error,
                        whole_seconds(options_.summary_interval));
}

void outage_log::reachable() {
  std::lock_guard<std::mutex> guard{mutex_};
  if (!down_)
    return;
  auto t = now();
  options_.logger->info("database reachable again after {} s ({}): {} operation(s) failed "
                        "meanwhile, {} write(s) still waiting are retried now",
                        whole_seconds(t - since_), options_.database, failures_, waiting_.size());
  down_ = false;
  failures_ = 0;
  // Writes still waiting are retried by their pumps; counting them from
  // zero again keeps entries a restarted pump dropped from piling up.
  waiting_.clear();
}

void outage_log::writes_failed(const std::vector<std::pair<int64_t, int64_t>>& fences) {
  std::lock_guard<std::mutex> guard{mutex_};
  waiting_.insert(fences.begin(), fences.end());
}

void outage_log::writes_done(const std::vector<std::pair<int64_t, int64_t>>& fences) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (waiting_.empty())
    return;
  for (const auto& f : fences)
    waiting_.erase(f);
}

spdlog::level::level_enum outage_log::secondhand_failure() {
  std::lock_guard<std::mutex> guard{mutex_};
  if (!down_)
    return spdlog::level::warn;
  ++failures_;
  summarise_if_due(now());
  return spdlog::level::debug;
}

bool outage_log::down() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return down_;
}

int64_t outage_log::outages() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return outages_;
}

void outage_log::summarise_if_due(std::chrono::steady_clock::time_point t) {
  if (t - last_line_ < options_.summary_interval)
    return;
  last_line_ = t;
  options_.logger->warn("database unreachable for {} s ({}), {} write(s) waiting, {} operation(s) "
                        "failed so far",
                        whole_seconds(t - since_), options_.database, waiting_.size(), failures_);
}

} // namespace turing::persistence
