// Items per second over the last minute, per run, from successive snapshots.
#include "operations/run_rate_tracker.hpp"

namespace turing::operations {

void run_rate_tracker::observe(int64_t run, int64_t done, clock::time_point now) {
  std::lock_guard<std::mutex> lock{mutex_};
  auto& s = samples_[run];
  s.push_back({now, done});
  // Keep one sample older than the window, so the rate spans all of it.
  while (s.size() > 2 && now - s[1].at >= window_)
    s.pop_front();
}

std::optional<double> run_rate_tracker::rate(int64_t run) const {
  std::lock_guard<std::mutex> lock{mutex_};
  auto it = samples_.find(run);
  if (it == samples_.end() || it->second.size() < 2)
    return std::nullopt;
  const auto& first = it->second.front();
  const auto& last = it->second.back();
  auto secs = std::chrono::duration<double>(last.at - first.at).count();
  if (secs < 1.0)
    return std::nullopt;
  return static_cast<double>(last.done - first.done) / secs;
}

} // namespace turing::operations
