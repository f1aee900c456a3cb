// The PostgreSQL store: each operation one transaction of set-based statements
// over a whole batch, fenced by (id, epoch), audited in turing.attempts.
#include "persistence/pg_store.hpp"

#include "persistence/detail/array_literal.hpp"
#include "persistence/detail/hot_statements.hpp"
#include "persistence/detail/item_effects.hpp"
#include "persistence/detail/refusals.hpp"
#include "persistence/json_parse.hpp"
#include "persistence/storable_text.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <libpq-fe.h>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <spdlog/spdlog.h>

namespace turing::persistence {

std::string ready_payload(const ready_notice& notice) {
  return notice.woken_node.empty() ? notice.stage : notice.stage + " " + notice.woken_node;
}

ready_notice parse_ready_payload(const std::string& payload) {
  auto space = payload.find(' ');
  if (space == std::string::npos)
    return {payload, {}};
  return {payload.substr(0, space), payload.substr(space + 1)};
}

// Statements that find messages by id test their state as `(m.state = 'x')
// IS TRUE`: the same test, but one the planner cannot match to the partial
// indexes on state. Matched, it ANDs the id lookup with a scan of the whole
// partial index, which on a busy queue holds hundreds of thousands of dead
// entries between vacuums (a 191-row completion took 42 ms instead of 2).

namespace {

time_point from_us(int64_t us) {
  return time_point{std::chrono::microseconds{us}};
}

int64_t to_us(time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

/// `t` as an ISO 8601 timestamptz in UTC, floored to whole microseconds
/// (PostgreSQL's resolution; it would round the rest on input instead).
std::string iso_timestamp(time_point t) {
  auto us = std::chrono::floor<std::chrono::microseconds>(t.time_since_epoch()).count();
  auto secs = us / 1000000;
  auto frac = us % 1000000;
  if (frac < 0) { // before the epoch: keep the fraction positive
    frac += 1000000;
    --secs;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lld+00:00", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

/// Parses a JSON field in place: a payload of megabytes is not first copied
/// into a std::string, nor its strings copied out of the parser's buffer.
json parse_field(const pqxx::field& f) {
  const char* text = f.c_str();
  return parse_json_moving(text, text + f.size());
}

std::optional<time_point> opt_time(const pqxx::field& f) {
  if (f.is_null())
    return std::nullopt;
  return from_us(f.as<int64_t>());
}

std::string opt_text(const pqxx::field& f) {
  return f.is_null() ? std::string{} : f.as<std::string>();
}

json opt_json(const pqxx::field& f) {
  return f.is_null() ? json{} : parse_field(f);
}

/// A PostgreSQL array literal of text, each element quoted and escaped.
std::string text_array(const std::vector<std::string>& values) {
  detail::array_literal out;
  for (const auto& v : values)
    out.add_text(v);
  return out.str();
}

/// A bigint[] literal of the ids (duplicates kept): `id = ANY($n::bigint[])`
/// finds a batch's rows through the primary key whatever the planner guesses.
template <class Batch, class Id> std::string id_array(const Batch& batch, Id id) {
  detail::array_literal out;
  for (const auto& entry : batch)
    out.add(int64_t{id(entry)});
  return out.str();
}

/// Each message of a batch once, in id order. A batch retried after a failed
/// write can hold one message twice, its old epoch and its new one: the
/// newer is kept (its claim made every earlier epoch stale), the older is
/// answered stale.
template <class Result>
std::map<int64_t, const Result*> newest_by_message(const std::vector<Result>& batch) {
  std::map<int64_t, const Result*> out;
  for (const auto& r : batch) {
    auto [kept, first] = out.emplace(r.fence.message_id, &r);
    if (!first && kept->second->fence.epoch < r.fence.epoch)
      kept->second = &r;
  }
  return out;
}

/// complete_sql's six arrays for the given messages of a batch (all of them
/// when `only` is empty).
std::vector<std::string> completion_columns(const std::map<int64_t, const completion*>& newest,
                                            const std::set<int64_t>& only = {}) {
  detail::array_literal ids, epochs, outcomes, outputs, models, tokens;
  for (const auto& [id, c] : newest) {
    if (!only.empty() && !only.count(id))
      continue;
    ids.add(id);
    epochs.add(c->fence.epoch);
    outcomes.add_text(c->outcome);
    outputs.add_json(c->output);
    models.add_text_unless_empty(c->model);
    if (c->tokens >= 0)
      tokens.add(c->tokens);
    else
      tokens.add_null();
  }
  return {ids.str(), epochs.str(), outcomes.str(), outputs.str(), models.str(), tokens.str()};
}

json fences_json(const std::vector<lease>& leases) {
  json out = json::array();
  for (const auto& l : leases)
    out.push_back({{"id", l.message_id}, {"epoch", l.epoch}});
  return out;
}

/// Hot-path statements are prepared once per connection, on first use, so
/// PostgreSQL plans each of them once rather than at every call.
class statement_cache {
public:
  template <class... Args>
  pqxx::result exec(pqxx::transaction_base& tx, const std::string& sql, Args&&... args) {
    auto it = names_.find(sql);
    if (it == names_.end()) {
      auto name = "turing_" + std::to_string(names_.size());
      tx.conn().prepare(name, sql);
      it = names_.emplace(sql, name).first;
    }
    return tx.exec_prepared(it->second, std::forward<Args>(args)...);
  }
  /// The connection was replaced: its prepared statements are gone.
  void clear() { names_.clear(); }

private:
  std::map<std::string, std::string> names_;
};

/// The next stages' messages of a completion batch, as the parallel arrays
/// the handoff statements unnest (HANDOFF_ROWS in hot_statements.hpp), in
/// the order they are inserted.
struct handoff_batch {
  detail::array_literal run_ids, item_ids, parent_ids, stages, payloads, derived_from, from_join,
      max_attempts, claim;
  bool empty = true;
  bool claiming = false; ///< some message is to be inserted claimed

  /// A message of a stage route: its payload given, or derived from its
  /// parent's (payload null); claimed, it is inserted running.
  void add_routed(int64_t run_id, int64_t item_id, int64_t parent_id, const std::string& stage,
                  int attempts, const json* payload, bool claimed) {
    add(run_id, item_id, parent_id, stage, attempts, false, claimed);
    if (payload) {
      payloads.add_json(*payload);
      derived_from.add_null();
    } else {
      payloads.add_null();
      derived_from.add(parent_id);
    }
  }
  /// A join's message: its payload is taken from the join's row.
  void add_joined(int64_t run_id, int64_t item_id, int64_t parent_id, const std::string& stage,
                  int attempts) {
    add(run_id, item_id, parent_id, stage, attempts, true, false);
    payloads.add_null();
    derived_from.add_null();
  }
  template <class... Args>
  pqxx::result exec(statement_cache& sc, pqxx::work& tx, const char* sql, Args&&... rest) const {
    return sc.exec(tx, sql, run_ids.str(), item_ids.str(), parent_ids.str(), stages.str(),
                   payloads.str(), derived_from.str(), from_join.str(), max_attempts.str(),
                   claim.str(), std::forward<Args>(rest)...);
  }

private:
  void add(int64_t run_id, int64_t item_id, int64_t parent_id, const std::string& stage,
           int attempts, bool joined, bool claimed) {
    run_ids.add(run_id);
    item_ids.add(item_id);
    parent_ids.add(parent_id);
    stages.add_text(stage);
    from_join.add(joined);
    max_attempts.add(int64_t{attempts});
    claim.add(claimed);
    empty = false;
    claiming = claiming || claimed;
  }
};

/// What the handoff's NOTIFY appends to each stage: " node" (ready_payload's
/// suffix) when every completion of the batch is one node's, whose writer
/// wakes that node's pumps itself; else nothing.
std::string one_writer_node(const std::vector<completion>& batch) {
  for (const auto& c : batch)
    if (c.node.empty() || c.node != batch.front().node)
      return {};
  return batch.empty() ? std::string() : ready_payload({"", batch.front().node});
}

bool is_retryable_sqlstate(const std::string& state) {
  return state == "40001" || state == "40P01"; // serialization_failure, deadlock_detected
}

void notify_stages(statement_cache& sc, pqxx::work& tx, const std::set<std::string>& stages) {
  if (stages.empty())
    return;
  sc.exec(tx, "SELECT pg_notify($1, s) FROM unnest($2::text[]) AS s", ready_channel,
          text_array({stages.begin(), stages.end()}));
}

/// Locks rows of a table by id, in id order (the order every transaction
/// uses), before a statement updates them. Kept apart from the update: an
/// update joining a locking CTE to a JSON recordset joins two relations
/// without an index, which the planner does as a nested loop, O(n²) per batch.
void lock_in_order(statement_cache& sc, pqxx::work& tx, const char* table, const std::string& ids) {
  static const std::map<std::string, std::string> sql{
      {"messages", "SELECT id FROM turing.messages WHERE id = ANY($1::bigint[]) ORDER BY id "
                   "FOR NO KEY UPDATE"}};
  sc.exec(tx, sql.at(table), ids);
}

/// Applies per-item branch changes, then the tallies of the runs whose
/// items finished. Each statement locks its rows in id order (the order every
/// transaction uses), so concurrent batches cannot deadlock.
void apply_item_effects(statement_cache& sc, pqxx::work& tx, const detail::item_effects& effects) {
  if (effects.empty())
    return;
  detail::array_literal ids, deltas, sinks, results, result_ofs, deads;
  for (const auto& [item_id, e] : effects) {
    // A message that handed off to exactly one next stage leaves its item as
    // it was: no row version written (most transitions of a chain).
    if (e.branch_delta == 0 && !e.sink && !e.dead)
      continue;
    ids.add(item_id);
    deltas.add(int64_t{e.branch_delta});
    sinks.add_text(e.sink);
    if (e.sink && !e.result_of)
      results.add_json(e.result);
    else
      results.add_null();
    if (e.sink && e.result_of)
      result_ofs.add(*e.result_of);
    else
      result_ofs.add_null();
    deads.add(e.dead);
  }
  auto id_list = ids.str();
  if (id_list == "{}")
    return;
  // No lock statement first: the UPDATE finds its rows through the primary
  // key's index in the arrays' ascending id order, the order every
  // transaction uses. Each item's fields come from its own unnested tuple.
  auto finished = sc.exec(tx, detail::items_update_sql, id_list, deltas.str(), sinks.str(),
                          results.str(), result_ofs.str(), deads.str());
  struct tally {
    int64_t finished = 0;
    int64_t last_us = 0;
  };
  std::map<std::pair<int64_t, std::string>, tally> per_run_sink;
  for (const auto& row : finished)
    if (row[1].as<bool>()) {
      auto& t = per_run_sink[{row[0].as<int64_t>(), opt_text(row[2])}];
      t.finished += 1;
      t.last_us = std::max(t.last_us, row[3].as<int64_t>());
    }
  if (per_run_sink.empty())
    return;
  // The run's progress is a tally row of this connection's own: finishing
  // items never wait on each other for their run's row.
  json run_rows = json::array();
  for (const auto& [key, t] : per_run_sink)
    run_rows.push_back(
        {{"run_id", key.first}, {"sink", key.second}, {"n", t.finished}, {"last_us", t.last_us}});
  sc.exec(tx, R"sql(
    INSERT INTO turing.run_tallies AS t (run_id, sink, backend, finished, last_finished_at)
    SELECT run_id, sink, pg_backend_pid(), n,
           timestamptz 'epoch' + last_us * interval '1 microsecond'
    FROM jsonb_to_recordset($1::jsonb) AS d(run_id bigint, sink text, n bigint, last_us bigint)
    ON CONFLICT (run_id, sink, backend) DO UPDATE SET
      finished = t.finished + EXCLUDED.finished,
      last_finished_at = greatest(t.last_finished_at, EXCLUDED.last_finished_at))sql",
          run_rows.dump());
}

/// Records late results: writes whose epoch was no longer current.
void record_late(statement_cache& sc, pqxx::work& tx, const json& rows) {
  if (rows.empty())
    return;
  sc.exec(tx, R"sql(
    WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb)
               AS x(id bigint, epoch bigint, attempt integer, node text, started_us bigint,
                    outcome text, model text, output jsonb, error text, tokens bigint))
    INSERT INTO turing.attempts (message_id, item_id, run_id, stage, attempt, epoch, node,
                                 started_at, finished_at, result, outcome, model, output, error,
                                 tokens)
    SELECT m.id, m.item_id, m.run_id, m.stage, x.attempt, x.epoch, x.node,
           timestamptz 'epoch' + x.started_us * interval '1 microsecond',
           greatest(turing.now(), timestamptz 'epoch' + x.started_us * interval '1 microsecond'),
           'late_result', x.outcome, x.model, x.output, x.error, x.tokens
    FROM x JOIN turing.messages m ON m.id = x.id)sql",
          rows.dump());
}

std::vector<rescued_message> read_rescued(const pqxx::result& r) {
  std::vector<rescued_message> out;
  for (const auto& row : r)
    out.push_back(
        {row[0].as<int64_t>(), row[1].as<std::string>(), opt_text(row[2]), row[3].as<bool>()});
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.message_id < b.message_id; });
  return out;
}

