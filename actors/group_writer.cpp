// The group writer: every pump's results queued with their senders, merged
// into one store request per transaction, the replies sliced back.
#include "actors/group_writer.hpp"

#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <deque>
#include <map>
#include <spdlog/spdlog.h>

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
    // Places reserved by writes whose answer we will not see go back to
    // their pumps, or those would run short of places for good. What such
    // a write claimed, if it committed, returns when its leases expire.
    for (auto& [write, reserved] : reserved_by_write_)
      hand_over(reserved, {});
    reserved_by_write_.clear();
    dir_.reset();
  }

private:
  /// Each sender's promise and how many rows of the merged batch are its.
  using slices_t = std::vector<std::pair<caf::response_promise, size_t>>;

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
    slices_t slices;
    while (!q.waiting.empty() &&
           (merged.empty() || merged.size() + q.waiting.front().batch.size() <= o_.max_rows)) {
      auto& s = q.waiting.front();
      slices.emplace_back(s.promise, s.batch.size());
      q.waiting_rows -= s.batch.size();
      std::move(s.batch.begin(), s.batch.end(), std::back_inserter(merged));
      q.waiting.pop_front();
    }
    ++q.in_flight;
    submit(q, store, std::move(merged), std::move(slices));
  }

  template <class Result> void written(merge_queue<Result>& q) {
    --q.in_flight;
    write(q);
  }

  template <class Result> void failed(merge_queue<Result>& q, slices_t& slices, caf::error& e) {
    --q.in_flight;
    for (auto& [promise, rows] : slices)
      promise.deliver(e);
    write(q);
  }

  void submit(merge_queue<failure>& q, const caf::actor& store, std::vector<failure>&& merged,
              slices_t slices) {
    request(store, o_.store_timeout, std::move(merged))
        .then(
            [=, &q](std::vector<fence_result>& results) mutable {
              answer(slices, results);
              written(q);
            },
            [=, &q](caf::error& e) mutable { failed(q, slices, e); });
  }

  void submit(merge_queue<completion>& q, const caf::actor& store, std::vector<completion>&& merged,
              slices_t slices) {
    auto handoffs = o_.wake_local_pumps ? handoffs_of(merged) : handoffs_t{};
    auto reserved = reserve_rooms(merged);
    if (reserved.empty()) {
      request(store, o_.store_timeout, std::move(merged))
          .then(
              [=, &q](std::vector<fence_result>& results) mutable {
                wake_local_pumps(handoffs, results, {});
                answer(slices, results);
                written(q);
              },
              [=, &q](caf::error& e) mutable { failed(q, slices, e); });
      return;
    }
    claiming_completion request_{std::move(merged), {o_.node, o_.lease_ttl, {}}};
    for (const auto& r : reserved)
      request_.claims.limits[r.stage] = r.places;
    auto write = ++writes_;
    reserved_by_write_[write] = reserved;
    request(store, o_.store_timeout, std::move(request_))
        .then(
            [=, &q](completion_outcome& out) mutable {
              reserved_by_write_.erase(write);
              auto claimed = hand_over(reserved, std::move(out.claimed));
              wake_local_pumps(handoffs, out.results, claimed);
              answer(slices, out.results);
              written(q);
            },
            [=, &q](caf::error& e) mutable {
              reserved_by_write_.erase(write);
              hand_over(reserved, {});
              failed(q, slices, e);
            });
  }

  /// Places one completion batch reserved in a stage's room.
  struct reservation {
    std::string stage;
    uint64_t room = 0;
    int places = 0;
  };

  /// Reserves, in each room of a stage the batch hands messages to, up to
  /// as many places as it hands it messages (joins excepted: never claimed).
  std::vector<reservation> reserve_rooms(const std::vector<completion>& batch) {
    std::vector<reservation> out;
    if (!o_.rooms)
      return out;
    std::map<std::string, int> wanted;
    for (const auto& c : batch)
      for (const auto& d : c.deliveries)
        if (d.type == delivery::kind::stage)
          ++wanted[d.target];
    for (const auto& [stage, n] : wanted)
      if (auto room = o_.rooms->find(stage))
        if (int places = room->reserve(n); places > 0)
          out.push_back({stage, room->incarnation(), places});
    return out;
  }

  /// Gives each reserving pump its places back with the messages claimed
  /// for it; returns how many were claimed per stage. A pump that is gone
  /// has its messages released (back to ready, attempt not consumed).
  std::map<std::string, size_t> hand_over(const std::vector<reservation>& reserved,
                                          std::vector<claimed_message> claimed) {
    std::map<std::string, std::vector<claimed_message>> by_stage;
    for (auto& m : claimed)
      by_stage[m.stage].push_back(std::move(m));
    std::map<std::string, size_t> counts;
    for (const auto& r : reserved) {
      auto& jobs = by_stage[r.stage];
      counts[r.stage] = jobs.size();
      if (auto pump = dir_->get("pump/" + r.stage)) {
        send(pump, handoffs_claimed{r.stage, r.room, r.places, std::move(jobs)});
        continue;
      }
      if (jobs.empty())
        continue;
      std::vector<lease> leases;
      for (const auto& j : jobs)
        leases.push_back(j.fencing());
      spdlog::warn("writer: stage {} has no pump to run {} message(s) handed off to it; "
                   "releasing them",
                   r.stage, leases.size());
      if (auto store = dir_->get("store"))
        request(store, o_.store_timeout, release_request{o_.node, leases})
            .then([](const std::vector<fence_result>&) {},
                  [stage = r.stage](caf::error&) {
                    spdlog::warn("writer: releasing messages handed off to stage {} failed; "
                                 "they return when their leases expire",
                                 stage);
                  });
    }
    return counts;
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
  /// Stages all of whose messages were handed off claimed (`claimed`, per
  /// stage) have nothing to claim and are not woken.
  void wake_local_pumps(const handoffs_t& handoffs, const std::vector<fence_result>& results,
                        const std::map<std::string, size_t>& claimed) {
    std::map<std::string, size_t> stages;
    for (const auto& [entry, stage] : handoffs)
      if (entry < results.size() && results[entry] == fence_result::applied)
        ++stages[stage];
    for (const auto& [stage, handed] : stages) {
      auto it = claimed.find(stage);
      if (it != claimed.end() && it->second >= handed)
        continue;
      if (auto pump = dir_->get("pump/" + stage))
        send(pump, work_available{stage});
    }
  }

  static void answer(slices_t& slices, const std::vector<fence_result>& results) {
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
  uint64_t writes_ = 0; ///< claiming writes sent, numbering them
  /// The places each claiming write in flight reserved.
  std::map<uint64_t, std::vector<reservation>> reserved_by_write_;
};

} // namespace

caf::actor spawn_group_writer(caf::actor_system& sys, group_writer_options options,
                              std::shared_ptr<actor_directory> dir) {
  return sys.spawn<group_writer>(options, std::move(dir));
}

} // namespace turing::actors
