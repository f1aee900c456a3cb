// The schema of turing, as ordered migrations. The database holds the
// invariants itself: legal states, ordered timestamps, an append-only audit.
#include "persistence/migrations.hpp"

#include "persistence/store_error.hpp"

#include <pqxx/pqxx>

namespace turing::persistence {

namespace {

// Taken by every migrating process; the number is "turing" in ASCII.
constexpr long long migration_lock_key = 0x747572696e67;

const char* initial_schema = R"sql(
CREATE TABLE turing.runs (
  id          bigserial PRIMARY KEY,
  label       text NOT NULL DEFAULT '',
  entry_stage text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  items_total bigint NOT NULL CHECK (items_total >= 0),
  pending     bigint NOT NULL CHECK (pending >= 0 AND pending <= items_total),
  finished_at timestamptz,
  CHECK ((pending = 0) = (finished_at IS NOT NULL)),
  CHECK (finished_at IS NULL OR finished_at >= created_at)
);

CREATE TABLE turing.items (
  id            bigserial PRIMARY KEY,
  run_id        bigint NOT NULL REFERENCES turing.runs (id),
  key           text UNIQUE,
  payload       jsonb NOT NULL,
  open_branches integer NOT NULL CHECK (open_branches >= 0),
  sink          text,
  result        jsonb,
  created_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz,
  CHECK ((open_branches = 0) = (finished_at IS NOT NULL)),
  CHECK (finished_at IS NULL OR finished_at >= created_at)
);
CREATE INDEX items_run_idx ON turing.items (run_id);

CREATE TABLE turing.messages (
  id               bigserial PRIMARY KEY,
  run_id           bigint NOT NULL REFERENCES turing.runs (id),
  item_id          bigint NOT NULL REFERENCES turing.items (id),
  stage            text NOT NULL,
  payload          jsonb NOT NULL,
  state            text NOT NULL DEFAULT 'ready'
                   CHECK (state IN ('ready', 'running', 'done', 'dead')),
  attempt          integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
  available_at     timestamptz NOT NULL DEFAULT now(),
  epoch            bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  owner_node       text,
  lease_expires_at timestamptz,
  heartbeat_at     timestamptz,
  started_at       timestamptz,
  finished_at      timestamptz,
  outcome          text,
  output           jsonb,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  CHECK (attempt <= max_attempts),
  -- a running message has exactly one owner and a lease; no other state has a lease
  CHECK ((state = 'running') = (lease_expires_at IS NOT NULL)),
  CHECK (state <> 'running' OR (owner_node IS NOT NULL AND started_at IS NOT NULL
                                AND heartbeat_at IS NOT NULL)),
  CHECK (state <> 'ready' OR owner_node IS NULL),
  CHECK ((state IN ('done', 'dead')) = (finished_at IS NOT NULL)),
  CHECK (state <> 'done' OR outcome IS NOT NULL),
  CHECK (finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at)
);
CREATE INDEX messages_claim_idx ON turing.messages (stage, available_at, id) WHERE state = 'ready';
CREATE INDEX messages_lease_idx ON turing.messages (lease_expires_at) WHERE state = 'running';
CREATE INDEX messages_item_idx ON turing.messages (item_id);
CREATE INDEX messages_stage_state_idx ON turing.messages (stage, state);

-- Each row waits for the listed upstream stages of one item, then fires once.
CREATE TABLE turing.joins (
  item_id  bigint NOT NULL REFERENCES turing.items (id),
  stage    text NOT NULL,
  expected text[] NOT NULL CHECK (cardinality(expected) >= 1),
  inputs   jsonb NOT NULL DEFAULT '{}'::jsonb,
  fired_at timestamptz,
  PRIMARY KEY (item_id, stage)
);

-- The audit log: one row per attempt, never updated, never deleted.
CREATE TABLE turing.attempts (
  id          bigserial PRIMARY KEY,
  message_id  bigint NOT NULL REFERENCES turing.messages (id),
  item_id     bigint NOT NULL,
  run_id      bigint NOT NULL,
  stage       text NOT NULL,
  attempt     integer NOT NULL CHECK (attempt >= 0),
  epoch       bigint NOT NULL,
  node        text NOT NULL,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  result      text NOT NULL CHECK (result IN ('completed', 'failed', 'timeout', 'lost',
                                              'crashed', 'late_result', 'released')),
  outcome     text,
  model       text,
  output      jsonb,
  error       text,
  recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  CHECK (finished_at >= started_at),
  CHECK (result <> 'completed' OR outcome IS NOT NULL)
);
CREATE INDEX attempts_message_idx ON turing.attempts (message_id);
CREATE INDEX attempts_run_idx ON turing.attempts (run_id);
CREATE INDEX attempts_stage_time_idx ON turing.attempts (stage, finished_at) WHERE result = 'completed';

CREATE FUNCTION turing.refuse_attempt_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'turing.attempts is append-only: % refused', TG_OP
    USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER attempts_append_only BEFORE UPDATE OR DELETE ON turing.attempts
  FOR EACH ROW EXECUTE FUNCTION turing.refuse_attempt_change();
CREATE TRIGGER attempts_no_truncate BEFORE TRUNCATE ON turing.attempts
  FOR EACH STATEMENT EXECUTE FUNCTION turing.refuse_attempt_change();
)sql";

// Nodes report themselves, so that `turing status` (another process) can say
// which nodes run, when they were last seen, and which of their stages failed.
const char* nodes_table = R"sql(
CREATE TABLE turing.nodes (
  name          text PRIMARY KEY,
  started_at    timestamptz NOT NULL,
  seen_at       timestamptz NOT NULL,
  stopped_at    timestamptz,
  failed_stages jsonb NOT NULL DEFAULT '{}'::jsonb,
  CHECK (seen_at >= started_at),
  CHECK (stopped_at IS NULL OR stopped_at >= started_at)
);
)sql";