/// Dead-lettered messages end a branch of their item, and mark it dead.
void apply_dead(statement_cache& sc, pqxx::work& tx, const pqxx::result& r, int item_col,
                int dead_col) {
  detail::item_effects effects;
  for (const auto& row : r)
    if (row[dead_col].as<bool>())
      effects.dead_branch(row[item_col].as<int64_t>());
  apply_item_effects(sc, tx, effects);
}

const char* rescue_sql(bool by_node) {
  // Shared by rescue_expired and rescue_node: which rows differ, the rest
  // not. A lost attempt is not a failure: it counts against max_lost (the
  // expired CTE's column), not max_attempts; the text matches lost_too_often().
  static const std::string tail = R"sql(
    rescued AS (
      UPDATE turing.messages m SET
        lost = m.lost + 1,
        state = CASE WHEN m.lost + 1 < e.max_lost THEN 'ready' ELSE 'dead' END,
        owner_node = CASE WHEN m.lost + 1 < e.max_lost THEN NULL ELSE m.owner_node END,
        lease_expires_at = NULL,
        available_at = turing.now(),
        finished_at = CASE WHEN m.lost + 1 < e.max_lost THEN NULL
                           ELSE greatest(turing.now(), m.started_at) END,
        last_error = CASE WHEN m.lost + 1 < e.max_lost THEN e.reason
                          ELSE 'lost ' || (m.lost + 1) || ' times with its node (max_lost_attempts '
                               || e.max_lost || '), not failed; the last: ' || e.reason END
      FROM expired e WHERE m.id = e.id
      RETURNING m.id, m.stage, e.owner_node, m.state = 'dead' AS dead, m.item_id, m.run_id,
                m.attempt, e.epoch, e.started_at, m.last_error AS reason),
    audit AS (
      INSERT INTO turing.attempts (message_id, item_id, run_id, stage, attempt, epoch, node,
                                   started_at, finished_at, result, error)
      SELECT id, item_id, run_id, stage, attempt, epoch, owner_node, started_at,
             greatest(turing.now(), started_at), 'lost', reason FROM rescued),
    tally AS (
      INSERT INTO turing.stage_tallies AS t (stage, backend, dead)
      SELECT stage, pg_backend_pid(), count(*) FROM rescued WHERE dead GROUP BY stage
      ON CONFLICT (stage, backend) DO UPDATE SET dead = t.dead + EXCLUDED.dead)
    SELECT id, stage, owner_node, dead, item_id FROM rescued)sql";
  static const std::string expired = R"sql(
    WITH expired AS (
      SELECT id, owner_node, epoch, started_at, $2::integer AS max_lost,
             'lease expired: owner ' || owner_node || ' stopped heartbeating; rescued by '
               || $1::text AS reason
      FROM turing.messages
      WHERE state = 'running' AND lease_expires_at < turing.now()
      ORDER BY id FOR NO KEY UPDATE SKIP LOCKED),)sql" +
                                     tail;
  static const std::string node = R"sql(
    WITH expired AS (
      SELECT id, owner_node, epoch, started_at, $3::integer AS max_lost,
             'owner ' || owner_node || ' is gone; rescued by ' || $1::text AS reason
      FROM turing.messages
      WHERE state = 'running' AND owner_node = $2
      ORDER BY id FOR NO KEY UPDATE SKIP LOCKED),)sql" +
                                  tail;
  return by_node ? node.c_str() : expired.c_str();
}

run_status read_run(const pqxx::row& row) {
  run_status s;
  s.id = row[0].as<int64_t>();
  s.label = row[1].as<std::string>();
  s.entry_stage = row[2].as<std::string>();
  s.items_total = row[3].as<int64_t>();
  s.pending = row[4].as<int64_t>();
  s.created_at = from_us(row[5].as<int64_t>());
  s.finished_at = opt_time(row[6]);
  s.dead = row[7].as<int64_t>();
  s.cancelled_at = opt_time(row[8]);
  s.cancelled_by = opt_text(row[9]);
  return s;
}

/// A run with its progress: pending is items_total less the finished
/// tallies (less those reopened by a retry); a run without pending items
/// finished when its last item did.
const char* run_select = R"sql(
  SELECT r.id, r.label, r.entry_stage, r.items_total, r.items_total - coalesce(t.finished, 0),
         )sql" TS_US("r.created_at") R"sql(,
         CASE WHEN r.items_total = coalesce(t.finished, 0) THEN )sql" TS_US(
    "greatest(r.created_at, t.last_finished_at)") R"sql( END,
         coalesce(t.dead, 0), )sql" TS_US("r.cancelled_at") R"sql(, r.cancelled_by
  FROM turing.runs r
  LEFT JOIN (SELECT run_id, sum(finished - reopened)::bigint AS finished,
                    sum(finished - reopened) FILTER (WHERE sink = 'dead')::bigint AS dead,
                    max(last_finished_at) AS last_finished_at
             FROM turing.run_tallies GROUP BY run_id) t ON t.run_id = r.id)sql";

/// The columns read_attempt() reads, in its order.
const char* attempt_select =
    "SELECT id, message_id, item_id, run_id, stage, attempt, epoch, node, " TS_US(
        "started_at") ", " TS_US("finished_at") ", result, outcome, model, output::text, error, "
                                                "coalesce(tokens, -1)";

attempt_record read_attempt(const pqxx::row& row) {
  attempt_record a;
  a.id = row[0].as<int64_t>();
  a.message_id = row[1].as<int64_t>();
  a.item_id = row[2].as<int64_t>();
  a.run_id = row[3].as<int64_t>();
  a.stage = row[4].as<std::string>();
  a.attempt = row[5].as<int>();
  a.epoch = row[6].as<int64_t>();
  a.node = row[7].as<std::string>();
  a.started_at = from_us(row[8].as<int64_t>());
  a.finished_at = from_us(row[9].as<int64_t>());
  a.result = parse_attempt_result(row[10].as<std::string>()).value_or(attempt_result::failed);
  a.outcome = opt_text(row[11]);
  a.model = opt_text(row[12]);
  a.output = opt_json(row[13]);
  a.error = opt_text(row[14]);
  a.tokens = row[15].as<int64_t>();
  return a;
}

} // namespace

// -- connection and transactions ----------------------------------------------

namespace {

/// Prepares and plans the hot path's statements on a new connection: each runs
/// once with arguments that match no row, in a transaction rolled back.
/// Without it, a connection's first completion paid about 13 ms to parse and
/// plan its two statements and fill the backend's catalog caches (PREPARE and
/// first EXECUTE in psql, against 0.4 and 0.2 ms for the next EXECUTE): with
/// four fresh connections at a node's start, the top of the low-load
/// handoff's p99. A schema not made yet is no error here: the statements are
/// then prepared at their first use, as before.
void warm_up_hot_path(pqxx::connection& c, statement_cache& sc) {
  try {
    pqxx::work tx{c, "warm_up"};
    sc.exec(tx, detail::claim_sql, "", "", 0, 0.0, int64_t{0}); // LIMIT 0: claims nothing
    sc.exec(tx, detail::complete_sql, "{}", "{}", "{}", "{}", "{}", "{}");
    handoff_batch none;
    none.exec(sc, tx, detail::handoff_sql, ready_channel, "");
    none.exec(sc, tx, detail::handoff_claiming_sql, ready_channel, "", "", 0.0);
    sc.exec(tx, detail::items_update_sql, "{}", "{}", "{}", "{}", "{}", "{}");
    lock_in_order(sc, tx, "messages", "{}");
    tx.abort();
  } catch (const std::exception& e) {
    spdlog::debug("store: warming up a new connection failed ({}); its statements are "
                  "prepared at first use",
                  e.what());
  }
}

} // namespace

struct pg_store::session {
  std::unique_ptr<pqxx::connection> connection;
  statement_cache statements;
  bool warm_up = false; ///< prepare and plan the hot path on every new connection

  /// The open connection, opened now if there is none or it broke.
  pqxx::connection& get(const std::string& connection_string);
  void reset() {
    connection.reset();
    statements.clear();
  }
};

pg_store::pg_store(std::string connection_string, clock_function clock)
    : connection_string_(std::move(connection_string)), clock_(std::move(clock)),
      session_(std::make_unique<session>()) {}

pg_store::~pg_store() = default;

void pg_store::warm_up_connections() {
  session_->warm_up = true;
}

std::string describe_connection(const std::string& cs) {
  // libpq parses both forms (key=value and postgresql:// URLs, quoting and
  // %-escapes included) and marks its secret fields with dispchar "*": ask it,
  // rather than guess where a password ends.
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(cs.c_str(), &error);
  if (options == nullptr) {
    if (error != nullptr)
      PQfreemem(error);
    return "<a connection string libpq cannot parse>";
  }
  std::string out;
  for (auto* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0')
      continue;
    bool secret = o->dispchar != nullptr && std::string(o->dispchar) == "*";
    std::string value = secret ? "***" : o->val;
    if (!secret && value.find_first_of(" '\\") != std::string::npos) {
      std::string quoted = "'";
      for (char c : value) {
        if (c == '\'' || c == '\\')
          quoted += '\\';
        quoted += c;
      }
      value = quoted + "'";
    }
    out += (out.empty() ? "" : " ") + std::string(o->keyword) + "=" + value;
  }
  PQconninfoFree(options);
  return out;
}

void pg_store::connect() {
  session_->get(connection_string_);
}

pqxx::connection& pg_store::session::get(const std::string& connection_string_) {
  if (connection && connection->is_open())
    return *connection;
  statements.clear();
  try {
    connection = std::make_unique<pqxx::connection>(connection_string_);
    // Every statement here is prepared once and run thousands of times with
    // batches of any size. With `auto`, PostgreSQL keeps planning the
    // completion, its row locks and the items update afresh at every call
    // (a generic plan for an array of unknown length looks dearer than a
    // custom plan for one id): 0.5, 0.17 and 0.34 ms of planning per call
    // against 0.34, 0.07 and 0.34 ms of execution at low load
    // (pg_stat_statements, track_planning). Their generic plans are the same
    // index scans.
    connection->set_variable("plan_cache_mode", "force_generic_plan");
    // A generic plan costs LIMIT $n at a tenth of the rows it may match, so
    // once a stage holds about 150,000 ready messages the claim costs more
    // than jit_above_cost and PostgreSQL compiled it at every call: about
    // 90 ms of JIT for a 20 ms claim of 512 rows, which made a 300,000-item
    // queue drain at a fifth of a 20,000-item one. No statement here
    // repays compilation.
    connection->set_variable("jit", "off");
    if (warm_up)
      warm_up_hot_path(*connection, statements);
  } catch (const std::exception& e) {
    connection.reset();
    std::string why = e.what();
    while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
      why.pop_back();
    for (auto& c : why)
      if (c == '\n')
        c = ' ';
    throw store_error(store_errc::unavailable, "cannot connect to database '" +
                                                   describe_connection(connection_string_) +
                                                   "': " + why);
  }
  return *connection;
}

template <class F> auto pg_store::in_transaction(const char* what, F&& body) {
  return run_in<pqxx::work>(what, std::forward<F>(body));
}

template <class F> auto pg_store::in_one_statement(const char* what, F&& body) {
  if (clock_)
    return run_in<pqxx::work>(what, std::forward<F>(body));
  return run_in<pqxx::nontransaction>(what, std::forward<F>(body));
}

