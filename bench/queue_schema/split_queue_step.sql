-- The same claim and completion as current_step.sql on the split schema: the claim deletes ready
-- rows and inserts leases; the completion is fenced by deleting the lease of the claimed epoch.
\set s random(1, :stages)
SET enable_hashjoin = off; SET enable_mergejoin = off;
CREATE TEMP TABLE IF NOT EXISTS claimed (id bigint, epoch bigint, item_id bigint, started_at timestamptz);
BEGIN;
WITH picked AS (
  DELETE FROM q.ready r WHERE r.ctid = ANY(ARRAY(
    SELECT ctid FROM q.ready WHERE stage = :s AND available_at <= now()
    ORDER BY available_at, id LIMIT 256 FOR UPDATE SKIP LOCKED))
  RETURNING r.id),
claim AS (
  UPDATE q.messages m SET state = 'running', attempt = m.attempt + 1, epoch = m.epoch + 1,
    owner_node = 'n1', started_at = now(), heartbeat_at = now(),
    lease_expires_at = now() + interval '30 s'
  FROM picked WHERE m.id = picked.id
  RETURNING m.id, m.epoch, m.item_id, m.started_at, m.lease_expires_at),
lease AS (INSERT INTO q.leases SELECT id, epoch, 'n1', lease_expires_at FROM claim)
INSERT INTO claimed SELECT id, epoch, item_id, started_at FROM claim;
COMMIT;
BEGIN;
WITH fence AS (
  DELETE FROM q.leases l USING claimed c WHERE l.message_id = c.id AND l.epoch = c.epoch
  RETURNING l.message_id),
done AS (
  UPDATE q.messages m SET state = 'done', finished_at = clock_timestamp(), outcome = 'ok',
    output = '{"o": 1}', lease_expires_at = NULL, heartbeat_at = NULL
  FROM fence WHERE m.id = fence.message_id
  RETURNING m.id, m.item_id, m.stage, m.epoch, m.attempt, m.started_at),
attempt AS (
  INSERT INTO q.attempts (message_id, item_id, run_id, stage, attempt, epoch, node, started_at,
                          finished_at, result, outcome)
  SELECT id, item_id, 1, stage, attempt, epoch, 'n1', started_at, clock_timestamp(), 'completed', 'ok'
  FROM done),
handoff AS (
  INSERT INTO q.messages (run_id, item_id, stage, payload, parent_id)
  SELECT 1, item_id, stage + 1, NULL, id FROM done WHERE stage < :stages
  RETURNING id, stage, available_at)
INSERT INTO q.ready SELECT id, stage, available_at FROM handoff;
DELETE FROM claimed;
COMMIT;
