// The places a stage's pump offers for messages handed off to it already
// claimed: the pump offers free places, the group writer reserves some for a
// completion batch, and the batch's reply gives them back with the jobs.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace turing::actors {

/// One pump incarnation's offer. Only the pump adds to it; the writer only
/// takes (reserve), and a pump that wants its places back takes them all.
class handoff_room {
public:
  explicit handoff_room(uint64_t incarnation) : incarnation_(incarnation) {}

  uint64_t incarnation() const { return incarnation_; }

  void offer(int places) { offered_.fetch_add(places); }

  /// Takes up to `wanted` of the places on offer; returns how many it took.
  int reserve(int wanted) {
    int now = offered_.load();
    while (now > 0) {
      int take = std::min(now, wanted);
      if (offered_.compare_exchange_weak(now, now - take))
        return take;
    }
    return 0;
  }

  /// Withdraws the whole offer; returns the places that were still on it.
  int withdraw() { return offered_.exchange(0); }

private:
  const uint64_t incarnation_;
  std::atomic<int> offered_{0};
};

/// The node's rooms, one per stage, each replaced when its pump restarts
/// (a reservation made from the old one is then no place of the new pump).
class handoff_rooms {
public:
  /// A fresh room for a pump that starts.
  std::shared_ptr<handoff_room> open(const std::string& stage) {
    std::lock_guard<std::mutex> guard{mutex_};
    auto room = std::make_shared<handoff_room>(++incarnations_);
    rooms_[stage] = room;
    return room;
  }

  /// The current room of a stage; null if its pump never started here.
  std::shared_ptr<handoff_room> find(const std::string& stage) const {
    std::lock_guard<std::mutex> guard{mutex_};
    auto it = rooms_.find(stage);
    return it == rooms_.end() ? nullptr : it->second;
  }

private:
  mutable std::mutex mutex_;
  uint64_t incarnations_ = 0;
  std::map<std::string, std::shared_ptr<handoff_room>> rooms_;
};

} // namespace turing::actors