template <class Tx, class F> auto pg_store::run_in(const char* what, F&& body) {
  constexpr int max_tries = 8;
  for (int attempt = 1;; ++attempt) {
    try {
      Tx tx{session_->get(connection_string_), what};
      // Transaction-local, so it ends with this transaction (commit or not)
      // and a connection never carries one operation's time into the next.
      if (clock_)
        session_->statements.exec(tx, "SELECT set_config('turing.now', $1, true)",
                                  iso_timestamp(clock_()));
      auto result = body(tx);
      tx.commit();
      return result;
    } catch (const pqxx::in_doubt_error& e) {
      session_->reset();
      throw store_error(store_errc::unavailable,
                        std::string(what) +
                            ": connection lost during commit; outcome unknown: " + e.what());
    } catch (const pqxx::transaction_rollback& e) {
      // Deadlock or serialisation failure: the transaction was rolled back
      // whole, so running it again is safe.
      if (attempt < max_tries) {
        ++rolled_back_;
        spdlog::debug("store: {}: {}; retrying", what, e.what());
        continue;
      }
      throw store_error(store_errc::unavailable, std::string(what) + ": rolled back " +
                                                     std::to_string(attempt) +
                                                     " times: " + e.what());
    } catch (const pqxx::broken_connection& e) {
      session_->reset();
      if (attempt >= 2)
        throw store_error(store_errc::unavailable,
                          std::string(what) + ": database connection lost: " + e.what());
      // Debug: if the reconnect fails too, the store actor's outage log tells it.
      spdlog::debug("store: {}: connection lost, reconnecting once", what);
    } catch (const pqxx::sql_error& e) {
      if (is_retryable_sqlstate(e.sqlstate()) && attempt < max_tries) {
        ++rolled_back_;
        spdlog::debug("store: {}: {} (sqlstate {}), retrying", what, e.what(), e.sqlstate());
        continue;
      }
      if (e.sqlstate().rfind("08", 0) == 0 || e.sqlstate() == "57P01") {
        session_->reset();
        throw store_error(store_errc::unavailable,
                          std::string(what) + ": database unavailable: " + e.what());
      }
      // Data exceptions, integrity violations, limits exceeded: the data is
      // the problem, so the same batch would fail again.
      auto sql_class = e.sqlstate().substr(0, 2);
      if (sql_class == "22" || sql_class == "23" || sql_class == "54")
        throw store_error(store_errc::refused, std::string(what) + ": refused (sqlstate " +
                                                   e.sqlstate() + "): " + e.what());
      if (e.sqlstate() == "42P01" || e.sqlstate() == "3F000")
        throw store_error(store_errc::schema,
                          std::string(what) + ": schema missing (run migrations): " + e.what());
      throw store_error(store_errc::internal,
                        std::string(what) + ": sqlstate " + e.sqlstate() + ": " + e.what());
    } catch (const store_error&) {
      throw;
    } catch (const nlohmann::json::exception& e) {
      // Only serialising a batch throws this (invalid UTF-8 in a string).
      throw store_error(store_errc::refused, std::string(what) + ": " + e.what());
    } catch (const std::exception& e) {
      throw store_error(store_errc::internal, std::string(what) + ": " + e.what());
    }
  }
}

// -- enqueue and claim ----------------------------------------------------------

namespace {

/// The run an enqueue appends to (locked), or a new one.
int64_t open_run(pqxx::work& tx, const enqueue_request& request) {
  if (request.run_id) {
    auto r = tx.exec_params("SELECT cancelled_by FROM turing.runs WHERE id = $1 FOR NO KEY UPDATE",
                            *request.run_id);
    if (r.empty())
      throw store_error(store_errc::invalid_argument,
                        "enqueue: run " + std::to_string(*request.run_id) + " does not exist");
    if (!r[0][0].is_null())
      throw store_error(store_errc::invalid_argument,
                        "enqueue: run " + std::to_string(*request.run_id) + " was cancelled by " +
                            r[0][0].as<std::string>());
    return *request.run_id;
  }
  return tx
      .exec_params1("INSERT INTO turing.runs (label, entry_stage, created_at, items_total) "
                    "VALUES ($1, $2, turing.now(), 0) RETURNING id",
                    request.label, request.stage)[0]
      .as<int64_t>();
}

void add_to_run(pqxx::work& tx, const enqueue_result& out) {
  tx.exec_params("UPDATE turing.runs SET items_total = items_total + $2 WHERE id = $1", out.run_id,
                 out.enqueued);
}

} // namespace

enqueue_result pg_store::enqueue(const enqueue_request& request) {
  if (request.stage.empty())
    throw store_error(store_errc::invalid_argument, "enqueue: no stage given");
  if (request.max_attempts < 1)
    throw store_error(store_errc::invalid_argument, "enqueue: max_attempts must be >= 1");
  detail::refuse_unstorable(request.items);
  json rows = json::array();
  int ord = 0;
  for (const auto& item : request.items)
    rows.push_back(
        {{"ord", ord++}, {"key", item.key ? json(*item.key) : json()}, {"payload", item.payload}});
  return in_transaction("enqueue", [&](pqxx::work& tx) {
    enqueue_result out;
    out.run_id = open_run(tx, request);
    out.enqueued = tx.exec_params1(R"sql(
      WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(ord integer, key text, payload jsonb)),
      ins AS (INSERT INTO turing.items (run_id, key, payload, open_branches, created_at)
              SELECT $2, x.key, x.payload, 1, turing.now() FROM x ORDER BY x.ord
              ON CONFLICT (key) DO NOTHING RETURNING id, payload),
      msg AS (INSERT INTO turing.messages (run_id, item_id, stage, payload, max_attempts,
                                           available_at, created_at)
              SELECT $2, ins.id, $3,
                     CASE WHEN )sql" STORED_INLINE("pg_column_size(ins.payload)") R"sql(
                          THEN ins.payload END, $4, turing.now(), turing.now()
              FROM ins ORDER BY ins.id RETURNING 1)
      SELECT count(*) FROM msg)sql",
                                   rows.dump(), out.run_id, request.stage, request.max_attempts)[0]
                       .as<int64_t>();
    out.duplicates = static_cast<int64_t>(request.items.size()) - out.enqueued;
    add_to_run(tx, out);
    if (out.enqueued > 0)
      notify_stages(session_->statements, tx, {request.stage});
    return out;
  });
}

/// An item whose text is at least this long is written to the staging table
/// by a statement of its own instead of the COPY stream.
constexpr std::size_t enqueue_row_by_itself = std::size_t{1} << 20;

enqueue_result pg_store::enqueue_all(const enqueue_request& request, item_source& items) {
  if (request.stage.empty())
    throw store_error(store_errc::invalid_argument, "enqueue: no stage given");
  if (request.max_attempts < 1)
    throw store_error(store_errc::invalid_argument, "enqueue: max_attempts must be >= 1");
  return in_transaction("enqueue", [&](pqxx::work& tx) {
    items.rewind(); // a retried transaction starts the stream over
    enqueue_result out;
    out.run_id = open_run(tx, request);
    tx.exec("CREATE TEMP TABLE turing_enqueue_staging (ord bigint, key text, payload jsonb) "
            "ON COMMIT DROP");
    int64_t given = 0;
    {
      std::optional<pqxx::stream_to> copy;
      std::vector<new_item> one(1);
      while (auto item = items.next()) {
        one[0] = std::move(*item);
        const char* key = one[0].key ? one[0].key->c_str() : nullptr;
        if (one[0].payload_text.size() >= enqueue_row_by_itself) {
          // libpqxx 6 escapes, joins and copies a COPY row before libpq
          // buffers it: four copies of a 50 MB item. Moved into a statement
          // of its own, the text is held once more, in libpq's buffer.
          if (copy) {
            copy->complete();
            copy.reset();
          }
          tx.exec_params("INSERT INTO turing_enqueue_staging (ord, key, payload) "
                         "VALUES ($1, $2, $3)",
                         given++, key, std::move(one[0].payload_text));
          continue;
        }
        if (!copy)
          copy.emplace(tx, "turing_enqueue_staging",
                       std::vector<std::string>{"ord", "key", "payload"});
        if (!one[0].payload_text.empty()) { // checked by its reader; PostgreSQL parses it
          *copy << std::make_tuple(given++, key, one[0].payload_text);
          continue;
        }
        detail::refuse_unstorable(one);
        *copy << std::make_tuple(given++, key, one[0].payload.dump());
      }
      if (copy)
        copy->complete();
    }
    // The two sorts keep items and messages in file order; in memory, not
    // spilled to disk, for files of a few hundred thousand lines.
    tx.exec("SET LOCAL work_mem = '64MB'");
    out.enqueued =
        tx.exec_params1(R"sql(
      WITH now AS (SELECT turing.now() AS at),
      ins AS (INSERT INTO turing.items (run_id, key, payload, open_branches, created_at)
              -- An item given as text takes its key from key_field ($4), as
              -- turing enqueue's check read it: a string, or an integer's digits.
              SELECT $1, coalesce(x.key, CASE WHEN jsonb_typeof(x.payload -> $4::text)
                                                   IN ('string', 'number')
                                              THEN x.payload ->> $4::text END),
                     x.payload, 1, now.at
              FROM turing_enqueue_staging x, now ORDER BY x.ord
              ON CONFLICT (key) DO NOTHING RETURNING id, payload, created_at),
      msg AS (INSERT INTO turing.messages (run_id, item_id, stage, payload, max_attempts,
                                           available_at, created_at)
              SELECT $1, ins.id, $2,
                     CASE WHEN )sql" STORED_INLINE("pg_column_size(ins.payload)") R"sql(
                          THEN ins.payload END, $3, ins.created_at, ins.created_at
              FROM ins ORDER BY ins.id RETURNING 1)
      SELECT count(*) FROM msg)sql",
                        out.run_id, request.stage, request.max_attempts, request.key_field)[0]
            .as<int64_t>();
    out.duplicates = given - out.enqueued;
    add_to_run(tx, out);
    if (out.enqueued > 0)
      notify_stages(session_->statements, tx, {request.stage});
    return out;
  });
}

namespace {

/// A row of claim_sql: id, item, run, payload, attempt, max_attempts, epoch,
/// started_at in µs, lost; handoff_claiming_sql's rows have the stage after
/// the run (`with_stage`).
claimed_message claimed_from_row(const pqxx::row& row, std::string stage, bool with_stage = false) {
  claimed_message m;
  m.id = row[0].as<int64_t>();
  m.item_id = row[1].as<int64_t>();
  m.run_id = row[2].as<int64_t>();
  m.stage = std::move(stage);
  auto at = [&](int i) { return row[with_stage ? i + 1 : i]; };
  m.payload = parse_field(at(3));
  m.attempt = at(4).as<int>();
  m.max_attempts = at(5).as<int>();
  m.epoch = at(6).as<int64_t>();
  m.started_at = from_us(at(7).as<int64_t>());
  m.lost = at(8).as<int>();
  return m;
}

} // namespace

std::vector<claimed_message> pg_store::claim(const claim_request& request) {
  if (request.limit < 1)
    throw store_error(store_errc::invalid_argument, "claim: limit must be >= 1");
  // Autocommit: the claim is one statement, so BEGIN and COMMIT would only
  // add two round trips to every claim (each handoff at low load has one).
  // A connection lost during it leaves its outcome unknown, as a COMMIT
  // lost did before: what it may have claimed returns when the lease expires.
  return in_one_statement("claim", [&](pqxx::transaction_base& tx) {
    auto r = session_->statements.exec(
        tx, detail::claim_sql, request.stage, request.node, request.limit,
        static_cast<double>(request.lease_ttl.count()), request.max_bytes);
    std::vector<claimed_message> out;
    out.reserve(r.size());
    for (const auto& row : r)
      out.push_back(claimed_from_row(row, request.stage));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return out;
  });
}

std::vector<lease> pg_store::heartbeat(const std::string& node, const std::vector<lease>& leases,
                                       millis lease_ttl) {
  if (leases.empty())
    return {};
  return in_transaction("heartbeat", [&](pqxx::work& tx) {
    // A row locked right now is being completed or rescued: skip it rather
    // than wait; it is reported lost only if its committed state says so.
    auto r =
        tx.exec_params(R"sql(
      WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, epoch bigint)),
      held AS (
        SELECT m.id FROM turing.messages m JOIN x ON m.id = x.id AND m.epoch = x.epoch
        WHERE (m.state = 'running') IS TRUE AND m.owner_node = $2
        ORDER BY m.id FOR NO KEY UPDATE OF m SKIP LOCKED),
      extended AS (
        UPDATE turing.messages m SET heartbeat_at = turing.now(),
          lease_expires_at = turing.now() + $3::double precision * interval '1 millisecond'
        FROM held WHERE m.id = held.id RETURNING m.id)
      SELECT x.id, x.epoch FROM x
      WHERE NOT EXISTS (SELECT 1 FROM turing.messages m WHERE m.id = x.id AND m.epoch = x.epoch
                        AND ((m.state IN ('done', 'dead')
                              OR (m.state = 'running' AND m.owner_node = $2)) IS TRUE)))sql",
                       fences_json(leases).dump(), node, static_cast<double>(lease_ttl.count()));
    std::vector<lease> lost;
    for (const auto& row : r)
      lost.push_back({row[0].as<int64_t>(), row[1].as<int64_t>()});
    return lost;
  });
}

// -- results --------------------------------------------------------------------

