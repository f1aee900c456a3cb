-- The candidate redesign, as changes to current.sql: messages keep history and nothing that changes
-- at claim or completion is indexed, so both updates can be HOT (fillfactor 70 leaves them room);
-- what is ready to claim is a row in q.ready, a running message's lease a row in q.leases.
\ir current.sql
DROP INDEX q.messages_claim_idx, q.messages_lease_idx, q.messages_dead_idx, q.messages_done_idx,
  q.messages_dead_letters_idx;
ALTER TABLE q.messages SET (fillfactor = 70);
CREATE TABLE q.ready (id bigint NOT NULL, stage int NOT NULL, available_at timestamptz NOT NULL)
  WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX ON q.ready (stage, available_at, id);
CREATE TABLE q.leases (
  message_id bigint PRIMARY KEY, epoch bigint NOT NULL, owner_node text NOT NULL,
  lease_expires_at timestamptz NOT NULL)
  WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX ON q.leases (lease_expires_at);
-- Written again so that the fillfactor applies to them.
TRUNCATE q.messages RESTART IDENTITY;
INSERT INTO q.messages (run_id, item_id, stage, payload)
  SELECT 1, g, 1, '{"n": 1}' FROM generate_series(1, :items) g;
INSERT INTO q.ready (id, stage, available_at) SELECT id, stage, available_at FROM q.messages;
VACUUM ANALYZE q.messages;
VACUUM ANALYZE q.ready;