// The store's clock. A transaction may set `turing.now` (set_config, local to
// the transaction) to run on an injected clock, e.g. a simulation's virtual
// time; otherwise it is now(). SQL, STABLE and without SET so the planner
// inlines it; the builtins are schema-qualified so that no search_path can
// turn the fallback into a call of this function.
const char* store_clock = R"sql(
CREATE FUNCTION turing.now() RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(pg_catalog.current_setting('turing.now', true), '')::timestamptz,
                  pg_catalog.now())
$$;
-- The audit's recording time follows the injected clock too; without one it
-- stays the wall-clock time of the insert.
ALTER TABLE turing.attempts ALTER COLUMN recorded_at SET DEFAULT
  coalesce(nullif(pg_catalog.current_setting('turing.now', true), '')::timestamptz,
           pg_catalog.clock_timestamp());
)sql";

// Exactly-once handoff, held by the database itself: a message records the
// message whose completion created it, and one completion creates at most one
// message per stage. A second handoff of the same completion is refused.
const char* handoff_parent = R"sql(
ALTER TABLE turing.messages ADD COLUMN parent_id bigint;
CREATE UNIQUE INDEX messages_handoff_once_idx ON turing.messages (parent_id, stage)
  WHERE parent_id IS NOT NULL;
)sql";

// The census the node monitor polls every second counts dead messages per
// stage; without this index that is a scan of every message ever handled.
// The (stage, state) index served counts that now read partial indexes and
// tallies; every claim, completion and handoff paid for it, so it goes.
const char* dead_index = R"sql(
CREATE INDEX messages_dead_idx ON turing.messages (stage) WHERE state = 'dead';
DROP INDEX turing.messages_stage_state_idx;
)sql";