// An earlier try of a completion committed, claimed handoffs included, and
// its caller was told it failed: nobody runs those messages. The retry hands
// them over (if the same node still holds them untouched) rather than leave
// them to expire and come back as lost attempts.
namespace {

void claim_orphaned_handoffs(statement_cache& sc, pqxx::work& tx,
                             const std::vector<int64_t>& parents, const handoff_claims& claims,
                             std::map<std::string, int>& claimable,
                             std::vector<claimed_message>& claimed) {
  auto rows = sc.exec(
      tx,
      "SELECT id, item_id, run_id, stage, coalesce(payload, turing.message_payload(id))::text, "
      "attempt, max_attempts, epoch, " TS_US(
          "started_at") ", lost FROM turing.messages "
                        "WHERE parent_id = ANY($1::bigint[]) AND (state = 'running') IS TRUE AND "
                        "owner_node = $2 "
                        "AND epoch = 1 AND attempt = 1 ORDER BY id",
      id_array(parents, [](int64_t id) { return id; }), claims.node);
  for (const auto& row : rows) {
    auto budget = claimable.find(row[3].as<std::string>());
    if (budget == claimable.end() || budget->second <= 0)
      continue; // left to expire and be rescued
    --budget->second;
    claimed.push_back(claimed_from_row(row, budget->first, true));
  }
}

} // namespace

std::vector<fence_result> pg_store::complete(const std::vector<completion>& batch) {
  return complete_claiming(batch, {}).results;
}

completion_outcome pg_store::complete_claiming(const std::vector<completion>& batch,
                                               const handoff_claims& claims) {
  if (batch.empty())
    return {};
  detail::refuse_unstorable(batch);
  auto newest = newest_by_message(batch);
  return in_transaction("complete", [&](pqxx::work& tx) {
    // No lock statement first: the UPDATE reaches its rows through the
    // primary key in the arrays' ascending id order, so it locks them in id
    // order, the order every transaction uses. That saves a row lock (a WAL
    // record) per message and a round trip per batch.
    auto mark_done = [&](const std::vector<std::string>& columns) {
      return session_->statements.exec(tx, detail::complete_sql, columns[0], columns[1], columns[2],
                                       columns[3], columns[4], columns[5]);
    };
    auto done = mark_done(completion_columns(newest));
    // A row the UPDATE waited for, behind an earlier try of this write that
    // was committing, is skipped (no longer running), and this statement's
    // snapshot predates that commit, so its probe for "done under this
    // epoch" missed it too. A second statement, for the messages nothing was
    // applied to, sees the commit. Only a batch with a result not applied (a
    // late one, mostly) pays for it.
    std::set<int64_t> answered;
    for (const auto& row : done)
      answered.insert(row[0].as<int64_t>());
    std::set<int64_t> unanswered;
    for (const auto& c : batch)
      if (!answered.count(c.fence.message_id))
        unanswered.insert(c.fence.message_id);
    std::optional<pqxx::result> rechecked;
    if (!unanswered.empty())
      rechecked = mark_done(completion_columns(newest, unanswered));
    struct applied_message {
      int64_t item_id, run_id;
      std::string stage;
      bool now; ///< false: applied by an earlier try of the same write
    };
    // By (id, epoch), never by id alone: a batch retried after a failed write
    // can hold one message twice, its old epoch (fenced) and its new one.
    std::map<std::pair<int64_t, int64_t>, applied_message> applied;
    auto note_applied = [&](const pqxx::result& rows) {
      for (const auto& row : rows)
        applied[{row[0].as<int64_t>(), row[1].as<int64_t>()}] = {
            row[2].as<int64_t>(), row[3].as<int64_t>(), row[4].as<std::string>(),
            row[5].as<bool>()};
    };
    note_applied(done);
    if (rechecked)
      note_applied(*rechecked);

    completion_outcome outcome;
    auto& results = outcome.results;
    auto claimable = claims.limits;
    json late = json::array();
    handoff_batch next;
    struct join_arrival {
      int64_t item_id, run_id, parent_id;
      const delivery* d;
      std::string from_stage;
      bool derived; ///< its payload is derived from message parent_id
    };
    std::vector<join_arrival> arrivals;
    detail::item_effects effects;
    std::set<std::pair<int64_t, int64_t>> handed_off;
    std::vector<int64_t> applied_before; ///< by an earlier try of this write
    for (const auto& c : batch) {
      auto it = applied.find({c.fence.message_id, c.fence.epoch});
      if (it != applied.end() && !it->second.now)
        applied_before.push_back(c.fence.message_id);
      if (it != applied.end() && (!it->second.now || !handed_off.insert(it->first).second)) {
        // Applied already (an in-doubt commit that did commit, or the same
        // completion twice in one batch): the handoff happened exactly once.
        spdlog::debug("store: completion of message {} epoch {} was applied already; not again",
                      c.fence.message_id, c.fence.epoch);
        results.push_back(fence_result::applied);
        continue;
      }
      if (it == applied.end()) {
        results.push_back(fence_result::stale);
        late.push_back({{"id", c.fence.message_id},
                        {"epoch", c.fence.epoch},
                        {"attempt", c.attempt},
                        {"node", c.node},
                        {"started_us", to_us(c.started_at)},
                        {"outcome", c.outcome},
                        {"model", c.model.empty() ? json() : json(c.model)},
                        {"tokens", c.tokens >= 0 ? json(c.tokens) : json()},
                        {"output", c.output},
                        {"error", "late result: epoch " + std::to_string(c.fence.epoch) +
                                      " is no longer current; nothing applied"}});
        continue;
      }
      results.push_back(fence_result::applied);
      const auto& [item_id, run_id, from_stage, applied_now] = it->second;
      (void)applied_now;
      effects.branch_ended(item_id);
      for (const auto& d : c.deliveries) {
        switch (d.type) {
        case delivery::kind::stage: {
          auto budget = claimable.find(d.target);
          bool claimed = budget != claimable.end() && budget->second > 0;
          if (claimed)
            --budget->second;
          next.add_routed(run_id, item_id, c.fence.message_id, d.target, d.max_attempts,
                          c.derived_payloads ? nullptr : &d.payload, claimed);
          effects.branch_started(item_id);
          break;
        }
        case delivery::kind::join:
          arrivals.push_back(
              {item_id, run_id, c.fence.message_id, &d, from_stage, c.derived_payloads});
          break;
        case delivery::kind::sink:
          if (c.derived_payloads)
            effects.reached_sink_derived(item_id, d.target, c.fence.message_id);
          else
            effects.reached_sink(item_id, d.target, d.payload);
          break;
        }
      }
    }
    // Joins in (item, stage) order, the lock order; each fires once, when
    // its last expected input arrives.
    std::sort(arrivals.begin(), arrivals.end(), [](const auto& a, const auto& b) {
      return std::tie(a.item_id, a.d->target) < std::tie(b.item_id, b.d->target);
    });
    for (const auto& a : arrivals) {
      // Two statements: an outer UPDATE cannot see what a data-modifying CTE
      // of the same statement wrote. The upsert holds the row lock, so no
      // sibling arrival can slip in between.
      auto arrived = session_->statements.exec(
          tx,
          R"sql(
        WITH arrival AS (
          -- A derived input too large to copy is kept as the message it
          -- comes from (arrived_from) and built when the join is claimed.
          SELECT CASE WHEN $5::text <> '' THEN $5::text::jsonb
                      WHEN )sql" STORED_INLINE("pg_column_size(m.payload) + "
                                               "coalesce(pg_column_size(m.output), 0)") R"sql(
                        THEN turing.next_payload(m.payload, m.output) END AS payload
          FROM (SELECT 1) one
          LEFT JOIN turing.messages m ON m.id = $6::bigint AND $5::text = '')
        INSERT INTO turing.joins AS j (item_id, stage, expected, inputs, arrived_from)
        SELECT $1, $2, $3::text[],
               CASE WHEN a.payload IS NULL THEN '{}'::jsonb
                    ELSE jsonb_build_object($4::text, a.payload) END,
               CASE WHEN a.payload IS NULL THEN jsonb_build_object($4::text, $6::bigint)
                    ELSE '{}'::jsonb END
        FROM arrival a
        ON CONFLICT (item_id, stage) DO UPDATE SET inputs = j.inputs || EXCLUDED.inputs,
                                                   arrived_from = j.arrived_from
                                                                  || EXCLUDED.arrived_from
        RETURNING fired_at IS NULL
                  AND expected <@ ARRAY(SELECT jsonb_object_keys(inputs || arrived_from)))sql",
          a.item_id, a.d->target, text_array(a.d->join_inputs), a.from_stage,
          a.derived ? std::string() : a.d->payload.dump(), a.parent_id);
      if (!arrived[0][0].as<bool>())
        continue;
      auto fired = session_->statements.exec(
          tx,
          "UPDATE turing.joins SET fired_at = turing.now() WHERE item_id = $1 "
          "AND stage = $2 AND fired_at IS NULL RETURNING 1",
          a.item_id, a.d->target);
      if (fired.empty())
        continue;
      // Its payload, every input by stage, is taken from the join's row.
      next.add_joined(a.run_id, a.item_id, a.parent_id, a.d->target, a.d->max_attempts);
      effects.branch_started(a.item_id);
    }
    // The next stages are told in the same statement (one round trip less
    // per handoff): exactly the stages that got a message here.
    if (next.claiming) {
      auto rows = next.exec(session_->statements, tx, detail::handoff_claiming_sql, ready_channel,
                            one_writer_node(batch), claims.node,
                            static_cast<double>(claims.lease_ttl.count()));
      for (const auto& row : rows)
        if (!row[0].is_null())
          outcome.claimed.push_back(claimed_from_row(row, row[3].as<std::string>(), true));
    } else if (!next.empty) {
      next.exec(session_->statements, tx, detail::handoff_sql, ready_channel,
                one_writer_node(batch));
    }
    if (!claims.limits.empty() && !applied_before.empty())
      claim_orphaned_handoffs(session_->statements, tx, applied_before, claims, claimable,
                              outcome.claimed);
    apply_item_effects(session_->statements, tx, effects);
    record_late(session_->statements, tx, late);
    return outcome;
  });
}

std::vector<fence_result> pg_store::fail(const std::vector<failure>& batch) {
  if (batch.empty())
    return {};
  for (const auto& f : batch)
    if (f.result != attempt_result::failed && f.result != attempt_result::timeout &&
        f.result != attempt_result::crashed)
      throw store_error(store_errc::invalid_argument,
                        std::string("fail: result must be failed, timeout or crashed, not ") +
                            to_string(f.result));
  // Parallel arrays, one element per message in id order (see complete_sql).
  detail::array_literal fence_ids, epochs, nodes, results, errors, models, retry_ms, retryable;
  for (const auto& [id, f] : newest_by_message(batch)) {
    fence_ids.add(id);
    epochs.add(f->fence.epoch);
    nodes.add_text(f->node);
    results.add_text(std::string(to_string(f->result)));
    errors.add_text(storable_text(f->error));
    models.add_text_unless_empty(f->model);
    retry_ms.add(int64_t{f->retry_after.count()});
    retryable.add(f->retryable);
  }
  auto ids = fence_ids.str();
  return in_transaction("fail", [&](pqxx::work& tx) {
    lock_in_order(session_->statements, tx, "messages", ids);
    // attempt and max_attempts are not updated, so `retry` reads the same in
    // SET (old row) and RETURNING (new row).
#define RETRIES "b.retryable AND m.attempt - m.lost < m.max_attempts"
    auto r = session_->statements.exec(tx,
                                       R"sql(
      WITH failed AS (
        UPDATE turing.messages m SET
          state = CASE WHEN )sql" RETRIES R"sql( THEN 'ready' ELSE 'dead' END,
          owner_node = CASE WHEN )sql" RETRIES R"sql( THEN NULL ELSE m.owner_node END,
          lease_expires_at = NULL,
          available_at = CASE WHEN )sql" RETRIES R"sql(
                              THEN turing.now() + b.retry_ms * interval '1 millisecond'
                              ELSE m.available_at END,
          finished_at = CASE WHEN )sql" RETRIES R"sql( THEN NULL
                             ELSE greatest(turing.now(), m.started_at) END,
          last_error = b.error
        FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                    $7::bigint[], $8::boolean[])
          AS b(id, epoch, node, result, error, model, retry_ms, retryable)
        WHERE m.id = b.id AND (m.state = 'running') IS TRUE AND m.epoch = b.epoch
        RETURNING m.id, m.item_id, m.run_id, m.stage, m.attempt, m.epoch, b.node,
                  m.started_at, b.result, b.error, b.model, NOT ()sql" RETRIES R"sql() AS dead,
                  b.retry_ms),
      audit AS (
        INSERT INTO turing.attempts (message_id, item_id, run_id, stage, attempt, epoch, node,
                                     started_at, finished_at, result, model, error)
        SELECT id, item_id, run_id, stage, attempt, epoch, node, started_at,
               greatest(turing.now(), started_at), result, model, error FROM failed),
      tally AS (
        INSERT INTO turing.stage_tallies AS t (stage, backend, dead)
        SELECT stage, pg_backend_pid(), count(*) FROM failed WHERE dead GROUP BY stage
        ON CONFLICT (stage, backend) DO UPDATE SET dead = t.dead + EXCLUDED.dead)
      SELECT id, item_id, dead, stage, retry_ms, epoch FROM failed
      UNION ALL
      -- Failed under this very epoch before this statement: an earlier try of
      -- this write committed although its caller was told it failed.
      SELECT m.id, m.item_id, false, m.stage, -1, m.epoch
      FROM unnest($1::bigint[], $2::bigint[]) AS b(id, epoch)
      JOIN turing.messages m ON m.id = b.id
      WHERE (SELECT count(*) FROM failed) < cardinality($1::bigint[])
        AND (m.state IN ('ready', 'dead')) IS TRUE AND m.epoch = b.epoch
        AND EXISTS (SELECT 1 FROM turing.attempts a WHERE a.message_id = m.id
                    AND a.epoch = m.epoch AND a.result IN ('failed', 'timeout', 'crashed')))sql",
                                       ids, epochs.str(), nodes.str(), results.str(), errors.str(),
                                       models.str(), retry_ms.str(), retryable.str());
#undef RETRIES
    // By (id, epoch), never by id alone (see complete()).
    std::set<std::pair<int64_t, int64_t>> applied;
    std::set<std::string> notify;
    for (const auto& row : r) {
      applied.insert({row[0].as<int64_t>(), row[5].as<int64_t>()});
      if (!row[2].as<bool>() && row[4].as<int64_t>() == 0)
        notify.insert(row[3].as<std::string>());
    }
    apply_dead(session_->statements, tx, r, 1, 2);
    std::vector<fence_result> results;
    json late = json::array();
    for (const auto& f : batch) {
      if (applied.count({f.fence.message_id, f.fence.epoch})) {
        results.push_back(fence_result::applied);
        continue;
      }
      results.push_back(fence_result::stale);
      late.push_back(
          {{"id", f.fence.message_id},
           {"epoch", f.fence.epoch},
           {"attempt", f.attempt},
           {"node", f.node},
           {"started_us", to_us(f.started_at)},
           {"outcome", json()},
           {"model", f.model.empty() ? json() : json(f.model)},
           {"output", json()},
           {"error", storable_text(std::string("late ") + to_string(f.result) + ": " + f.error)}});
    }
    record_late(session_->statements, tx, late);
    notify_stages(session_->statements, tx, notify);
    return results;
  });
}

