// The statements of the hot path (claim, completion, handoff, item update),
// named so that a new connection can prepare and plan them before its first
// message (pg_store's warm-up) rather than during it.
#pragma once

#include "persistence/detail/sql_fragments.hpp"

namespace turing::persistence::detail {

/// Claims up to $3 ready messages of stage $1 for node $2 (lease $4 ms,
/// byte budget $5).
inline constexpr const char* claim_sql = R"sql(
      WITH candidates AS (
        SELECT id, available_at,
               -- A payload stored once is counted at its item's input size.
               coalesce(pg_column_size(payload),
                        (SELECT pg_column_size(i.payload) FROM turing.items i
                         WHERE i.id = item_id)) AS bytes
        FROM turing.messages
        WHERE stage = $1 AND state = 'ready' AND available_at <= turing.now()
        ORDER BY available_at, id
        LIMIT $3
        FOR NO KEY UPDATE SKIP LOCKED),
      -- The byte budget ($5, 0 for none): taken in order while the total
      -- stays within it, the first always. pg_column_size is the stored
      -- (compressed) size: no detoasting.
      picked AS (
        SELECT id FROM (SELECT id, sum(bytes) OVER (ORDER BY available_at, id) AS total,
                               sum(bytes) OVER (ORDER BY available_at, id) - bytes AS before
                        FROM candidates) c
        WHERE $5::bigint <= 0 OR before = 0 OR total <= $5::bigint)
      UPDATE turing.messages m SET
        state = 'running', attempt = m.attempt + 1, epoch = m.epoch + 1, owner_node = $2,
        started_at = turing.now(), heartbeat_at = turing.now(),
        lease_expires_at = turing.now() + $4::double precision * interval '1 millisecond'
      -- An array, not a join: a generic plan reckons LIMIT $3 at a tenth of
      -- the ready rows, and joined to picked it hashed a sequential scan of
      -- all of turing.messages once about 100,000 were ready (233 ms a claim
      -- at 300,000); `= ANY` of an array is reckoned at 10 rows and probes
      -- the primary key (7 ms).
      WHERE m.id = ANY (ARRAY(SELECT id FROM picked))
      RETURNING m.id, m.item_id, m.run_id,
                coalesce(m.payload, turing.message_payload(m.id))::text, m.attempt, m.max_attempts, m.epoch,
                )sql" TS_US("m.started_at") R"sql(, m.lost)sql";

/// Marks the messages of a completion batch done, with their attempt rows
/// and the stage tallies. The batch is six parallel arrays, one element per
/// message in ascending id order: $1 ids, $2 epochs (the fence), $3 outcomes,
/// $4 outputs, $5 models, $6 tokens. Unnested and joined to the rows through
/// the primary key, each row reads its fields from its own tuple (no key
/// lookup in a JSON object) and rows are locked in the arrays' id order, the
/// order every transaction uses.
inline constexpr const char* complete_sql = R"sql(
      WITH done AS (
        UPDATE turing.messages m SET state = 'done', lease_expires_at = NULL,
          finished_at = greatest(turing.now(), m.started_at),
          outcome = b.outcome, output = b.output
        FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::jsonb[], $5::text[],
                    $6::bigint[]) AS b(id, epoch, outcome, output, model, tokens)
        WHERE m.id = b.id AND (m.state = 'running') IS TRUE AND m.epoch = b.epoch
        RETURNING m.id, m.item_id, m.run_id, m.stage, m.attempt, m.epoch, m.owner_node,
                  m.started_at, m.finished_at, m.outcome, m.output, b.model, b.tokens),
      audit AS (
        INSERT INTO turing.attempts (message_id, item_id, run_id, stage, attempt, epoch, node,
                                     started_at, finished_at, result, outcome, model, output,
                                     tokens)
        SELECT id, item_id, run_id, stage, attempt, epoch, owner_node, started_at, finished_at,
               'completed', outcome, model, output, tokens FROM done),
      tally AS (
        INSERT INTO turing.stage_tallies AS t (stage, backend, done)
        SELECT stage, pg_backend_pid(), count(*) FROM done GROUP BY stage
        ON CONFLICT (stage, backend) DO UPDATE SET done = t.done + EXCLUDED.done)
      SELECT id, epoch, item_id, run_id, stage, true FROM done
      UNION ALL
      -- Done under this very epoch before this statement: an earlier try of
      -- this write committed although its caller was told it failed. Looked
      -- for only when some entry was not applied now (a one-time filter: the
      -- usual batch, all applied, does not probe its rows twice).
      SELECT m.id, m.epoch, m.item_id, m.run_id, m.stage, false
      FROM unnest($1::bigint[], $2::bigint[]) AS b(id, epoch)
      JOIN turing.messages m ON m.id = b.id
      WHERE (SELECT count(*) FROM done) < cardinality($1::bigint[])
        AND (m.state = 'done') IS TRUE AND m.epoch = b.epoch)sql";

// A handed-off message's payload, from its entry x. Scalar subqueries: always
// one index probe per row (a join may be planned as a hash join over the
// whole table). A payload too large to copy is left NULL: assembled when
// claimed from its parent (or its join's row).
// clang-format off
#define HANDOFF_PAYLOAD                                                                   \
  " CASE WHEN x.derived_from IS NOT NULL THEN (SELECT CASE WHEN " STORED_INLINE(            \
      "pg_column_size(m.payload) + coalesce(pg_column_size(m.output), 0)")                 \
  " THEN turing.next_payload(m.payload, m.output) END"                                    \
  " FROM turing.messages m WHERE m.id = x.derived_from)"                                  \
  " WHEN x.from_join THEN (SELECT CASE WHEN j.arrived_from = '{}'::jsonb THEN j.inputs END" \
  " FROM turing.joins j WHERE j.item_id = x.item_id AND j.stage = x.stage)"               \
  " ELSE x.payload END "
