-- The split schema kept in step by triggers instead of by each statement: every write to messages
-- stays as it is, statement-level triggers (transition tables) add and remove the ready and lease
-- rows, and only the claim reads q.ready. Measured to show what the triggers cost.
\ir current.sql
DROP INDEX q.messages_claim_idx, q.messages_lease_idx, q.messages_dead_idx, q.messages_done_idx,
  q.messages_dead_letters_idx;
ALTER TABLE q.messages SET (fillfactor = 70);
CREATE TABLE q.ready (id bigint PRIMARY KEY, stage int NOT NULL, available_at timestamptz NOT NULL)
  WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX ON q.ready (stage, available_at, id);
CREATE TABLE q.leases (id bigint PRIMARY KEY, lease_expires_at timestamptz NOT NULL)
  WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX ON q.leases (lease_expires_at);
CREATE FUNCTION q.index_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO q.ready SELECT id, stage, available_at FROM n WHERE state = 'ready';
  INSERT INTO q.leases SELECT id, lease_expires_at FROM n WHERE state = 'running';
  RETURN NULL;
END $$;
CREATE FUNCTION q.index_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM q.ready r USING o WHERE r.id = o.id AND o.state = 'ready';
  DELETE FROM q.leases l USING o WHERE l.id = o.id AND o.state = 'running';
  INSERT INTO q.ready SELECT id, stage, available_at FROM n WHERE state = 'ready';
  INSERT INTO q.leases SELECT id, lease_expires_at FROM n WHERE state = 'running';
  RETURN NULL;
END $$;
CREATE TRIGGER messages_indexed_i AFTER INSERT ON q.messages REFERENCING NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION q.index_inserted();
CREATE TRIGGER messages_indexed_u AFTER UPDATE ON q.messages REFERENCING OLD TABLE AS o NEW TABLE AS n
  FOR EACH STATEMENT EXECUTE FUNCTION q.index_updated();
TRUNCATE q.messages RESTART IDENTITY;
INSERT INTO q.messages (run_id, item_id, stage, payload)
  SELECT 1, g, 1, '{"n": 1}' FROM generate_series(1, :items) g;
VACUUM ANALYZE q.messages;
VACUUM ANALYZE q.ready;