std::vector<fence_result> pg_store::release(const std::string& node,
                                            const std::vector<lease>& leases) {
  if (leases.empty())
    return {};
  auto ids = id_array(leases, [](const lease& l) { return l.message_id; });
  return in_transaction("release", [&](pqxx::work& tx) {
    // Locked first, in a statement of its own: a retry whose earlier try is
    // still committing waits here, and the statement below then sees that
    // commit (one statement's snapshot would predate it: "stale").
    lock_in_order(session_->statements, tx, "messages", ids);
    auto r = tx.exec_params(R"sql(
      WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, epoch bigint)),
      held AS (
        SELECT m.id FROM turing.messages m JOIN x ON m.id = x.id AND m.epoch = x.epoch
        WHERE (m.state = 'running') IS TRUE AND m.owner_node = $2
        ORDER BY m.id FOR NO KEY UPDATE OF m),
      released AS (
        UPDATE turing.messages m SET state = 'ready', attempt = m.attempt - 1, owner_node = NULL,
          lease_expires_at = NULL, available_at = turing.now()
        FROM held WHERE m.id = held.id
        RETURNING m.id, m.item_id, m.run_id, m.stage, m.attempt + 1 AS attempt, m.epoch,
                  m.started_at),
      audit AS (
        INSERT INTO turing.attempts (message_id, item_id, run_id, stage, attempt, epoch, node,
                                     started_at, finished_at, result, error)
        SELECT id, item_id, run_id, stage, attempt, epoch, $2, started_at,
               greatest(turing.now(), started_at), 'released', 'released at shutdown of ' || $2
        FROM released)
      SELECT id, stage, epoch FROM released
      UNION ALL
      -- Released under this very epoch before this statement: an earlier try
      -- of this write committed although its caller was told it failed.
      SELECT m.id, NULL, m.epoch FROM turing.messages m JOIN x ON m.id = x.id AND m.epoch = x.epoch
      WHERE (m.state = 'ready') IS TRUE
        AND EXISTS (SELECT 1 FROM turing.attempts a WHERE a.message_id = m.id
                    AND a.epoch = m.epoch AND a.result = 'released' AND a.node = $2))sql",
                            fences_json(leases).dump(), node);
    // By (id, epoch), never by id alone (see complete()).
    std::set<std::pair<int64_t, int64_t>> applied;
    std::set<std::string> notify;
    for (const auto& row : r) {
      applied.insert({row[0].as<int64_t>(), row[2].as<int64_t>()});
      if (!row[1].is_null())
        notify.insert(row[1].as<std::string>());
    }
    notify_stages(session_->statements, tx, notify);
    std::vector<fence_result> results;
    for (const auto& l : leases)
      results.push_back(applied.count({l.message_id, l.epoch}) ? fence_result::applied
                                                               : fence_result::stale);
    return results;
  });
}

std::vector<rescued_message> pg_store::rescue_expired(const std::string& rescuer_node,
                                                      int max_lost) {
  // Tally rows of connections that are gone are folded into backend 0, so
  // their number follows the connections alive, not those ever opened.
  in_transaction("fold_tallies", [&](pqxx::work& tx) {
    session_->statements.exec(tx, R"sql(
      WITH gone AS (
        DELETE FROM turing.stage_tallies t WHERE backend <> 0
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = t.backend)
        RETURNING stage, done, dead, pruned, retried, purged)
      INSERT INTO turing.stage_tallies AS t (stage, backend, done, dead, pruned, retried, purged)
      SELECT stage, 0, sum(done), sum(dead), sum(pruned), sum(retried), sum(purged) FROM gone
      GROUP BY stage
      ON CONFLICT (stage, backend) DO UPDATE SET done = t.done + EXCLUDED.done,
                                                dead = t.dead + EXCLUDED.dead,
                                                pruned = t.pruned + EXCLUDED.pruned,
                                                retried = t.retried + EXCLUDED.retried,
                                                purged = t.purged + EXCLUDED.purged)sql");
    session_->statements.exec(tx, R"sql(
      WITH gone AS (
        DELETE FROM turing.run_tallies t WHERE backend <> 0
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = t.backend)
        RETURNING run_id, sink, finished, reopened, last_finished_at)
      INSERT INTO turing.run_tallies AS t (run_id, sink, backend, finished, reopened,
                                           last_finished_at)
      SELECT run_id, sink, 0, sum(finished), sum(reopened), max(last_finished_at) FROM gone
      GROUP BY run_id, sink
      ON CONFLICT (run_id, sink, backend) DO UPDATE SET
        finished = t.finished + EXCLUDED.finished, reopened = t.reopened + EXCLUDED.reopened,
        last_finished_at = greatest(t.last_finished_at, EXCLUDED.last_finished_at))sql");
    return 0;
  });
  return in_transaction("rescue_expired", [&](pqxx::work& tx) {
    auto r = tx.exec_params(rescue_sql(false), rescuer_node, max_lost);
    apply_dead(session_->statements, tx, r, 4, 3);
    std::set<std::string> notify;
    for (const auto& row : r)
      if (!row[3].as<bool>())
        notify.insert(row[1].as<std::string>());
    notify_stages(session_->statements, tx, notify);
    return read_rescued(r);
  });
}

std::vector<rescued_message> pg_store::rescue_node(const std::string& dead_node,
                                                   const std::string& rescuer_node, int max_lost) {
  return in_transaction("rescue_node", [&](pqxx::work& tx) {
    auto r = tx.exec_params(rescue_sql(true), rescuer_node, dead_node, max_lost);
    apply_dead(session_->statements, tx, r, 4, 3);
    std::set<std::string> notify;
    for (const auto& row : r)
      if (!row[3].as<bool>())
        notify.insert(row[1].as<std::string>());
    notify_stages(session_->statements, tx, notify);
    return read_rescued(r);
  });
}

// -- reports --------------------------------------------------------------------

void pg_store::report_node(const node_report& report) {
  json failed = json::object();
  for (const auto& [stage, reason] : report.failed_stages)
    failed[stage] = storable_text(reason);
  json unavailable = json::object();
  for (const auto& [model, outage] : report.unavailable_models)
    unavailable[model] = {{"since_us", to_us(outage.since)},
                          {"error", storable_text(outage.error)},
                          {"waiting", outage.waiting}};
  json running = json::object();
  for (const auto& [model, calls] : report.running_calls) {
    auto& list = running[model] = json::array();
    for (const auto& c : calls)
      list.push_back({{"stage", c.stage},
                      {"message_id", c.message_id},
                      {"started_us", to_us(c.started_at)},
                      {"tokens", c.tokens}});
  }
  in_transaction("report_node", [&](pqxx::work& tx) {
    session_->statements.exec(tx, R"sql(
      WITH started AS (SELECT timestamptz 'epoch' + $2 * interval '1 microsecond' AS at)
      INSERT INTO turing.nodes (name, started_at, seen_at, stopped_at, failed_stages,
                                unavailable_models, running_calls, address, peers)
      SELECT $1, at, greatest(turing.now(), at),
             CASE WHEN $3 THEN greatest(turing.now(), at) END, $4::jsonb, $5::jsonb, $6::jsonb,
             nullif($7, ''), $8::jsonb
      FROM started
      ON CONFLICT (name) DO UPDATE SET started_at = EXCLUDED.started_at,
        seen_at = EXCLUDED.seen_at, stopped_at = EXCLUDED.stopped_at,
        failed_stages = EXCLUDED.failed_stages,
        unavailable_models = EXCLUDED.unavailable_models,
        running_calls = EXCLUDED.running_calls, address = EXCLUDED.address,
        peers = EXCLUDED.peers)sql",
                              report.name, to_us(report.started_at), report.stopped_at.has_value(),
                              failed.dump(), unavailable.dump(), running.dump(),
                              storable_text(report.address), json(report.peers).dump());
    return 0;
  });
}

std::map<std::string, int64_t> pg_store::dead_from_lost_leases() {
  return in_transaction("dead_from_lost_leases", [&](pqxx::work& tx) {
    std::map<std::string, int64_t> out;
    for (const auto& row : tx.exec("SELECT stage, count(*) FROM turing.messages WHERE state = "
                                   "'dead' AND purged_at IS NULL "
                                   "AND last_error LIKE 'lost % times with its node%' "
                                   "GROUP BY stage"))
      out[row[0].as<std::string>()] = row[1].as<int64_t>();
    return out;
  });
}

std::map<std::string, int64_t> pg_store::running_by_node() {
  return in_transaction("running_by_node", [&](pqxx::work& tx) {
    std::map<std::string, int64_t> out;
    // The lease index holds exactly the running messages.
    auto r = tx.exec("SELECT owner_node, count(*) FROM turing.messages WHERE state = 'running' "
                     "GROUP BY owner_node");
    for (const auto& row : r)
      out[row[0].as<std::string>()] = row[1].as<int64_t>();
    return out;
  });
}

std::vector<pg_store::attempt_tally> pg_store::recent_attempt_tallies(millis window,
                                                                      int64_t max_rows) {
  return in_transaction("recent_attempt_tallies", [&](pqxx::work& tx) {
    auto r =
        tx.exec_params("SELECT stage, coalesce(model, ''), result, coalesce(outcome, ''), count(*) "
                       "FROM turing.attempts "
                       "WHERE id > (SELECT coalesce(max(id), 0) FROM turing.attempts) - $2 "
                       "AND finished_at > turing.now() - $1 * interval '1 millisecond' "
                       "GROUP BY 1, 2, 3, 4",
                       static_cast<double>(window.count()), max_rows);
    std::vector<attempt_tally> out;
    for (const auto& row : r) {
      auto result = parse_attempt_result(row[2].as<std::string>());
      if (!result)
        continue; // a result this build does not know: not ours to count
      out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), *result,
                     row[3].as<std::string>(), row[4].as<int64_t>()});
    }
    return out;
  });
}

std::map<std::string, pg_store::model_usage>
pg_store::model_usage_since(const std::vector<std::string>& stages, millis window) {
  return in_transaction("model_usage_since", [&](pqxx::work& tx) {
    std::map<std::string, model_usage> out;
    auto r = tx.exec_params(
        "SELECT model, count(*), coalesce(sum(tokens), 0) FROM turing.attempts "
        "WHERE stage = ANY($1::text[]) AND result = 'completed' AND model IS NOT NULL "
        "AND finished_at > turing.now() - $2 * interval '1 millisecond' GROUP BY model",
        text_array(stages), static_cast<double>(window.count()));
    for (const auto& row : r)
      out[row[0].as<std::string>()] = {row[1].as<int64_t>(), row[2].as<int64_t>()};
    return out;
  });
}

