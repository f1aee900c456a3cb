// A model's request and token budgets over a sliding minute: when its next
// call may start, given the calls started, the tokens spent and the tokens
// reserved for the calls in flight. Pure; the model endpoint owns one.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace turing::actors {

class model_budget {
public:
  using clock_duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<std::chrono::steady_clock, clock_duration>;

  /// 0 means no budget of that kind. `window` is a minute and a second: the
  /// extra second keeps the budget clear of 60 s windows measured on other
  /// clocks (the attempts table's finished_at is written a little later).
  model_budget(int64_t requests_per_minute, int64_t tokens_per_minute,
               clock_duration window = std::chrono::seconds(61))
      : requests_per_minute_(requests_per_minute), tokens_per_minute_(tokens_per_minute),
        window_(window) {}

  bool limited() const { return requests_per_minute_ > 0 || tokens_per_minute_ > 0; }

  /// When the next call may start: `now`, a later time, or nullopt when
  /// only the end of a call in flight can free the budget (the first call
  /// under a token budget probes how many tokens a call costs).
  std::optional<time_point> next_start(time_point now) {
    prune(now);
    time_point at = now;
    if (requests_per_minute_ > 0 && static_cast<int64_t>(starts_.size()) >= requests_per_minute_)
      at = std::max(at,
                    starts_[starts_.size() - static_cast<size_t>(requests_per_minute_)] + window_);
    if (tokens_per_minute_ <= 0)
      return at;
    if (estimate_ < 0)
      return in_flight_ > 0 ? std::nullopt : std::optional<time_point>{at};
    auto need = spent_total_ + reserved_ + estimate_;
    if (need <= tokens_per_minute_)
      return at;
    // The moment enough spent tokens leave the window.
    for (const auto& [when, tokens] : spent_) {
      need -= tokens;
      if (need <= tokens_per_minute_)
        return std::max(at, when + window_);
    }
    // One call costs more than the whole budget: it runs alone, once the
    // calls in flight have ended and the window is empty.
    if (in_flight_ > 0)
      return std::nullopt;
    return spent_.empty() ? at : std::max(at, spent_.back().first + window_);
  }

  /// A call starts now; returns the tokens reserved for it.
  int64_t started(time_point now) {
    starts_.push_back(now);
    ++in_flight_;
    auto reservation = std::max<int64_t>(estimate_, 0);
    reserved_ += reservation;
    return reservation;
  }

  /// The call that reserved `reservation` ended: `tokens` is what it spent
  /// (-1: the server did not say, so the reservation counts).
  void ended(time_point now, int64_t reservation, int64_t tokens) {
    --in_flight_;
    reserved_ -= reservation;
    auto spent = tokens >= 0 ? tokens : reservation;
    if (spent > 0) {
      spent_.emplace_back(now, spent);
      spent_total_ += spent;
    }
    if (tokens >= 0) // up at once, down slowly: better to wait than to overrun
      estimate_ = estimate_ < tokens ? tokens : (estimate_ * 9 + tokens) / 10;
  }

  int64_t requests_in_window(time_point now) {
    prune(now);
    return static_cast<int64_t>(starts_.size());
  }
  int64_t tokens_in_window(time_point now) {
    prune(now);
    return spent_total_;
  }
  int64_t requests_per_minute() const { return requests_per_minute_; }
  int64_t tokens_per_minute() const { return tokens_per_minute_; }

private:
  void prune(time_point now) {
    while (!starts_.empty() && starts_.front() + window_ <= now)
      starts_.pop_front();
    while (!spent_.empty() && spent_.front().first + window_ <= now) {
      spent_total_ -= spent_.front().second;
      spent_.pop_front();
    }
  }

  int64_t requests_per_minute_;
  int64_t tokens_per_minute_;
  clock_duration window_;
  std::deque<time_point> starts_;
  std::deque<std::pair<time_point, int64_t>> spent_;
  int64_t spent_total_ = 0;
  int64_t reserved_ = 0;
  int64_t in_flight_ = 0;
  /// Tokens one call is expected to cost; -1 until one call has told.
  int64_t estimate_ = -1;
};

/// One budget shared by the endpoints of several models (those of one API
/// key): the same rules behind a lock, since each endpoint asks on its own.
class shared_model_budget {
public:
  shared_model_budget(std::string name, int64_t requests_per_minute, int64_t tokens_per_minute,
                      model_budget::clock_duration window = std::chrono::seconds(61))
      : name_(std::move(name)), budget_(requests_per_minute, tokens_per_minute, window) {}

  const std::string& name() const { return name_; }

  /// Runs `f(model_budget&)` under the lock.
  template <class F> auto with(F f) {
    std::lock_guard<std::mutex> guard{mutex_};
    return f(budget_);
  }

private:
  std::string name_;
  std::mutex mutex_;
  model_budget budget_;
};

} // namespace turing::actors