// clang-format on

// The next stages' messages as nine parallel arrays, one element per
// message (pg_store's handoff_batch): $1 run ids, $2 item ids, $3 parents,
// $4 stages, $5 payloads (NULL when derived or from a join), $6 the message
// a payload is derived from, $7 from a join, $8 max attempts, $9 claim.
#define HANDOFF_ROWS                                                                               \
  " unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::jsonb[], $6::bigint[], "      \
  "$7::boolean[], $8::integer[], $9::boolean[])"                                                   \
  " AS x(run_id, item_id, parent_id, stage, payload, derived_from, from_join, max_attempts, "      \
  "claim) "

/// Inserts the next stages' messages (HANDOFF_ROWS; `claim` unread) and
/// notifies them on channel $10 ($11: " node" when the writer's node wakes
/// its own pumps, else empty; see ready_payload).
inline constexpr const char* handoff_sql = R"sql(
        WITH ins AS (
        INSERT INTO turing.messages (run_id, item_id, parent_id, stage, payload, max_attempts,
                                     available_at, created_at)
        SELECT x.run_id, x.item_id, x.parent_id, x.stage,
               )sql" HANDOFF_PAYLOAD R"sql(,
               x.max_attempts, turing.now(), turing.now()
        FROM )sql" HANDOFF_ROWS R"sql(
        RETURNING stage)
        SELECT pg_notify($10, s.stage || $11::text) FROM (SELECT DISTINCT stage FROM ins) s)sql";

/// handoff_sql, where the entries marked `claim` whose payload is stored
/// inline are inserted running under node $12's lease ($13 ms), as the
/// claim would leave them; the rest are ready and notified. Returns the
/// claimed rows as claim_sql does, then a row with a NULL id per notice.
inline constexpr const char* handoff_claiming_sql = R"sql(
        WITH next AS (
          SELECT x.run_id, x.item_id, x.parent_id, x.stage, x.max_attempts, x.claim,
                 )sql" HANDOFF_PAYLOAD R"sql( AS payload
          FROM )sql" HANDOFF_ROWS R"sql(
          OFFSET 0),
        ins AS (
        INSERT INTO turing.messages (run_id, item_id, parent_id, stage, payload, max_attempts,
                                     available_at, created_at, state, attempt, epoch, owner_node,
                                     started_at, heartbeat_at, lease_expires_at)
        SELECT run_id, item_id, parent_id, stage, payload, max_attempts, turing.now(), turing.now(),
               CASE WHEN c THEN 'running' ELSE 'ready' END, c::integer, c::integer,
               CASE WHEN c THEN $12::text END, CASE WHEN c THEN turing.now() END,
               CASE WHEN c THEN turing.now() END,
               CASE WHEN c THEN turing.now() + $13::double precision * interval '1 millisecond' END
        FROM (SELECT n.*, (n.claim IS TRUE AND n.payload IS NOT NULL) AS c FROM next n) n
        RETURNING id, item_id, run_id, stage, payload, attempt, max_attempts, epoch, started_at,
                  lost, state)
        SELECT id, item_id, run_id, stage, payload::text, attempt, max_attempts, epoch,
               )sql" TS_US("started_at") R"sql(, lost, NULL::void
        FROM ins WHERE state = 'running'
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, pg_notify($10, s.stage || $11::text)
        FROM (SELECT DISTINCT stage FROM ins WHERE state = 'ready') s)sql";
#undef HANDOFF_PAYLOAD
#undef HANDOFF_ROWS

/// Applies branch changes and sinks to items. The batch is parallel arrays,
/// one element per item in ascending id order (see complete_sql): $1 ids,
/// $2 branch deltas, $3 sinks, $4 results, $5 the message whose payload with
/// its output laid over is the result (instead of $4), $6 dead.
inline constexpr const char* items_update_sql = R"sql(
    UPDATE turing.items i SET
      open_branches = i.open_branches + e.delta,
      sink = CASE WHEN e.dead THEN 'dead' WHEN i.sink = 'dead' THEN i.sink
                  ELSE coalesce(e.sink, i.sink) END,
      result = CASE WHEN e.dead OR i.sink = 'dead' THEN i.result
                    WHEN e.result_of IS NOT NULL
                      -- OFFSET 0 keeps p's columns plain, so next_payload
                      -- is inlined; given the coalesce as its argument it
                      -- would be called as a SQL function per item.
                      THEN (SELECT turing.next_payload(p.payload, p.output)
                            FROM (SELECT coalesce(m.payload, turing.message_payload(m.id))
                                           AS payload, m.output
                                  FROM turing.messages m
                                  WHERE m.id = e.result_of OFFSET 0) p)
                    ELSE coalesce(e.result, i.result) END,
      finished_at = CASE WHEN i.open_branches + e.delta = 0
                         THEN greatest(turing.now(), i.created_at) END
    FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::jsonb[], $5::bigint[],
                $6::boolean[]) AS e(id, delta, sink, result, result_of, dead)
    WHERE i.id = e.id AND i.finished_at IS NULL
    RETURNING i.run_id, i.open_branches = 0 AS finished, i.sink, )sql" TS_US("i.finished_at");

} // namespace turing::persistence::detail