std::vector<node_report> pg_store::nodes() {
  return in_transaction("nodes", [&](pqxx::work& tx) {
    auto r = tx.exec("SELECT name, " TS_US("started_at") ", " TS_US("seen_at") ", " TS_US(
        "stopped_at") ", failed_stages::text, unavailable_models::text, running_calls::text, "
                      "coalesce(address, ''), peers::text "
                      "FROM turing.nodes "
                      "ORDER BY name");
    std::vector<node_report> out;
    for (const auto& row : r) {
      node_report n;
      n.name = row[0].as<std::string>();
      n.started_at = from_us(row[1].as<int64_t>());
      n.seen_at = from_us(row[2].as<int64_t>());
      n.stopped_at = opt_time(row[3]);
      auto failed = json::parse(row[4].as<std::string>());
      for (auto it = failed.begin(); it != failed.end(); ++it)
        n.failed_stages[it.key()] = it.value().get<std::string>();
      auto unavailable = json::parse(row[5].as<std::string>());
      for (auto it = unavailable.begin(); it != unavailable.end(); ++it)
        n.unavailable_models[it.key()] = {from_us(it.value().at("since_us").get<int64_t>()),
                                          it.value().at("error").get<std::string>(),
                                          it.value().at("waiting").get<int64_t>()};
      auto running = json::parse(row[6].as<std::string>());
      for (auto it = running.begin(); it != running.end(); ++it)
        for (const auto& c : it.value())
          n.running_calls[it.key()].push_back(
              {c.at("stage").get<std::string>(), c.at("message_id").get<int64_t>(),
               from_us(c.at("started_us").get<int64_t>()), c.at("tokens").get<int64_t>()});
      n.address = row[7].as<std::string>();
      n.peers = json::parse(row[8].as<std::string>()).get<std::vector<std::string>>();
      out.push_back(std::move(n));
    }
    return out;
  });
}

std::vector<stage_counts> pg_store::counts() {
  return in_transaction("counts", [&](pqxx::work& tx) {
    // Live rows from their partial indexes, the totals from the tallies: the
    // cost follows the work in flight, not the history.
    auto r = tx.exec(R"sql(
      SELECT stage,
        count(*) FILTER (WHERE available_at <= turing.now()),
        count(*) FILTER (WHERE available_at > turing.now()),
        count(*) FILTER (WHERE attempt > 0),
        0::bigint, 0::bigint, 0::bigint, 0::bigint, NULL::bigint, NULL::bigint, 0::bigint
      FROM turing.messages WHERE state = 'ready' GROUP BY stage
      UNION ALL
      SELECT stage, 0, 0, 0, count(*), count(*) FILTER (WHERE lease_expires_at < turing.now()),
        0, 0, )sql" TS_US("min(started_at)") ", " TS_US("min(heartbeat_at)") R"sql(, 0
      FROM turing.messages WHERE state = 'running' GROUP BY stage
      UNION ALL
      -- Dead letters: dead-lettered less retried (ready again) and purged.
      SELECT stage, 0, 0, 0, 0, 0, sum(done)::bigint, sum(dead - retried - purged)::bigint,
        NULL, NULL, sum(purged)::bigint
      FROM turing.stage_tallies GROUP BY stage)sql");
    std::map<std::string, stage_counts> by_stage;
    for (const auto& row : r) {
      auto& c = by_stage[row[0].as<std::string>()];
      c.stage = row[0].as<std::string>();
      c.ready += row[1].as<int64_t>();
      c.delayed += row[2].as<int64_t>();
      c.retrying += row[3].as<int64_t>();
      c.running += row[4].as<int64_t>();
      c.expired += row[5].as<int64_t>();
      c.done += row[6].as<int64_t>();
      c.dead += row[7].as<int64_t>();
      if (auto t = opt_time(row[8]))
        c.oldest_started_at = t;
      if (auto t = opt_time(row[9]))
        c.oldest_heartbeat_at = t;
      c.purged += row[10].as<int64_t>();
    }
    std::vector<stage_counts> out;
    for (auto& [stage, c] : by_stage)
      out.push_back(std::move(c));
    return out;
  });
}

std::vector<stage_counts> pg_store::live_counts() {
  return in_transaction("live_counts", [&](pqxx::work& tx) {
    // One branch per state, each answered from its partial index, so the
    // done rows of the past are never read.
    auto r = session_->statements.exec(tx, R"sql(
      SELECT stage, count(*) FILTER (WHERE available_at <= turing.now()),
             count(*) FILTER (WHERE available_at > turing.now()), 0::bigint, 0::bigint
      FROM turing.messages WHERE state = 'ready' GROUP BY stage
      UNION ALL
      SELECT stage, 0, 0, count(*), 0 FROM turing.messages WHERE state = 'running' GROUP BY stage
      UNION ALL
      SELECT stage, 0, 0, 0, count(*) FROM turing.messages
      WHERE state = 'dead' AND purged_at IS NULL GROUP BY stage)sql");
    std::map<std::string, stage_counts> by_stage;
    for (const auto& row : r) {
      auto& c = by_stage[row[0].as<std::string>()];
      c.stage = row[0].as<std::string>();
      c.ready += row[1].as<int64_t>();
      c.delayed += row[2].as<int64_t>();
      c.running += row[3].as<int64_t>();
      c.dead += row[4].as<int64_t>();
    }
    std::vector<stage_counts> out;
    for (auto& [stage, c] : by_stage)
      out.push_back(std::move(c));
    return out;
  });
}

std::optional<run_status> pg_store::run(int64_t run_id) {
  return in_transaction("run", [&](pqxx::work& tx) -> std::optional<run_status> {
    auto r = tx.exec_params(std::string(run_select) + " WHERE r.id = $1", run_id);
    if (r.empty())
      return std::nullopt;
    return read_run(r[0]);
  });
}

std::vector<run_status> pg_store::runs(bool unfinished_only) {
  return in_transaction("runs", [&](pqxx::work& tx) {
    auto r = tx.exec(std::string(run_select) +
                     (unfinished_only ? " WHERE r.items_total > coalesce(t.finished, 0)" : "") +
                     " ORDER BY r.id");
    std::vector<run_status> out;
    for (const auto& row : r)
      out.push_back(read_run(row));
    return out;
  });
}

std::vector<sink_count> pg_store::sink_counts(std::optional<int64_t> run_id) {
  return in_transaction("sink_counts", [&](pqxx::work& tx) {
    // From the tallies: finished items per sink, never a scan of the items.
    // Less the items a retry reopened.
    auto r = run_id ? tx.exec_params("SELECT sink, sum(finished - reopened)::bigint "
                                     "FROM turing.run_tallies WHERE run_id = $1 GROUP BY sink "
                                     "HAVING sum(finished - reopened) > 0 ORDER BY sink",
                                     *run_id)
                    : tx.exec("SELECT sink, sum(finished - reopened)::bigint "
                              "FROM turing.run_tallies GROUP BY sink "
                              "HAVING sum(finished - reopened) > 0 ORDER BY sink");
    std::vector<sink_count> out;
    for (const auto& row : r)
      out.push_back({opt_text(row[0]), row[1].as<int64_t>()});
    return out;
  });
}

std::vector<item_record> pg_store::items(int64_t run_id) {
  return in_transaction("items", [&](pqxx::work& tx) {
    auto r = tx.exec_params("SELECT id, run_id, key, payload::text, open_branches, sink, "
                            "result::text, finished_at IS NOT NULL FROM turing.items "
                            "WHERE run_id = $1 ORDER BY id",
                            run_id);
    std::vector<item_record> out;
    for (const auto& row : r) {
      item_record i;
      i.id = row[0].as<int64_t>();
      i.run_id = row[1].as<int64_t>();
      if (!row[2].is_null())
        i.key = row[2].as<std::string>();
      i.payload = parse_field(row[3]);
      i.open_branches = row[4].as<int>();
      if (!row[5].is_null())
        i.sink = row[5].as<std::string>();
      i.result = opt_json(row[6]);
      i.finished = row[7].as<bool>();
      out.push_back(std::move(i));
    }
    return out;
  });
}

std::vector<attempt_record> pg_store::attempts(std::optional<int64_t> run_id) {
  return in_transaction("attempts", [&](pqxx::work& tx) {
    std::string sql = std::string(attempt_select) + " FROM turing.attempts";
    auto r = run_id ? tx.exec_params(sql + " WHERE run_id = $1 ORDER BY id", *run_id)
                    : tx.exec(sql + " ORDER BY id");
    std::vector<attempt_record> out;
    for (const auto& row : r)
      out.push_back(read_attempt(row));
    return out;
  });
}

std::vector<sink_count> pg_store::result_counts(int64_t run_id, const std::string& sink,
                                                const std::string& field) {
  return in_transaction("result_counts", [&](pqxx::work& tx) {
    auto r = tx.exec_params("SELECT coalesce(result->>$3, ''), count(*) FROM turing.items "
                            "WHERE run_id = $1 AND sink = $2 AND finished_at IS NOT NULL "
                            "GROUP BY 1 ORDER BY 2 DESC, 1",
                            run_id, sink, field);
    std::vector<sink_count> out;
    for (const auto& row : r)
      out.push_back({row[0].as<std::string>(), row[1].as<int64_t>()});
    return out;
  });
}

prune_result pg_store::prune_history(millis older_than, int limit) {
  return in_transaction("prune_history", [&](pqxx::work& tx) {
    // The audit log's trigger lets this transaction, and only it, delete.
    session_->statements.exec(tx, "SELECT set_config('turing.retention', 'on', true)");
    // An item with a dead letter keeps its history until the letter is
    // retried or purged: a retried message is assembled from its parents.
    // Oldest first. A done message has exactly one completed attempt, with
    // the same finished_at: each stage's oldest are read from
    // attempts_stage_time_idx (the LIMIT after the item filters, so items
    // still open do not stall the pass), then the oldest of those across
    // stages. SKIP LOCKED: a row a writer holds (a late result being
    // recorded) waits for the next pass; a late result that comes after its
    // message is gone finds nothing to record against.
    auto r = session_->statements.exec(tx, R"sql(
      WITH cutoff AS (SELECT turing.now() - $1::double precision * interval '1 millisecond' AS at),
      oldest AS (
        SELECT o.message_id, o.finished_at
        FROM (SELECT DISTINCT stage FROM turing.stage_tallies) s, cutoff,
        LATERAL (
          SELECT a.message_id, a.finished_at FROM turing.attempts a
          WHERE a.stage = s.stage AND a.result = 'completed' AND a.finished_at < cutoff.at
            AND EXISTS (SELECT 1 FROM turing.items i WHERE i.id = a.item_id
                        AND i.finished_at < cutoff.at)
            AND NOT EXISTS (SELECT 1 FROM turing.messages d WHERE d.item_id = a.item_id
                            AND d.state = 'dead' AND d.purged_at IS NULL)
          ORDER BY a.finished_at LIMIT $2) o),
      victims AS (
        SELECT m.id, m.stage FROM oldest o JOIN turing.messages m ON m.id = o.message_id
        WHERE m.state = 'done'
        ORDER BY o.finished_at, m.id LIMIT $2
        FOR UPDATE OF m SKIP LOCKED),
      gone_attempts AS (
        DELETE FROM turing.attempts a USING victims v WHERE a.message_id = v.id RETURNING a.id),
      gone AS (
        DELETE FROM turing.messages m USING victims v WHERE m.id = v.id RETURNING m.stage),
      tally AS (
        INSERT INTO turing.stage_tallies AS t (stage, backend, pruned)
        SELECT stage, pg_backend_pid(), count(*) FROM gone GROUP BY stage
        ON CONFLICT (stage, backend) DO UPDATE SET pruned = t.pruned + EXCLUDED.pruned)
      SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM gone_attempts))sql",
                                       static_cast<double>(older_than.count()), limit);
    return prune_result{r[0][0].as<int64_t>(), r[0][1].as<int64_t>()};
  });
}

