// Value types exchanged with a store: what is enqueued, claimed, completed,
// failed, and the counts a status report reads.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace turing::persistence {

using json = nlohmann::json;
using wall_clock = std::chrono::system_clock;
using time_point = wall_clock::time_point;
using millis = std::chrono::milliseconds;

/// The reserved sink of items one of whose messages was dead-lettered.
inline constexpr const char* dead_sink = "dead";

enum class message_state { ready, running, done, dead };

/// How one attempt ended; the audit log's `result` column.
enum class attempt_result { completed, failed, timeout, lost, crashed, late_result, released };

const char* to_string(message_state);
const char* to_string(attempt_result);
std::optional<attempt_result> parse_attempt_result(const std::string&);

// -- enqueue ------------------------------------------------------------------

struct new_item {
  /// Optional external id; an item whose key exists already is skipped, so
  /// enqueueing the same file twice does not duplicate work.
  std::optional<std::string> key;
  json payload;
  /// Instead of `payload` and `key`: the item as JSON object text, already
  /// checked storable (a line of `turing enqueue`). The store parses it and
  /// takes the key from the request's key_field, so a large item is never
  /// parsed and written out again on its way in.
  std::string payload_text{};
};

struct enqueue_request {
  std::string stage;
  std::string label;
  int max_attempts = 3;
  std::vector<new_item> items;
  /// Append to this run instead of creating one (chunked enqueue of a big file).
  std::optional<int64_t> run_id;
  /// The field an item given as text takes its key from (a string or an
  /// integer); empty: such items have no key.
  std::string key_field;
};

/// Items read one at a time (a file streamed line by line), from the start
/// again after rewind().
class item_source {
public:
  virtual ~item_source() = default;
  virtual void rewind() = 0;
  virtual std::optional<new_item> next() = 0;
};

struct enqueue_result {
  int64_t run_id = 0;
  int64_t enqueued = 0;
  int64_t duplicates = 0;
};

// -- claim and the lease ------------------------------------------------------

struct claim_request {
  std::string stage;
  std::string node;
  int limit = 1;
  millis lease_ttl{30000};
  /// Payload bytes one claim takes at most, in claim order: a message is
  /// taken while the bytes before it are under the budget, so the first
  /// always is. Bounds the memory a claim of large payloads holds at once.
  /// 0: no budget. Bytes as stored (pg_store: compressed; memory_store: JSON text).
  int64_t max_bytes = 0;
};

/// The fencing token of one execution: every write about it presents both.
struct lease {
  int64_t message_id = 0;
  int64_t epoch = 0;
  friend bool operator==(const lease& a, const lease& b) {
    return a.message_id == b.message_id && a.epoch == b.epoch;
  }
};

struct claimed_message {
  int64_t id = 0;
  int64_t item_id = 0;
  int64_t run_id = 0;
  std::string stage;
  json payload;
  int attempt = 0; ///< 1 on the first execution
  int max_attempts = 1;
  /// Earlier attempts lost with their node (lease expired: SIGKILL, an
  /// outage, a partition): not the item's fault, so they count against
  /// max_lost_attempts, not max_attempts.
  int lost = 0;
  int64_t epoch = 0;
  time_point started_at;
  lease fencing() const { return {id, epoch}; }
  /// This attempt's number among those that count against max_attempts.
  int counted_attempt() const { return attempt - lost; }
};

/// How often a message may lose its lease with its node before it is
/// dead-lettered (runtime.max_lost_attempts).
inline constexpr int default_max_lost_attempts = 10;

/// The dead-letter reason of a message lost `lost` times (both stores).
std::string lost_too_often(int lost, int max_lost, const std::string& last_reason);

// -- results ------------------------------------------------------------------

/// Where a completed message sends its output; the runtime resolves routes
/// from the config, the store only carries them out.
struct delivery {
  enum class kind { stage, join, sink };
  kind type = kind::stage;
  std::string target;
  json payload;
  int max_attempts = 3;                 ///< for the new message (stage or join)
  std::vector<std::string> join_inputs; ///< join: every upstream stage it waits for
};

struct completion {
  lease fence;
  int attempt = 0; ///< the owner's attempt number, for a late result's audit row
  std::string node;
  time_point started_at; ///< as the owner saw it; used for a late result's audit row
  std::string outcome;
  json output;
  std::string model;
  /// A model's prompt + completion tokens, recorded in the attempt; -1 unknown.
  int64_t tokens = -1;
  std::vector<delivery> deliveries;
  /// Every delivery's payload is next_payload(the claimed payload, output):
  /// the store derives it from the rows it holds and the deliveries carry
  /// none, so a payload of megabytes is never sent back (the pump's way).
  /// false: each delivery carries its payload.
  bool derived_payloads = false;
};

struct failure {
  lease fence;
  int attempt = 0;
  std::string node;
  time_point started_at;
  attempt_result result = attempt_result::failed; ///< failed, timeout or crashed
  std::string error;
  std::string model;
  millis retry_after{0};
  bool retryable = true; ///< false: dead now, whatever attempts remain
};

enum class fence_result { applied, stale };

/// What a completion batch may claim of the messages it hands off, for the
/// node that writes it: up to `limits[stage]` of its new messages of each
/// stage are inserted already running under `node`'s lease (epoch 1,
/// attempt 1), so the next stage starts them without a claim (one message
/// row version, its index entries and a statement less per transition).
/// Messages of a join, and payloads too large to copy, are never claimed so.
struct handoff_claims {
  std::string node;
  millis lease_ttl{30000};
  std::map<std::string, int> limits;
};