// No hot rows, and totals that do not grow with history. A run's progress
// and a stage's done and dead totals were a counter in one row that every
// finishing item updated (the run's), or a scan of every message (the
// stage's). Now each connection adds to rows of its own (keyed by its
// backend pid, so no two writers ever wait on one row); readers sum them, and
// the rescuer folds the rows of gone connections into backend 0. A run's
// tallies count its finished items per sink: its pending count is
// items_total less their sum, and it finished, when that is 0, at the latest
// last_finished_at.
const char* tallies = R"sql(
CREATE TABLE turing.stage_tallies (
  stage   text NOT NULL,
  backend integer NOT NULL,
  done    bigint NOT NULL DEFAULT 0 CHECK (done >= 0),
  dead    bigint NOT NULL DEFAULT 0 CHECK (dead >= 0),
  PRIMARY KEY (stage, backend)
);
INSERT INTO turing.stage_tallies (stage, backend, done, dead)
SELECT stage, 0, count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'dead')
FROM turing.messages GROUP BY stage;

CREATE TABLE turing.run_tallies (
  run_id           bigint NOT NULL,
  sink             text NOT NULL,
  backend          integer NOT NULL,
  finished         bigint NOT NULL DEFAULT 0 CHECK (finished >= 0),
  last_finished_at timestamptz NOT NULL,
  PRIMARY KEY (run_id, sink, backend)
);
INSERT INTO turing.run_tallies (run_id, sink, backend, finished, last_finished_at)
SELECT run_id, sink, 0, count(*), max(finished_at) FROM turing.items
WHERE finished_at IS NOT NULL AND sink IS NOT NULL GROUP BY run_id, sink;
ALTER TABLE turing.runs DROP COLUMN pending, DROP COLUMN finished_at;
)sql";

// Models a node cannot reach, so that `turing status` can say which stages
// wait for which model, since when: {"mistral": {"since_us", "error", "waiting"}}.
const char* unavailable_models = R"sql(
ALTER TABLE turing.nodes ADD COLUMN unavailable_models jsonb NOT NULL DEFAULT '{}'::jsonb;
)sql";

// Lost attempts (a lease that expired with its node) are counted apart from
// failures: attempt - lost is what max_attempts bounds.
const char* lost_attempts = R"sql(
ALTER TABLE turing.messages ADD COLUMN lost integer NOT NULL DEFAULT 0 CHECK (lost >= 0);
DO $$
DECLARE c text;
BEGIN
  SELECT conname INTO c FROM pg_catalog.pg_constraint
  WHERE conrelid = 'turing.messages'::regclass AND contype = 'c'
    AND pg_catalog.pg_get_constraintdef(oid) = 'CHECK ((attempt <= max_attempts))';
  IF c IS NOT NULL THEN
    EXECUTE format('ALTER TABLE turing.messages DROP CONSTRAINT %I', c);
  END IF;
END
$$;
ALTER TABLE turing.messages ADD CONSTRAINT messages_counted_attempts
  CHECK (attempt - lost <= max_attempts AND lost <= attempt);
)sql";

// No FOREIGN KEY triggers: each inserted row's check locks its parent row
// (FOR KEY SHARE, a WAL record), which cost enqueue more than half its time
// and every handoff a lock on its item. The references are the runtime's to
// keep, in the same transactions as before; `turing check` verifies them.
const char* no_foreign_keys = R"sql(
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT conrelid::regclass AS tab, conname FROM pg_catalog.pg_constraint
           WHERE contype = 'f' AND connamespace = 'turing'::regnamespace LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tab, r.conname);
  END LOOP;
END
$$;
)sql";

