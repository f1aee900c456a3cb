// The group writer: every pump's results queued with their senders, merged
// into one store request per transaction, the replies sliced back.
#include "actors/group_writer.hpp"

#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <deque>
#include <set>

namespace turing::actors {

namespace {

using namespace persistence;

/// One kind of result (completions or failures): the batches waiting, each
/// with the promise of the pump that sent it.
template <class Result> struct merge_queue {
  struct sender {
    caf::response_promise promise;
    std::vector<Result> batch;
  };
  std::deque<sender> waiting;
  size_t waiting_rows = 0;
  int in_flight = 0;
};

class group_writer final : public caf::event_based_actor {
public:
  group_writer(caf::actor_config& cfg, group_writer_options options,
               std::shared_ptr<actor_directory> dir)
      : caf::event_based_actor(cfg), o_(options), dir_(std::move(dir)) {}

  const char* name() const override { return "group_writer"; }

protected:
  caf::behavior make_behavior() override {
    return {
        [=](std::vector<completion>& batch) { return queue(completions_, std::move(batch)); },
        [=](std::vector<failure>& batch) { return queue(failures_, std::move(batch)); },
    };
  }

  void on_exit() override {
    // A promise holds its sender; nobody answers them once we are gone (the
    // pumps' requests fail and they send again to our successor).
    completions_.waiting.clear();
    failures_.waiting.clear();
    dir_.reset();
  }

private:
  template <class Result>
  caf::response_promise queue(merge_queue<Result>& q, std::vector<Result>&& batch) {
    auto promise = make_response_promise();
    if (batch.empty()) {
      promise.deliver(std::vector<fence_result>{});
      return promise;
    }
    q.waiting_rows += batch.size();
    q.waiting.push_back({promise, std::move(batch)});
    write(q);
    return promise;
  }

  template <class Result> void write(merge_queue<Result>& q) {
    if (q.waiting.empty() || q.in_flight >= o_.max_in_flight ||
        (q.in_flight > 0 && q.waiting_rows < o_.deep_queue))
      return;
    auto store = dir_->get("store");
    if (!store) {
      for (auto& s : q.waiting)
        s.promise.deliver(caf::make_error(caf::sec::invalid_argument, "no store"));
      q.waiting.clear();
      q.waiting_rows = 0;
      return;
    }
    // Whole batches only, so each sender's slice is contiguous; the first
    // goes whatever its size.
    std::vector<Result> merged;
    std::vector<std::pair<caf::response_promise, size_t>> slices;
    while (!q.waiting.empty() &&
           (merged.empty() || merged.size() + q.waiting.front().batch.size() <= o_.max_rows)) {
      auto& s = q.waiting.front();
      slices.emplace_back(s.promise, s.batch.size());
      q.waiting_rows -= s.batch.size();
      std::move(s.batch.begin(), s.batch.end(), std::back_inserter(merged));
      q.waiting.pop_front();
    }
    ++q.in_flight;
    auto handoffs = o_.wake_local_pumps ? handoffs_of(merged) : handoffs_t{};
    request(store, o_.store_timeout, std::move(merged))
        .then(
            [=, &q](std::vector<fence_result>& results) mutable {
              --q.in_flight;
              wake_local_pumps(handoffs, results);
              answer(slices, results);
              write(q);
            },
            [=, &q](caf::error& e) mutable {
              --q.in_flight;
              for (auto& [promise, rows] : slices)
                promise.deliver(e);
              write(q);
            });
  }

  /// Which entry of a merged batch hands off to which stage (an entry index
  /// per stage or join it delivers to).
  using handoffs_t = std::vector<std::pair<size_t, std::string>>;
  static handoffs_t handoffs_of(const std::vector<completion>& batch) {
    handoffs_t out;
    for (size_t i = 0; i < batch.size(); ++i)
      for (const auto& d : batch[i].deliveries)
        if (d.type != delivery::kind::sink)
          out.emplace_back(i, d.target);
    return out;
  }
  static handoffs_t handoffs_of(const std::vector<failure>&) { return {}; }

  /// Tells this node's pumps of the stages a committed batch handed off to,
  /// at once: the NOTIFY of the same commit reaches them later, through
  /// PostgreSQL and the ready listener (and still tells other nodes). A join
  /// that did not fire costs its pump one claim that finds nothing.
  void wake_local_pumps(const handoffs_t& handoffs, const std::vector<fence_result>& results) {
    std::set<std::string> stages;
    for (const auto& [entry, stage] : handoffs)
      if (entry < results.size() && results[entry] == fence_result::applied)
        stages.insert(stage);
    for (const auto& stage : stages)
      if (auto pump = dir_->get("pump/" + stage))
        send(pump, work_available{stage});
  }

  static void answer(std::vector<std::pair<caf::response_promise, size_t>>& slices,
                     const std::vector<fence_result>& results) {
    size_t offset = 0;
    for (auto& [promise, rows] : slices) {
      auto begin = std::min(offset, results.size());
      auto end = std::min(offset + rows, results.size());
      promise.deliver(
          std::vector<fence_result>(results.begin() + static_cast<std::ptrdiff_t>(begin),
                                    results.begin() + static_cast<std::ptrdiff_t>(end)));
      offset += rows;
    }
  }

  group_writer_options o_;
  std::shared_ptr<actor_directory> dir_;
  merge_queue<completion> completions_;
  merge_queue<failure> failures_;
};

} // namespace

caf::actor spawn_group_writer(caf::actor_system& sys, group_writer_options options,
                              std::shared_ptr<actor_directory> dir) {
  return sys.spawn<group_writer>(options, std::move(dir));
}

} // namespace turing::actors
