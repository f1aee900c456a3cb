// The deadlines of a pump's executions, in time order, so that one timer
// serves them all: a delayed message per execution would sit in CAF's clock
// for the whole stage timeout, long after its execution ended (at 12,000
// items/s and a 5-minute timeout, millions of them).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace turing::actors {

template <class TimePoint> class deadline_queue {
public:
  /// Identifies one armed deadline; given back to disarm it.
  using key = std::pair<TimePoint, std::uint64_t>;

  /// Arms a deadline at `at` for message `message_id`.
  key arm(std::int64_t message_id, TimePoint at) {
    key k{at, ++sequence_};
    due_.emplace(k, message_id);
    return k;
  }

  /// Forgets a deadline (its execution ended or was re-armed); a key
  /// already expired or disarmed is ignored.
  void disarm(const key& k) { due_.erase(k); }

  /// Removes and returns, in time order, the messages whose deadline is at
  /// or before `now`.
  std::vector<std::int64_t> expire(TimePoint now) {
    std::vector<std::int64_t> out;
    auto end = due_.upper_bound(key{now, UINT64_MAX});
    for (auto it = due_.begin(); it != end; ++it)
      out.push_back(it->second);
    due_.erase(due_.begin(), end);
    return out;
  }

  /// The earliest armed deadline, if any.
  std::optional<TimePoint> earliest() const {
    if (due_.empty())
      return std::nullopt;
    return due_.begin()->first.first;
  }

  std::size_t size() const { return due_.size(); }
  void clear() { due_.clear(); }

private:
  std::map<key, std::int64_t> due_;
  std::uint64_t sequence_ = 0;
};

} // namespace turing::actors
