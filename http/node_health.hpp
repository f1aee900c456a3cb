// What /healthz answers from: whether the node runs, and which of its stages
// failed (told by the node monitor). Shared by the monitor and the listener.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

namespace turing::http {

class node_health {
public:
  /// The supervision tree is running (false before it starts and once the
  /// node stops).
  void set_up(bool up) { up_.store(up, std::memory_order_relaxed); }
  bool up() const { return up_.load(std::memory_order_relaxed); }

  void stage_failed(const std::string& stage, const std::string& reason) {
    std::lock_guard<std::mutex> lock(mutex_);
    failed_[stage] = reason;
  }
  /// Failed stages and why, by name.
  std::map<std::string, std::string> failed_stages() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return failed_;
  }

private:
  std::atomic<bool> up_{false};
  mutable std::mutex mutex_;
  std::map<std::string, std::string> failed_;
};

} // namespace turing::http
