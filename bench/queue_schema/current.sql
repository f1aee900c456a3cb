-- The message-row queue as turing has it (migrations 1-18, columns and indexes that the hot path
-- touches): one row per message, its state in partial-index predicates, so no update is HOT.
DROP SCHEMA IF EXISTS q CASCADE;
CREATE SCHEMA q;
CREATE TABLE q.messages (
  id bigserial PRIMARY KEY, run_id bigint NOT NULL, item_id bigint NOT NULL, stage int NOT NULL,
  payload jsonb, state text NOT NULL DEFAULT 'ready', attempt int NOT NULL DEFAULT 0,
  max_attempts int NOT NULL DEFAULT 3, available_at timestamptz NOT NULL DEFAULT now(),
  epoch bigint NOT NULL DEFAULT 0, owner_node text, lease_expires_at timestamptz,
  heartbeat_at timestamptz, started_at timestamptz, finished_at timestamptz, outcome text,
  output jsonb, last_error text, created_at timestamptz NOT NULL DEFAULT now(), parent_id bigint,
  lost int NOT NULL DEFAULT 0, purged_at timestamptz, purged_by text)
  WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.05,
        autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX messages_claim_idx ON q.messages (stage, available_at, id) WHERE state = 'ready';
CREATE INDEX messages_lease_idx ON q.messages (lease_expires_at) WHERE state = 'running';
CREATE INDEX ON q.messages (item_id);
CREATE UNIQUE INDEX ON q.messages (parent_id, stage) WHERE parent_id IS NOT NULL;
CREATE INDEX messages_dead_idx ON q.messages (stage) WHERE state = 'dead';
CREATE INDEX messages_done_idx ON q.messages (finished_at) WHERE state = 'done';
CREATE INDEX messages_dead_letters_idx ON q.messages (stage, id)
  WHERE state = 'dead' AND purged_at IS NULL;
CREATE TABLE q.attempts (
  id bigserial PRIMARY KEY, message_id bigint NOT NULL, item_id bigint NOT NULL,
  run_id bigint NOT NULL, stage int NOT NULL, attempt int NOT NULL, epoch bigint NOT NULL,
  node text NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL,
  result text NOT NULL, outcome text, output jsonb,
  recorded_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON q.attempts (message_id);
CREATE INDEX ON q.attempts (run_id);
CREATE INDEX ON q.attempts (stage, finished_at) WHERE result = 'completed';
INSERT INTO q.messages (run_id, item_id, stage, payload)
  SELECT 1, g, 1, '{"n": 1}' FROM generate_series(1, :items) g;
VACUUM ANALYZE q.messages;