// History retention: done messages of long-finished items are removed with
// their attempts (runtime.retain_done). The tallies keep counting them:
// `pruned` says how many of a stage's done messages are gone, so the
// invariant "tallied done = done rows" becomes "tallied done = done rows +
// pruned". The partial index finds the oldest done messages without a scan.
// The audit log stays append-only for everything else: retention's
// transaction says what it is (turing.retention = on, local to it).
const char* history_retention = R"sql(
ALTER TABLE turing.stage_tallies ADD COLUMN pruned bigint NOT NULL DEFAULT 0 CHECK (pruned >= 0);
CREATE INDEX messages_done_idx ON turing.messages (finished_at) WHERE state = 'done';
CREATE OR REPLACE FUNCTION turing.refuse_attempt_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('turing.retention', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'turing.attempts is append-only: % refused', TG_OP
    USING ERRCODE = 'integrity_constraint_violation';
END
$$;
)sql";

// A queue table's rows are updated twice and go cold within seconds: the
// default thresholds (20 % of the table) let dead tuples pile up into the
// hundreds of thousands between vacuums, and every index scan wades through
// them. Vacuum and analyse after 1-2 % instead, without throttling.
const char* queue_vacuum = R"sql(
ALTER TABLE turing.messages SET (autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0);
ALTER TABLE turing.items SET (autovacuum_vacuum_scale_factor = 0.02,
  autovacuum_analyze_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
)sql";

// Payloads are large JSON documents: lz4 compresses them about as well as the default pglz at a
// fraction of the CPU. A server built without lz4 keeps pglz (the migration still applies; only new
// values are affected either way).
const char* lz4_payloads = R"sql(
DO $$
BEGIN
  ALTER TABLE turing.items ALTER COLUMN payload SET COMPRESSION lz4,
                           ALTER COLUMN result SET COMPRESSION lz4;
  ALTER TABLE turing.messages ALTER COLUMN payload SET COMPRESSION lz4,
                              ALTER COLUMN output SET COMPRESSION lz4;
  ALTER TABLE turing.attempts ALTER COLUMN output SET COMPRESSION lz4;
  ALTER TABLE turing.joins ALTER COLUMN inputs SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
  RAISE NOTICE 'lz4 is not available in this server; payloads keep pglz compression';
END
$$;
)sql";

// Payloads derived in the database: a completion names the message it
// completes, and the payload each next stage (or sink, or join) receives is
// computed here from that message's payload and output, exactly as the C++
// next_payload() does, so the runtime never sends a payload back. Inlined
// into the statements that use it (a plain SQL expression).
const char* derived_payloads = R"sql(
CREATE FUNCTION turing.next_payload(input jsonb, output jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN output IS NULL OR jsonb_typeof(output) = 'null' THEN input
    WHEN jsonb_typeof(output) <> 'object' OR jsonb_typeof(input) IS DISTINCT FROM 'object'
      THEN output
    ELSE input || output END
$$;
)sql";

// Payloads stored once. A message whose payload is large stores none: it is
// assembled when claimed, from the item's input (an entry message), the
// join's inputs (a join's message) or its parent's payload with the parent's
// output laid over it, so a document of megabytes is stored once per item,
// not once per stage. Small payloads (under the TOAST threshold, where a copy
// costs less than a lookup) are still stored in the row. A join keeps, per
// input whose payload is large, the message it came from (arrived_from), and
// builds that input when the join's message is claimed.
const char* payloads_stored_once = R"sql(
ALTER TABLE turing.messages ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE turing.joins ADD COLUMN arrived_from jsonb NOT NULL DEFAULT '{}'::jsonb;