std::vector<std::string> pg_store::check_invariants() {
  // Each query returns one text column: a violation naming its ids.
  static const char* checks[] = {
      R"sql(SELECT 'item ' || id || ' finished without a sink' FROM turing.items
          WHERE finished_at IS NOT NULL AND sink IS NULL)sql",
      R"sql(SELECT 'run ' || r.id || ' has pending ' || (r.items_total - coalesce(t.finished, 0))
                 || ' but ' || (SELECT count(*) FROM turing.items i
                                WHERE i.run_id = r.id AND i.finished_at IS NULL)
                 || ' unfinished items'
          FROM turing.runs r
          LEFT JOIN (SELECT run_id, sum(finished - reopened) AS finished FROM turing.run_tallies
                     GROUP BY run_id) t ON t.run_id = r.id
          WHERE r.items_total - coalesce(t.finished, 0)
                <> (SELECT count(*) FROM turing.items i
                    WHERE i.run_id = r.id AND i.finished_at IS NULL))sql",
      R"sql(SELECT 'run ' || coalesce(i.run_id, t.run_id) || ' tallies '
                 || coalesce(t.finished, 0) || ' items in sink ' || coalesce(i.sink, t.sink)
                 || ' but ' || coalesce(i.n, 0) || ' items finished there'
          FROM (SELECT run_id, sink, count(*) AS n FROM turing.items
                WHERE finished_at IS NOT NULL GROUP BY run_id, sink) i
          FULL JOIN (SELECT run_id, sink, sum(finished - reopened) AS finished
                     FROM turing.run_tallies
                     GROUP BY run_id, sink) t ON t.run_id = i.run_id AND t.sink = i.sink
          WHERE coalesce(i.n, 0) <> coalesce(t.finished, 0))sql",
      // Done messages removed by retention stay tallied: done rows + pruned.
      // Dead letters: dead less retried less purged; purged: the purged rows.
      R"sql(SELECT 'stage ' || coalesce(m.stage, t.stage) || ' tallies ' || coalesce(t.done, 0)
                 || ' done' || CASE WHEN coalesce(t.pruned, 0) > 0
                                    THEN ' (' || t.pruned || ' of them pruned)' ELSE '' END
                 || ', ' || coalesce(t.dead, 0) || ' dead, ' || coalesce(t.retried, 0)
                 || ' retried and ' || coalesce(t.purged, 0) || ' purged, but holds '
                 || coalesce(m.done, 0) || ' done, ' || coalesce(m.dead, 0)
                 || ' dead and ' || coalesce(m.purged, 0) || ' purged messages'
          FROM (SELECT stage, count(*) FILTER (WHERE state = 'done') AS done,
                       count(*) FILTER (WHERE state = 'dead' AND purged_at IS NULL) AS dead,
                       count(*) FILTER (WHERE state = 'dead' AND purged_at IS NOT NULL) AS purged
                FROM turing.messages GROUP BY stage) m
          FULL JOIN (SELECT stage, sum(done) AS done, sum(dead) AS dead, sum(pruned) AS pruned,
                            sum(retried) AS retried, sum(purged) AS purged
                     FROM turing.stage_tallies GROUP BY stage) t ON t.stage = m.stage
          WHERE coalesce(m.done, 0) <> coalesce(t.done, 0) - coalesce(t.pruned, 0)
             OR coalesce(m.dead, 0)
                <> coalesce(t.dead, 0) - coalesce(t.retried, 0) - coalesce(t.purged, 0)
             OR coalesce(m.purged, 0) <> coalesce(t.purged, 0))sql",
      R"sql(SELECT 'run ' || r.id || ' has items_total ' || r.items_total || ' but '
                 || count(i.id) || ' items'
          FROM turing.runs r LEFT JOIN turing.items i ON i.run_id = r.id
          GROUP BY r.id, r.items_total HAVING r.items_total <> count(i.id))sql",
      R"sql(SELECT 'message ' || message_id || ' completed ' || count(*) || ' times'
          FROM turing.attempts WHERE result = 'completed'
          GROUP BY message_id HAVING count(*) > 1)sql",
      R"sql(SELECT 'message ' || m.id || ' is done without a completed attempt' FROM turing.messages m
          WHERE m.state = 'done' AND NOT EXISTS (SELECT 1 FROM turing.attempts a
            WHERE a.message_id = m.id AND a.result = 'completed'))sql",
      R"sql(SELECT 'message ' || m.id || ' was completed under epoch ' || a.epoch
                 || ' but its current epoch is ' || m.epoch
          FROM turing.messages m JOIN turing.attempts a ON a.message_id = m.id
          WHERE a.result = 'completed' AND a.epoch <> m.epoch)sql",
      R"sql(SELECT 'message ' || m.id || ' holds the output of a late result (epoch ' || a.epoch || ')'
          FROM turing.messages m JOIN turing.attempts a ON a.message_id = m.id
          WHERE a.result = 'late_result' AND m.state = 'done' AND a.epoch = m.epoch
            AND NOT EXISTS (SELECT 1 FROM turing.attempts c WHERE c.message_id = m.id
                            AND c.result = 'completed' AND c.epoch = m.epoch))sql",
      R"sql(SELECT 'attempt ' || id || ' of message ' || message_id || ' goes back from epoch '
                 || prev || ' to ' || epoch
          FROM (SELECT id, message_id, epoch, lag(epoch) OVER (PARTITION BY message_id ORDER BY id)
                  AS prev, result FROM turing.attempts WHERE result <> 'late_result') x
          WHERE prev IS NOT NULL AND epoch < prev)sql",
      R"sql(SELECT 'attempt ' || id || ' finished before it started' FROM turing.attempts
          WHERE finished_at < started_at)sql",
      // Exactly-once handoff: one message per (item, stage) from one
      // completion (or from the enqueue).
      R"sql(SELECT 'item ' || item_id || ' has ' || count(*) || ' messages for stage ' || stage
                 || ' from one handoff ('
                 || CASE WHEN parent_id IS NULL THEN 'the enqueue'
                         ELSE 'message ' || parent_id END || ')'
          FROM turing.messages GROUP BY item_id, stage, parent_id HAVING count(*) > 1)sql",
      R"sql(SELECT 'item ' || i.id || ' is dead although message ' || min(c.id) || ' of stage '
                 || c.stage || ', a copy of its dead message, completed'
          FROM turing.items i
          JOIN turing.messages d ON d.item_id = i.id AND d.state = 'dead'
          JOIN turing.messages c ON c.item_id = i.id AND c.stage = d.stage AND c.id <> d.id
               AND c.state = 'done' AND c.parent_id IS NOT DISTINCT FROM d.parent_id
          WHERE i.sink = 'dead' GROUP BY i.id, c.stage)sql",
      // References the runtime keeps (no FOREIGN KEY triggers: see migration 9).
      R"sql(SELECT 'item ' || i.id || ' belongs to run ' || i.run_id || ', which does not exist'
          FROM turing.items i WHERE NOT EXISTS (SELECT 1 FROM turing.runs r WHERE r.id = i.run_id))sql",
      R"sql(SELECT 'message ' || m.id || ' belongs to item ' || m.item_id || ' of run ' || m.run_id
                 || ', but ' || CASE WHEN i.id IS NULL THEN 'that item does not exist'
                                     ELSE 'the item is in run ' || i.run_id END
          FROM turing.messages m LEFT JOIN turing.items i ON i.id = m.item_id
          WHERE i.id IS NULL OR i.run_id <> m.run_id)sql",
      R"sql(SELECT 'attempt ' || a.id || ' is of message ' || a.message_id || ', which '
                 || CASE WHEN m.id IS NULL THEN 'does not exist'
                         ELSE 'belongs to item ' || m.item_id END
          FROM turing.attempts a LEFT JOIN turing.messages m ON m.id = a.message_id
          WHERE m.id IS NULL OR m.item_id <> a.item_id)sql",
      R"sql(SELECT 'join of stage ' || j.stage || ' belongs to item ' || j.item_id || ', which does not exist'
          FROM turing.joins j WHERE NOT EXISTS (SELECT 1 FROM turing.items i WHERE i.id = j.item_id))sql",
      // A cancelled run keeps no live work (turing cancel dead-letters it all).
      R"sql(SELECT 'run ' || m.run_id || ' was cancelled but its message ' || m.id || ' is '
                 || m.state
          FROM turing.messages m JOIN turing.runs r ON r.id = m.run_id
          WHERE m.state IN ('ready', 'running') AND r.cancelled_at IS NOT NULL)sql",
      R"sql(SELECT 'item ' || i.id || ' is unfinished but has no live message or waiting join'
          FROM turing.items i
          WHERE i.finished_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM turing.messages m WHERE m.item_id = i.id
                            AND m.state IN ('ready', 'running'))
            AND NOT EXISTS (SELECT 1 FROM turing.joins j WHERE j.item_id = i.id
                            AND j.fired_at IS NULL))sql",
  };
  return in_transaction("check_invariants", [&](pqxx::work& tx) {
    std::vector<std::string> out;
    for (const char* sql : checks)
      for (const auto& row : tx.exec(sql))
        out.push_back(row[0].as<std::string>());
    return out;
  });
}

std::vector<millis> pg_store::recent_latencies(const std::string& stage, int limit, millis window) {
  return in_transaction("recent_latencies", [&](pqxx::work& tx) {
    // attempts_stage_time_idx (stage, finished_at) WHERE completed: the
    // newest `limit` rows, however long the history.
    auto r =
        tx.exec_params("SELECT (extract(epoch FROM finished_at - started_at) * 1000)::bigint "
                       "FROM turing.attempts WHERE stage = $1 AND result = 'completed' "
                       "AND finished_at > turing.now() - $3::bigint * interval '1 millisecond' "
                       "ORDER BY finished_at DESC, id DESC LIMIT $2",
                       stage, limit, static_cast<int64_t>(window.count()));
    std::vector<millis> out;
    out.reserve(r.size());
    for (const auto& row : r)
      out.emplace_back(row[0].as<int64_t>());
    return out;
  });
}

std::optional<time_point> pg_store::next_available_at(const std::string& stage) {
  return in_transaction("next_available_at", [&](pqxx::work& tx) {
    auto r = tx.exec_params(
        "SELECT " TS_US(
            "min(available_at)") " FROM turing.messages WHERE stage = $1 AND state = 'ready'",
        stage);
    return opt_time(r[0][0]);
  });
}

// -- operators' actions on dead letters and runs ---------------------------------

namespace {

/// The dead letters a filter matches ($1 stage or '', $2 run or 0, $3 reason
/// or ''), after id $4: read through messages_dead_letters_idx, so the cost
/// follows the dead letters, not the history.
#define DEAD_LETTERS_WHERE                                                                         \
  " m.state = 'dead' AND m.purged_at IS NULL AND ($1::text = '' OR m.stage = $1::text)"            \
  " AND ($2::bigint = 0 OR m.run_id = $2::bigint)"                                                 \
  " AND ($3::text = '' OR strpos(lower(coalesce(m.last_error, '')), lower($3::text)) > 0)"         \
  " AND m.id > $4::bigint "

std::string id_list(const std::vector<int64_t>& ids) {
  return id_array(ids, [](int64_t id) { return id; });
}

std::vector<int64_t> ids_of(const pqxx::result& r, int col = 0) {
  std::vector<int64_t> out;
  out.reserve(r.size());
  for (const auto& row : r)
    out.push_back(row[col].as<int64_t>());
  return out;
}

/// The audit log's row for what one transaction of an operator's action did.
void record_action(pqxx::work& tx, const std::string& by, const char* action, const json& filter,
                   const std::vector<int64_t>& ids) {
  tx.exec_params("INSERT INTO turing.operator_actions (by, action, filter, message_ids, count) "
                 "VALUES ($1, $2, $3::jsonb, $4::bigint[], $5)",
                 storable_text(by), action, filter.dump(), id_list(ids),
                 static_cast<int64_t>(ids.size()));
}

/// The next batch of dead letters a filter matches, by id, after `after`.
pqxx::result pick_dead_letters(pqxx::work& tx, const dead_filter& f, int64_t after, int limit) {
  return tx.exec_params(
      "SELECT m.id FROM turing.messages m WHERE" DEAD_LETTERS_WHERE "ORDER BY m.id LIMIT $5",
      f.stage.value_or(""), f.run_id.value_or(0), f.reason.value_or(""), after, limit);
}

} // namespace

