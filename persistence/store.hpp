// The store: durable mailboxes of every stage, their leases and fencing, and
// the append-only audit of every attempt. Implemented by pg_store and memory_store.
#pragma once

#include "persistence/store_error.hpp"
#include "persistence/types.hpp"

#include <string>
#include <vector>

namespace turing::persistence {

/// How it works. A message is a row: ready → running (claimed, leased to one
/// owner, its epoch bumped) → done | dead, or back to ready (retry with backoff,
/// release at shutdown, rescue after a lease expired). Every write about a
/// running message presents its lease (id, epoch); a write whose epoch is no
/// longer current changes nothing and is recorded as a `late_result` attempt.
/// A completion is one transaction: the message done, its deliveries inserted
/// (or folded into a join row that fires once all its inputs arrived), the
/// attempt appended, the item's open-branch count and its run's pending count
/// adjusted, the downstream stages notified.
///
/// Items: an item is finished when it has no open branch left (every message
/// it spawned reached a sink, a join that will not fire, or the dead letter);
/// its run's pending count then drops by one, so completion is O(1).
///
/// Methods throw store_error when the operation could not happen at all; each
/// batch method applies all of its batch or none of it. One store object is
/// used by one thread at a time (an actor owns it).
class store {
public:
  virtual ~store() = default;

  /// Creates a run (or appends to one) with one message per new item in `stage`.
  virtual enqueue_result enqueue(const enqueue_request& request) = 0;

  /// The same for a stream of items of any length, in one transaction: all of
  /// them or none. `request.items` is ignored; `items` may be rewound (a
  /// retried transaction reads it again). The default collects the stream.
  virtual enqueue_result enqueue_all(const enqueue_request& request, item_source& items) {
    auto all = request;
    all.items.clear();
    items.rewind();
    while (auto item = items.next()) {
      if (!item->payload_text.empty()) {
        item->payload = json::parse(item->payload_text);
        item->payload_text.clear();
        if (auto k = item->payload.find(request.key_field);
            !request.key_field.empty() && k != item->payload.end())
          item->key = k->is_string() ? k->get<std::string>() : k->dump();
      }
      all.items.push_back(std::move(*item));
    }
    return enqueue(all);
  }

  /// Claims up to `limit` ready messages of a stage whose backoff has passed,
  /// oldest first, skipping rows other claimers hold; bumps each one's epoch.
  virtual std::vector<claimed_message> claim(const claim_request& request) = 0;

  /// Extends the leases `node` still holds; returns those it lost (rescued,
  /// released or re-claimed elsewhere), so their owner can stop. A lease
  /// whose message was finished under it is neither extended nor lost.
  virtual std::vector<lease> heartbeat(const std::string& node, const std::vector<lease>& leases,
                                       millis lease_ttl) = 0;

  /// Fenced completions, one result per input in order.
  virtual std::vector<fence_result> complete(const std::vector<completion>& batch) = 0;

  /// complete(), whose handoffs are claimed at once as `claims` allows: the
  /// claimed messages come back as claim() returns them. A store that does
  /// not claim so hands every message off as ready.
  virtual completion_outcome complete_claiming(const std::vector<completion>& batch,
                                               const handoff_claims& claims) {
    (void)claims;
    return {complete(batch), {}};
  }

  /// Fenced failures: back to ready after `retry_after` while attempts remain
  /// and the failure is retryable, else dead with the error as its reason.
  virtual std::vector<fence_result> fail(const std::vector<failure>& batch) = 0;

  /// Graceful shutdown: back to ready at once, the attempt not consumed.
  virtual std::vector<fence_result> release(const std::string& node,
                                            const std::vector<lease>& leases) = 0;

  /// Returns every message whose lease expired to ready, recording the
  /// attempt as lost. Lost attempts are not failures: they count against
  /// `max_lost` (dead-lettered at that many, the reason saying so), not
  /// against the message's max_attempts.
  virtual std::vector<rescued_message> rescue_expired(const std::string& rescuer_node,
                                                      int max_lost = default_max_lost_attempts) = 0;

  /// Releases every lease a node holds now (its process is known to be gone):
  /// back to ready, the attempt recorded as lost, as rescue_expired.
  virtual std::vector<rescued_message> rescue_node(const std::string& dead_node,
                                                   const std::string& rescuer_node,
                                                   int max_lost = default_max_lost_attempts) = 0;