-- The payload a message is claimed with.
CREATE FUNCTION turing.message_payload(message bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  at bigint := message;
  p jsonb;
  parent bigint;
  item bigint;
  join_inputs jsonb;
  join_refs jsonb;
  ref record;
  outputs jsonb[] := '{}';
  o jsonb;
BEGIN
  LOOP
    SELECT m.payload, m.parent_id, m.item_id, j.inputs, j.arrived_from
      INTO p, parent, item, join_inputs, join_refs
      FROM turing.messages m
      LEFT JOIN turing.joins j ON j.item_id = m.item_id AND j.stage = m.stage
     WHERE m.id = at;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'turing.message_payload: message % (from message %) is gone', at, message
        USING ERRCODE = 'no_data_found';
    END IF;
    EXIT WHEN p IS NOT NULL;
    IF join_inputs IS NOT NULL THEN      -- a join's message: its inputs by stage
      p := join_inputs;
      FOR ref IN SELECT key, value FROM jsonb_each(join_refs) LOOP
        p := p || jsonb_build_object(ref.key, turing.payload_after(ref.value::text::bigint));
      END LOOP;
      EXIT;
    END IF;
    IF parent IS NULL THEN               -- an entry message: the item's input
      SELECT i.payload INTO p FROM turing.items i WHERE i.id = item;
      EXIT;
    END IF;
    SELECT m.output INTO o FROM turing.messages m WHERE m.id = parent;
    outputs := array_prepend(o, outputs);
    at := parent;
  END LOOP;
  FOREACH o IN ARRAY outputs LOOP
    p := turing.next_payload(p, o);
  END LOOP;
  RETURN p;
END
$$;

-- The payload a completed message hands on: its own with its output laid over.
CREATE FUNCTION turing.payload_after(message bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT turing.next_payload(coalesce(m.payload, turing.message_payload(m.id)), m.output)
  FROM turing.messages m WHERE m.id = message
$$;
)sql";

// What a model attempt cost in tokens (prompt + completion, as its server
// counted them): budgets are checked against it, and users account with it.
// NULL where the handler is not a model or the server did not say.
const char* attempt_tokens = R"sql(
ALTER TABLE turing.attempts ADD COLUMN tokens bigint CHECK (tokens >= 0);
)sql";

// A node's model calls in flight with their streamed tokens so far, as its
// last report said: `turing status` shows tokens/s per running call.
const char* running_calls = R"sql(
ALTER TABLE turing.nodes ADD COLUMN running_calls jsonb NOT NULL DEFAULT '{}';
)sql";

// Distributed mode: where a node's peers reach it and which peers it is
// connected to, so that nodes find each other and `turing status` shows the
// cluster.
const char* cluster_membership = R"sql(
ALTER TABLE turing.nodes ADD COLUMN address text;
ALTER TABLE turing.nodes ADD COLUMN peers jsonb NOT NULL DEFAULT '[]';
)sql";

// Operators act on dead letters and runs without SQL (`turing dead`, `turing
// cancel`), every action audited. A retried dead letter is ready again, so
// the tallies that counted it dead count it `retried` (and its item, if that
// had finished, `reopened` on its run); a purged one stays a dead row, marked,
// and is tallied `purged`. The tallies stay exact: dead letters = dead -
// retried - purged, a run's finished items = finished - reopened. Dead
// letters still to act on are found through their own partial index.
const char* operator_actions = R"sql(
CREATE TABLE turing.operator_actions (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT turing.now(),
  by          text NOT NULL,
  action      text NOT NULL CHECK (action IN ('retry', 'purge', 'cancel')),
  filter      jsonb NOT NULL DEFAULT '{}'::jsonb,
  message_ids bigint[] NOT NULL DEFAULT '{}',
  count       bigint NOT NULL CHECK (count = cardinality(message_ids))
);
CREATE FUNCTION turing.refuse_operator_action_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'turing.operator_actions is append-only: % refused', TG_OP
    USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER operator_actions_append_only BEFORE UPDATE OR DELETE ON turing.operator_actions
  FOR EACH ROW EXECUTE FUNCTION turing.refuse_operator_action_change();
CREATE TRIGGER operator_actions_no_truncate BEFORE TRUNCATE ON turing.operator_actions
  FOR EACH STATEMENT EXECUTE FUNCTION turing.refuse_operator_action_change();

ALTER TABLE turing.runs ADD COLUMN cancelled_at timestamptz, ADD COLUMN cancelled_by text,
  ADD CONSTRAINT runs_cancelled_by CHECK ((cancelled_at IS NULL) = (cancelled_by IS NULL));