/// A completion batch's fence results, one per entry in order, and the
/// messages it handed off already claimed (handoff_claims).
struct completion_outcome {
  std::vector<fence_result> results;
  std::vector<claimed_message> claimed;
};

/// A message returned to ready (or dead) by the rescuer.
struct rescued_message {
  int64_t message_id = 0;
  std::string stage;
  std::string previous_owner;
  bool dead = false;
};

/// What one pass of history retention removed: done messages of items
/// finished before the cutoff, and their attempts.
struct prune_result {
  int64_t messages = 0;
  int64_t attempts = 0;
};

// -- reports ------------------------------------------------------------------

struct stage_counts {
  std::string stage;
  int64_t ready = 0;    ///< claimable now
  int64_t delayed = 0;  ///< ready but waiting out a backoff
  int64_t retrying = 0; ///< ready or delayed with at least one attempt behind it
  int64_t running = 0;
  int64_t expired = 0; ///< running with a lease past its expiry
  int64_t done = 0;
  /// Dead letters still to act on: dead-lettered, less those retried or purged since.
  int64_t dead = 0;
  int64_t purged = 0; ///< dead letters an operator purged (kept, no longer listed)
  std::optional<time_point> oldest_started_at;   ///< of running messages
  std::optional<time_point> oldest_heartbeat_at; ///< of running messages
};

struct run_status {
  int64_t id = 0;
  std::string label;
  std::string entry_stage;
  int64_t items_total = 0;
  int64_t pending = 0;
  time_point created_at;
  std::optional<time_point> finished_at;
  int64_t dead = 0; ///< items finished in the dead sink
  /// `turing cancel`: when and by whom; a cancelled run's dead letters stay dead.
  std::optional<time_point> cancelled_at;
  std::string cancelled_by;
  bool finished() const { return pending == 0; }
  bool cancelled() const { return cancelled_at.has_value(); }
};

struct sink_count {
  std::string sink;
  int64_t items = 0;
};

/// A model this node cannot reach: its calls wait, unspent, since `since`.
struct model_outage {
  time_point since;
  std::string error;   ///< the last connection error, one line
  int64_t waiting = 0; ///< calls waiting for the model when last reported
};

/// A model call in flight, as its node last reported it: since when it runs
/// and how many tokens it has streamed so far.
struct call_in_flight {
  std::string stage;
  int64_t message_id = 0;
  time_point started_at;
  int64_t tokens = 0;
};

/// A node's report of itself: alive since, last seen, stopped, the stages
/// whose supervisors gave up (stage -> reason), the models it cannot reach
/// (model -> outage) and its model calls in flight (model -> calls).
struct node_report {
  std::string name;
  time_point started_at;
  time_point seen_at;
  std::optional<time_point> stopped_at;
  std::map<std::string, std::string> failed_stages;
  std::map<std::string, model_outage> unavailable_models;
  std::map<std::string, std::vector<call_in_flight>> running_calls;
  /// Distributed mode: where peers reach this node (host:port), and the
  /// peers it is connected to and has verified; empty without [cluster].
  std::string address;
  std::vector<std::string> peers;
};

/// One row of the append-only audit log.
struct attempt_record {
  int64_t id = 0;
  int64_t message_id = 0;
  int64_t item_id = 0;
  int64_t run_id = 0;
  std::string stage;
  int attempt = 0;
  int64_t epoch = 0;
  std::string node;
  time_point started_at;
  time_point finished_at;
  attempt_result result = attempt_result::completed;
  std::string outcome;
  std::string model;
  json output;
  std::string error;
  int64_t tokens = -1; ///< a model's prompt + completion tokens; -1 unknown
};

/// An item's end state (or lack of one yet).
struct item_record {
  int64_t id = 0;
  int64_t run_id = 0;
  std::optional<std::string> key;
  json payload;
  int open_branches = 0;
  std::optional<std::string> sink;
  json result;
  bool finished = false;
};

// -- operator actions ---------------------------------------------------------

/// The dead letters an operator means: every field given must match; none
/// given matches every dead letter (the CLI asks for --all before that).
struct dead_filter {
  std::optional<std::string> stage;
  std::optional<int64_t> run_id;
  std::optional<std::string> reason; ///< a case-insensitive substring of the last error
  bool empty() const { return !stage && !run_id && !reason; }
  /// As the audit log records it: {"stage", "run", "reason"}, given fields only.
  json to_json() const;
};

/// A dead letter (dead, not purged) and how it got there.
struct dead_message {
  int64_t id = 0;
  int64_t run_id = 0;
  int64_t item_id = 0;
  std::string stage;
  std::optional<std::string> item_key;
  int64_t epoch = 0;
  time_point died_at;
  std::string reason;                   ///< its last error
  std::vector<attempt_record> attempts; ///< oldest first
};

/// What an operator's retry, purge or cancel acted on.
struct operator_result {
  std::vector<int64_t> message_ids; ///< ascending
  /// retry: dead letters the filter matched in cancelled runs, left dead.
  int64_t skipped_cancelled = 0;
  int64_t count() const { return static_cast<int64_t>(message_ids.size()); }
};

/// One row of the operators' audit log (turing.operator_actions).
struct operator_action {
  int64_t id = 0;
  time_point at;
  std::string by;
  std::string action; ///< retry, purge or cancel
  json filter;
  std::vector<int64_t> message_ids;
  int64_t count = 0;
};

/// How many messages one transaction of retry, purge or cancel takes at most
/// (pg_store loops over batches; each batch is one audited transaction).
inline constexpr int operator_batch = 1000;

} // namespace turing::persistence