  /// History retention: removes up to `limit` done messages that finished
  /// more than `older_than` ago, of items that finished that long ago too,
  /// with their attempts. Live, dead and in-flight items' messages stay; the
  /// stage and run totals (tallies) still count what was removed.
  virtual prune_result prune_history(millis older_than, int limit) = 0;

  /// Records a node's report (upsert by name); seen_at is the store's now.
  virtual void report_node(const node_report& report) = 0;

  // -- reports ----------------------------------------------------------------

  /// Every node that ever reported, by name.
  virtual std::vector<node_report> nodes() = 0;

  virtual std::vector<stage_counts> counts() = 0;
  /// Only what is live (ready, delayed, running) and dead, per stage; its
  /// cost follows the live work, not the history of done messages. What the
  /// node monitor polls every second. The default reads counts().
  virtual std::vector<stage_counts> live_counts() { return counts(); }
  virtual std::optional<run_status> run(int64_t run_id) = 0;
  virtual std::vector<run_status> runs(bool unfinished_only) = 0;
  virtual std::vector<sink_count> sink_counts(std::optional<int64_t> run_id) = 0;
  virtual std::vector<item_record> items(int64_t run_id) = 0;
  virtual std::vector<attempt_record> attempts(std::optional<int64_t> run_id) = 0;
  /// Items of a run that ended in `sink`, counted by the string value of
  /// `field` in their result ("" where it is missing), most first.
  virtual std::vector<sink_count> result_counts(int64_t run_id, const std::string& sink,
                                                const std::string& field) = 0;
  /// Checks the invariants the runtime promises, over everything stored:
  /// each finished item in exactly one sink; each run's pending count equal
  /// to its unfinished items; no message completed twice; every completion
  /// applied under the message's current epoch (a late result recorded,
  /// never applied); attempts time-ordered with epochs that never go back;
  /// no unfinished item without live work. Returns one line per violation,
  /// naming the ids; empty when all hold.
  virtual std::vector<std::string> check_invariants() = 0;
  /// The earliest time a delayed (backing-off) message of the stage becomes ready.
  virtual std::optional<time_point> next_available_at(const std::string& stage) = 0;
  /// How long the stage's most recent completed attempts took (finished
  /// minus started), newest first: at most `limit`, none finished over
  /// `window` ago. What adaptive timeouts and `turing status` start from.
  virtual std::vector<millis> recent_latencies(const std::string& stage, int limit,
                                               millis window) = 0;

  // -- operators' actions on dead letters and runs (audited) -------------------

  /// Dead letters (dead, not purged) matching `filter`, by id, at most
  /// `limit`, each with its attempt history.
  virtual std::vector<dead_message> dead_messages(const dead_filter& filter, int limit) = 0;
  /// Puts matching dead letters back to ready as fresh messages: epoch + 1
  /// (a late result of the old owner is fenced), attempt and lost counts 0,
  /// their items (and runs) open again; tallies count them as retried (and
  /// their finished items as reopened). Dead letters of cancelled runs are
  /// left dead (counted in skipped_cancelled); a filter naming a cancelled
  /// run throws store_error(invalid_argument). Audited as "retry" by `by`.
  virtual operator_result retry_dead(const dead_filter& filter, const std::string& by) = 0;
  /// Marks matching dead letters purged (purged_at, purged_by): the rows
  /// stay, dead_messages() no longer lists them, counts() counts them as
  /// purged. Audited as "purge" by `by`.
  virtual operator_result purge_dead(const dead_filter& filter, const std::string& by) = 0;
  /// Stops a run: its ready and delayed messages are dead-lettered ("run
  /// cancelled by <by>"), its running ones too with their epoch bumped so
  /// the owner's result is fenced; the run is marked cancelled and finishes.
  /// Throws store_error(invalid_argument) for a run that does not exist or
  /// finished without being cancelled. Audited as "cancel" by `by`.
  virtual operator_result cancel_run(int64_t run_id, const std::string& by) = 0;
  /// The operators' audit log, newest first, at most `limit` rows.
  virtual std::vector<operator_action> operator_log(int limit) = 0;
};

} // namespace turing::persistence