ALTER TABLE turing.messages ADD COLUMN purged_at timestamptz, ADD COLUMN purged_by text,
  ADD CONSTRAINT messages_purged_dead CHECK (purged_at IS NULL OR state = 'dead'),
  ADD CONSTRAINT messages_purged_by CHECK ((purged_at IS NULL) = (purged_by IS NULL));
CREATE INDEX messages_dead_letters_idx ON turing.messages (stage, id)
  WHERE state = 'dead' AND purged_at IS NULL;

ALTER TABLE turing.stage_tallies
  ADD COLUMN retried bigint NOT NULL DEFAULT 0 CHECK (retried >= 0),
  ADD COLUMN purged bigint NOT NULL DEFAULT 0 CHECK (purged >= 0);
ALTER TABLE turing.run_tallies
  ADD COLUMN reopened bigint NOT NULL DEFAULT 0 CHECK (reopened >= 0);
)sql";

// Retention finds old done messages through their completed attempts
// (attempts_stage_time_idx, insert-only) instead of an index on messages that
// every completion added an entry to; it is also one of the indexes whose
// predicate on `state` keeps a message's updates from being HOT.
const char* retention_by_attempts = R"sql(
DROP INDEX IF EXISTS turing.messages_done_idx;
)sql";

// Cheap statistics for the queue tables. Autovacuum analyses them every
// few percent of change (migration 11), and each analyse sorted a sample of
// 30,000 rows per column, the JSON documents included (jsonb_cmp): 0.4-0.5 s
// of CPU per analyse of a 1.3 M-row messages table, 11 % of the cluster's
// CPU in a one-stage drain (perf). No statement filters on a payload, an
// output or an error text, so those get no statistics; the other columns
// keep a 10-bucket histogram (a 3,000-row sample), enough for plans that the
// partial indexes and primary keys shape: an analyse costs about 30 ms.
const char* cheap_statistics = R"sql(
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT a.attrelid::regclass AS tab, a.attname,
                  CASE WHEN a.atttypid IN ('jsonb'::regtype, 'json'::regtype)
                         OR a.attname IN ('last_error', 'error', 'purged_by')
                       THEN 0 ELSE 10 END AS target
           FROM pg_catalog.pg_attribute a
           WHERE a.attrelid IN ('turing.messages'::regclass, 'turing.items'::regclass,
                                'turing.attempts'::regclass, 'turing.joins'::regclass)
             AND a.attnum > 0 AND NOT a.attisdropped LOOP
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS %s', r.tab, r.attname, r.target);
  END LOOP;
END
$$;
)sql";

// Fewer index entries per transition. A message's claim and completion
// change `state`, which partial index predicates name, so neither update is
// HOT: each adds an entry to every index of the table, and the unchanged
// keys' old entries are then cleaned by bottom-up deletion (a sixth of the
// index work in perf). messages_item_idx was one of those indexes, read only
// by `turing check` (whole-table joins) and by retention, which asks whether
// an item has a dead letter: a partial index of dead letters answers that.
// Without it, claim 5.8 and completion 8.9 WAL records per message, were
// 6.8 and 9.9. An item is updated once, when it finishes, changing no
// indexed column: half-empty pages let that update stay on its page (HOT,
// 72 % of them against 2 %), 2.2 WAL records and 16 µs per item, were 5.0
// and 23 µs.
const char* fewer_index_entries = R"sql(
CREATE INDEX messages_dead_item_idx ON turing.messages (item_id)
  WHERE state = 'dead' AND purged_at IS NULL;
DROP INDEX turing.messages_item_idx;
ALTER TABLE turing.items SET (fillfactor = 50);
)sql";

