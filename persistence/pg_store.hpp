// The PostgreSQL store (libpqxx 6): one connection, claims with SKIP LOCKED,
// each batch one transaction, NOTIFY on turing_ready when work appears.
#pragma once

#include "persistence/store.hpp"

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace turing::persistence {

/// The channel pumps LISTEN on; the payload is the stage that got work.
inline constexpr const char* ready_channel = "turing_ready";

/// A notification on ready_channel: the stage that got work and, for the
/// handoffs of a completion batch, the node that wrote it. That node's writer
/// wakes its own pumps directly after the commit, so its listener passes the
/// notice over (one empty claim less per handoff); other nodes' take it.
struct ready_notice {
  std::string stage;
  std::string woken_node; ///< empty: every node's pumps of `stage` look
};

/// The payload: "stage", or "stage node" (stage names hold no space).
std::string ready_payload(const ready_notice& notice);
ready_notice parse_ready_payload(const std::string& payload);

/// How it works: every method runs one transaction on this object's own
/// connection, opened on first use and opened again after it broke. Rows are
/// locked in id order (messages, then items, then runs), FOR NO KEY UPDATE;
/// serialisation failures and deadlocks are retried, a
/// broken connection is retried once unless the commit's fate is unknown.
/// Not thread-safe: one actor owns one pg_store.
///
/// Time: every time the store writes or compares to is turing.now(), which is
/// now() unless the transaction set `turing.now`. Given a clock, each
/// transaction first sets it to the clock's time (whole microseconds, as
/// PostgreSQL keeps them), so a simulation in virtual time sees the same
/// leases, backoffs and timestamps as on memory_store; without one nothing
/// is set and no round trip is added.
class pg_store final : public store {
public:
  using clock_function = std::function<time_point()>;

  explicit pg_store(std::string connection_string, clock_function clock = {});
  ~pg_store() override;

  /// Prepares and plans the hot path's statements (claim, completion,
  /// handoff, item update) on every connection this store opens, before its
  /// first use: for a node's pumps, whose first messages would pay for it.
  void warm_up_connections();

  /// Opens the connection now; throws store_error(unavailable) naming the
  /// server if it cannot.
  void connect();

  enqueue_result enqueue(const enqueue_request& request) override;
  /// Streams the items with COPY into a staging table, then inserts them in
  /// one statement: memory stays flat whatever the file's size.
  enqueue_result enqueue_all(const enqueue_request& request, item_source& items) override;
  std::vector<claimed_message> claim(const claim_request& request) override;
  std::vector<lease> heartbeat(const std::string& node, const std::vector<lease>& leases,
                               millis lease_ttl) override;
  std::vector<fence_result> complete(const std::vector<completion>& batch) override;
  completion_outcome complete_claiming(const std::vector<completion>& batch,
                                       const handoff_claims& claims) override;
  std::vector<fence_result> fail(const std::vector<failure>& batch) override;
  std::vector<fence_result> release(const std::string& node,
                                    const std::vector<lease>& leases) override;
  std::vector<rescued_message> rescue_expired(const std::string& rescuer_node,
                                              int max_lost = default_max_lost_attempts) override;
  std::vector<rescued_message> rescue_node(const std::string& dead_node,
                                           const std::string& rescuer_node,
                                           int max_lost = default_max_lost_attempts) override;

  prune_result prune_history(millis older_than, int limit) override;
  void report_node(const node_report& report) override;
  std::vector<node_report> nodes() override;
  std::vector<stage_counts> counts() override;
  std::vector<stage_counts> live_counts() override;
  /// By stage: dead messages that were lost with their node too often (not
  /// failed), for `turing status`; read through the dead messages' index.
  std::map<std::string, int64_t> dead_from_lost_leases();
  /// By model: calls answered and tokens they counted over the last `window`,
  /// from the completed attempts of `stages` (the model stages; their index
  /// makes this cheap however long the history). For `turing status`.
  struct model_usage {
    int64_t calls = 0;
    int64_t tokens = 0;
  };
  std::map<std::string, model_usage> model_usage_since(const std::vector<std::string>& stages,
                                                       millis window);
  /// Attempts that finished over the last `window`, counted by stage, model,
  /// result and outcome: fail rates, model errors and the flow along each
  /// edge for `turing status`. Reads only the newest `max_rows` attempts (an
  /// id range of the primary key), so its cost does not grow with the history.
  struct attempt_tally {
    std::string stage;
    std::string model; ///< "" for stages without a model
    attempt_result result = attempt_result::completed;
    std::string outcome; ///< "" unless completed
    int64_t attempts = 0;
  };
  std::vector<attempt_tally> recent_attempt_tallies(millis window, int64_t max_rows);
  /// Messages each node holds leases on now, by owner node. For `turing status`.
  std::map<std::string, int64_t> running_by_node();
  std::optional<run_status> run(int64_t run_id) override;
  std::vector<run_status> runs(bool unfinished_only) override;
  std::vector<sink_count> sink_counts(std::optional<int64_t> run_id) override;
  std::vector<item_record> items(int64_t run_id) override;
  std::vector<attempt_record> attempts(std::optional<int64_t> run_id) override;
  std::vector<sink_count> result_counts(int64_t run_id, const std::string& sink,
                                        const std::string& field) override;
  std::vector<std::string> check_invariants() override;
  std::optional<time_point> next_available_at(const std::string& stage) override;
  std::vector<millis> recent_latencies(const std::string& stage, int limit, millis window) override;

  std::vector<dead_message> dead_messages(const dead_filter& filter, int limit) override;
  operator_result retry_dead(const dead_filter& filter, const std::string& by) override;
  operator_result purge_dead(const dead_filter& filter, const std::string& by) override;
  operator_result cancel_run(int64_t run_id, const std::string& by) override;
  std::vector<operator_action> operator_log(int limit) override;

  const std::string& connection_string() const { return connection_string_; }

  /// Transactions rolled back by PostgreSQL (deadlock, serialisation
  /// failure) and run again since this store was made: retried silently, so
  /// counted, so that a test can tell "no deadlock" from "deadlocks retried".
  int64_t rolled_back_and_retried() const { return rolled_back_; }

private:
  struct session; // the libpqxx connection, kept out of this header

  /// Runs body in a transaction, retried when PostgreSQL rolls it back.
  template <class F> auto in_transaction(const char* what, F&& body);
  /// Runs body, one statement, in autocommit: no BEGIN and COMMIT round
  /// trips. A transaction while a clock is set (its time is transaction-local).
  template <class F> auto in_one_statement(const char* what, F&& body);
  template <class Tx, class F> auto run_in(const char* what, F&& body);

  std::string connection_string_;
  clock_function clock_;
  std::unique_ptr<session> session_;
  int64_t rolled_back_ = 0;
};

/// Describes a connection string for log lines and errors: libpq parses it
/// (key=value or URL, quoted or %-escaped) and every secret field it knows
/// (password, sslpassword) reads "***". Key=value form.
std::string describe_connection(const std::string& connection_string);

} // namespace turing::persistence