std::vector<dead_message> pg_store::dead_messages(const dead_filter& filter, int limit) {
  return in_transaction("dead_messages", [&](pqxx::work& tx) {
    auto r = tx.exec_params(
        "SELECT m.id, m.run_id, m.item_id, m.stage, i.key, m.epoch, " TS_US(
            "m.finished_at") ", coalesce(m.last_error, '') "
                             "FROM turing.messages m LEFT JOIN turing.items i ON i.id = m.item_id "
                             "WHERE" DEAD_LETTERS_WHERE "ORDER BY m.id LIMIT $5",
        filter.stage.value_or(""), filter.run_id.value_or(0), filter.reason.value_or(""),
        int64_t{0}, std::max(limit, 0));
    std::vector<dead_message> out;
    std::map<int64_t, size_t> at;
    for (const auto& row : r) {
      dead_message d;
      d.id = row[0].as<int64_t>();
      d.run_id = row[1].as<int64_t>();
      d.item_id = row[2].as<int64_t>();
      d.stage = row[3].as<std::string>();
      if (!row[4].is_null())
        d.item_key = row[4].as<std::string>();
      d.epoch = row[5].as<int64_t>();
      d.died_at = from_us(row[6].as<int64_t>());
      d.reason = row[7].as<std::string>();
      at[d.id] = out.size();
      out.push_back(std::move(d));
    }
    if (out.empty())
      return out;
    auto history = tx.exec_params(std::string(attempt_select) +
                                      " FROM turing.attempts WHERE message_id = ANY($1::bigint[]) "
                                      "ORDER BY message_id, id",
                                  id_list(ids_of(r)));
    for (const auto& row : history) {
      auto a = read_attempt(row);
      out[at.at(a.message_id)].attempts.push_back(std::move(a));
    }
    return out;
  });
}

operator_result pg_store::retry_dead(const dead_filter& filter, const std::string& by) {
  operator_result out;
  auto& sc = session_->statements;
  in_transaction("retry_dead", [&](pqxx::work& tx) {
    if (filter.run_id) {
      auto r = tx.exec_params("SELECT cancelled_by FROM turing.runs WHERE id = $1", *filter.run_id);
      if (!r.empty() && !r[0][0].is_null())
        throw store_error(store_errc::invalid_argument,
                          "retry: run " + std::to_string(*filter.run_id) + " was cancelled by " +
                              r[0][0].as<std::string>() + "; its dead letters stay dead");
    }
    out.skipped_cancelled =
        tx.exec_params1("SELECT count(*) FROM turing.messages m WHERE" DEAD_LETTERS_WHERE
                        "AND EXISTS (SELECT 1 FROM turing.runs r WHERE r.id = m.run_id "
                        "AND r.cancelled_at IS NOT NULL)",
                        filter.stage.value_or(""), filter.run_id.value_or(0),
                        filter.reason.value_or(""), int64_t{0})[0]
            .as<int64_t>();
    return 0;
  });
  // Bounded transactions, by id: a message retried here that dies again at
  // once is not picked up a second time by this same retry.
  for (int64_t after = 0;;) {
    auto batch = in_transaction("retry_dead", [&](pqxx::work& tx) {
      std::pair<int64_t, std::vector<int64_t>> result{0, {}};
      auto picked = pick_dead_letters(tx, filter, after, operator_batch);
      if (picked.empty())
        return result;
      result.first = picked[picked.size() - 1][0].as<int64_t>();
      auto ids = id_list(ids_of(picked));
      // Rows in the order every transaction locks them: messages, items,
      // runs. A run being cancelled holds its row: this waits, then sees it.
      lock_in_order(sc, tx, "messages", ids);
      auto items = tx.exec_params(
          "SELECT id, run_id, finished_at IS NOT NULL, sink FROM turing.items WHERE id IN "
          "(SELECT item_id FROM turing.messages WHERE id = ANY($1::bigint[])) ORDER BY id "
          "FOR NO KEY UPDATE",
          ids);
      auto open_runs = tx.exec_params(
          "SELECT id FROM turing.runs WHERE id IN (SELECT run_id FROM turing.messages "
          "WHERE id = ANY($1::bigint[])) AND cancelled_at IS NULL ORDER BY id FOR SHARE",
          ids);
      auto retried = tx.exec_params(R"sql(
        WITH retried AS (
          UPDATE turing.messages m SET state = 'ready', attempt = 0, lost = 0,
            epoch = m.epoch + 1, owner_node = NULL, lease_expires_at = NULL,
            available_at = turing.now(), finished_at = NULL
          WHERE m.id = ANY($1::bigint[]) AND m.run_id = ANY($2::bigint[])
            AND (m.state = 'dead') IS TRUE AND m.purged_at IS NULL
          RETURNING m.id, m.item_id, m.stage),
        tally AS (
          INSERT INTO turing.stage_tallies AS t (stage, backend, retried)
          SELECT stage, pg_backend_pid(), count(*) FROM retried GROUP BY stage
          ON CONFLICT (stage, backend) DO UPDATE SET retried = t.retried + EXCLUDED.retried)
        SELECT id, item_id, stage FROM retried ORDER BY id)sql",
                                    ids, id_list(ids_of(open_runs)));
      if (retried.empty())
        return result;
      result.second = ids_of(retried);
      std::vector<int64_t> item_ids = ids_of(retried, 1);
      std::set<std::string> stages;
      for (const auto& row : retried)
        stages.insert(row[2].as<std::string>());
      // Each retried message opens a branch of its item again; an item that
      // had finished is unfinished again (its run too), and dead only while
      // another of its messages still is.
      std::set<int64_t> touched(item_ids.begin(), item_ids.end());
      json reopened = json::array();
      std::map<std::pair<int64_t, std::string>, int64_t> per_run_sink;
      for (const auto& row : items)
        if (touched.count(row[0].as<int64_t>()) && row[2].as<bool>())
          per_run_sink[{row[1].as<int64_t>(), opt_text(row[3])}] += 1;
      tx.exec_params(R"sql(
        WITH d AS (SELECT item_id, count(*)::integer AS n FROM unnest($1::bigint[]) AS item_id
                   GROUP BY item_id)
        UPDATE turing.items i SET open_branches = i.open_branches + d.n, finished_at = NULL,
          sink = CASE WHEN i.sink = 'dead' AND NOT EXISTS (
                        SELECT 1 FROM turing.messages m WHERE m.item_id = i.id
                        AND (m.state = 'dead') IS TRUE) THEN NULL ELSE i.sink END
        FROM d WHERE i.id = d.item_id)sql",
                     id_list(item_ids));
      for (const auto& [key, n] : per_run_sink)
        reopened.push_back({{"run_id", key.first}, {"sink", key.second}, {"n", n}});
      if (!reopened.empty())
        tx.exec_params(R"sql(
          INSERT INTO turing.run_tallies AS t (run_id, sink, backend, reopened, last_finished_at)
          SELECT run_id, sink, pg_backend_pid(), n, turing.now()
          FROM jsonb_to_recordset($1::jsonb) AS d(run_id bigint, sink text, n bigint)
          ON CONFLICT (run_id, sink, backend) DO UPDATE SET reopened = t.reopened + EXCLUDED.reopened)sql",
                       reopened.dump());
      record_action(tx, by, "retry", filter.to_json(), result.second);
      notify_stages(sc, tx, stages);
      return result;
    });
    if (batch.first == 0)
      break;
    after = batch.first;
    out.message_ids.insert(out.message_ids.end(), batch.second.begin(), batch.second.end());
  }
  return out;
}

operator_result pg_store::purge_dead(const dead_filter& filter, const std::string& by) {
  operator_result out;
  auto& sc = session_->statements;
  for (int64_t after = 0;;) {
    auto batch = in_transaction("purge_dead", [&](pqxx::work& tx) {
      std::pair<int64_t, std::vector<int64_t>> result{0, {}};
      auto picked = pick_dead_letters(tx, filter, after, operator_batch);
      if (picked.empty())
        return result;
      result.first = picked[picked.size() - 1][0].as<int64_t>();
      auto ids = id_list(ids_of(picked));
      lock_in_order(sc, tx, "messages", ids);
      auto purged = tx.exec_params(R"sql(
        WITH purged AS (
          UPDATE turing.messages m SET purged_at = turing.now(), purged_by = $2
          WHERE m.id = ANY($1::bigint[]) AND (m.state = 'dead') IS TRUE AND m.purged_at IS NULL
          RETURNING m.id, m.stage),
        tally AS (
          INSERT INTO turing.stage_tallies AS t (stage, backend, purged)
          SELECT stage, pg_backend_pid(), count(*) FROM purged GROUP BY stage
          ON CONFLICT (stage, backend) DO UPDATE SET purged = t.purged + EXCLUDED.purged)
        SELECT id FROM purged ORDER BY id)sql",
                                   ids, storable_text(by));
      result.second = ids_of(purged);
      if (!result.second.empty())
        record_action(tx, by, "purge", filter.to_json(), result.second);
      return result;
    });
    if (batch.first == 0)
      break;
    after = batch.first;
    out.message_ids.insert(out.message_ids.end(), batch.second.begin(), batch.second.end());
  }
  return out;
}

operator_result pg_store::cancel_run(int64_t run_id, const std::string& by) {
  operator_result out;
  auto& sc = session_->statements;
  json filter{{"run", run_id}};
  // The first transaction marks the run cancelled (so that no enqueue or
  // retry adds to it from then on); each one dead-letters a bounded batch of
  // its live messages. A batch that started after the mark and found none
  // ends it: whatever a concurrent completion or retry committed before the
  // mark is then seen and dead-lettered too.
  for (int round = 0;; ++round) {
    auto batch = in_transaction("cancel_run", [&](pqxx::work& tx) {
      if (round == 0) {
        auto r = tx.exec_params(std::string(run_select) + " WHERE r.id = $1", run_id);
        if (r.empty())
          throw store_error(store_errc::invalid_argument,
                            "cancel: run " + std::to_string(run_id) + " does not exist");
        auto run = read_run(r[0]);
        if (run.finished() && !run.cancelled())
          throw store_error(store_errc::invalid_argument, "cancel: run " + std::to_string(run_id) +
                                                              " has finished; nothing to cancel");
      }
      // Its ready and running messages, from their partial indexes.
      auto picked = tx.exec_params(R"sql(
        SELECT id FROM (
          SELECT id FROM turing.messages WHERE state = 'ready' AND run_id = $1
          UNION ALL
          SELECT id FROM turing.messages WHERE state = 'running' AND run_id = $1) live
        ORDER BY id LIMIT $2)sql",
                                   run_id, operator_batch);
      std::vector<int64_t> ids;
      if (!picked.empty()) {
        auto id_text = id_list(ids_of(picked));
        lock_in_order(sc, tx, "messages", id_text);
        // A running message's epoch moves on: its owner's result is late.
        auto dead = tx.exec_params(R"sql(
          WITH live AS (
            SELECT id, state = 'running' AS running FROM turing.messages
            WHERE id = ANY($1::bigint[]) AND (state IN ('ready', 'running')) IS TRUE),
          cancelled AS (
            UPDATE turing.messages m SET state = 'dead',
              epoch = CASE WHEN live.running THEN m.epoch + 1 ELSE m.epoch END,
              lease_expires_at = NULL, finished_at = greatest(turing.now(), m.started_at),
              last_error = 'run cancelled by ' || $2::text
            FROM live WHERE m.id = live.id
            RETURNING m.id, m.item_id, m.stage),
          tally AS (
            INSERT INTO turing.stage_tallies AS t (stage, backend, dead)
            SELECT stage, pg_backend_pid(), count(*) FROM cancelled GROUP BY stage
            ON CONFLICT (stage, backend) DO UPDATE SET dead = t.dead + EXCLUDED.dead)
          SELECT id, item_id, true FROM cancelled ORDER BY id)sql",
                                   id_text, storable_text(by));
        apply_dead(sc, tx, dead, 1, 2);
        ids = ids_of(dead);
      }
      if (round == 0)
        tx.exec_params(
            "UPDATE turing.runs SET cancelled_at = coalesce(cancelled_at, turing.now()), "
            "cancelled_by = coalesce(cancelled_by, $2) WHERE id = $1",
            run_id, storable_text(by));
      if (round == 0 || !ids.empty())
        record_action(tx, by, "cancel", filter, ids);
      return std::make_pair(!picked.empty(), ids);
    });
    out.message_ids.insert(out.message_ids.end(), batch.second.begin(), batch.second.end());
    if (!batch.first && round > 0)
      break;
  }
  std::sort(out.message_ids.begin(), out.message_ids.end());
  return out;
}

std::vector<operator_action> pg_store::operator_log(int limit) {
  return in_transaction("operator_log", [&](pqxx::work& tx) {
    auto r = tx.exec_params(
        "SELECT id, " TS_US("at") ", by, action, filter::text, "
                                  "array_to_json(message_ids)::text, count "
                                  "FROM turing.operator_actions ORDER BY id DESC LIMIT $1",
        std::max(limit, 0));
    std::vector<operator_action> out;
    for (const auto& row : r) {
      operator_action a;
      a.id = row[0].as<int64_t>();
      a.at = from_us(row[1].as<int64_t>());
      a.by = row[2].as<std::string>();
      a.action = row[3].as<std::string>();
      a.filter = parse_field(row[4]);
      a.message_ids = parse_field(row[5]).get<std::vector<int64_t>>();
      a.count = row[6].as<int64_t>();
      out.push_back(std::move(a));
    }
    return out;
  });
}

} // namespace turing::persistence