// A block-range index for the one reader of attempts by run (`turing
// report`, `record`): attempts are appended in time order and a run's are
// near each other, so a BRIN entry per 128 pages finds them, where the
// B-tree took an entry per attempt, on every completion and failure.
// autosummarize keeps the newest ranges summarised between vacuums.
const char* attempts_run_brin = R"sql(
DROP INDEX turing.attempts_run_idx;
CREATE INDEX attempts_run_idx ON turing.attempts USING brin (run_id)
  WITH (autosummarize = on);
)sql";

} // namespace

const std::vector<migration>& all_migrations() {
  static const std::vector<migration> list{
      {1, "initial schema: runs, items, messages, joins, attempts", initial_schema},
      {2, "nodes: liveness and failed stages for status", nodes_table},
      {3, "turing.now(): the store's clock, injectable per transaction", store_clock},
      {4, "messages.parent_id: one handoff per completion and stage", handoff_parent},
      {5, "messages_dead_idx for the census; messages_stage_state_idx dropped", dead_index},
      {6, "stage and run tallies per connection: no hot rows, no scans of history", tallies},
      {7, "nodes.unavailable_models: models a node waits for, for status", unavailable_models},
      {8, "messages.lost: lost attempts bounded apart from failures", lost_attempts},
      {9, "no foreign-key triggers on the hot path; turing check verifies references",
       no_foreign_keys},
      {10, "history retention: stage_tallies.pruned, messages_done_idx", history_retention},
      {11, "queue tables vacuumed and analysed after 1-2 % of their rows change", queue_vacuum},
      {12, "payload columns compressed with lz4", lz4_payloads},
      {13, "turing.next_payload: payloads derived in the database", derived_payloads},
      {14, "large payloads stored once per item, assembled when claimed", payloads_stored_once},
      {15, "attempts.tokens: a model attempt's prompt + completion tokens", attempt_tokens},
      {16, "nodes.running_calls: model calls in flight and their tokens, for status",
       running_calls},
      {17, "nodes.address and nodes.peers: distributed mode's membership", cluster_membership},
      {18, "operator actions: audit log, cancelled runs, purged and retried dead letters",
       operator_actions},
      {19, "retention through completed attempts; messages_done_idx dropped",
       retention_by_attempts},
      {20, "queue tables analysed from a small sample; no statistics on payloads and errors",
       cheap_statistics},
      {21, "messages_item_idx dropped for a partial index of dead letters; items fillfactor 50",
       fewer_index_entries},
      {22, "attempts_run_idx as a block-range (BRIN) index: no entry per attempt",
       attempts_run_brin},
  };
  return list;
}

migration_report migrate(pqxx::connection_base& connection) {
  migration_report report;
  try {
    pqxx::work tx{connection, "turing_migrate"};
    tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(migration_lock_key) + ")");
    tx.exec("CREATE SCHEMA IF NOT EXISTS turing");
    tx.exec("CREATE TABLE IF NOT EXISTS turing.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())");
    auto current = tx.exec1("SELECT coalesce(max(version), 0) FROM turing.schema_migrations");
    report.from_version = current[0].as<int>();
    report.to_version = report.from_version;
    const auto& known = all_migrations();
    if (!known.empty() && report.from_version > known.back().version)
      throw store_error(store_errc::schema,
                        "database schema is at version " + std::to_string(report.from_version) +
                            ", newer than this turing knows (" +
                            std::to_string(known.back().version) + "): upgrade turing");
    for (const auto& m : known) {
      if (m.version <= report.from_version)
        continue;
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO turing.schema_migrations (version, name) VALUES ($1, $2)",
                     m.version, m.name);
      report.applied.push_back(m.version);
      report.to_version = m.version;
    }
    tx.commit();
  } catch (const store_error&) {
    throw;
  } catch (const pqxx::broken_connection& e) {
    throw store_error(store_errc::unavailable,
                      std::string("migration: database unreachable: ") + e.what());
  } catch (const std::exception& e) {
    throw store_error(store_errc::schema, std::string("migration failed: ") + e.what());
  }
  return report;
}

} // namespace turing::persistence
