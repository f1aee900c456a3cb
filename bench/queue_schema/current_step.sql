-- One claim of up to 256 messages of a random stage, then their completion with attempt rows and
-- the handoff to the next stage: two transactions, as a pump and the node's writer run them.
\set s random(1, :stages)
SET enable_hashjoin = off; SET enable_mergejoin = off;
CREATE TEMP TABLE IF NOT EXISTS claimed (id bigint, epoch bigint, item_id bigint, started_at timestamptz);
BEGIN;
WITH picked AS (
  SELECT id FROM q.messages WHERE stage = :s AND state = 'ready' AND available_at <= now()
  ORDER BY available_at, id LIMIT 256 FOR NO KEY UPDATE SKIP LOCKED),
claim AS (
  UPDATE q.messages m SET state = 'running', attempt = m.attempt + 1, epoch = m.epoch + 1,
    owner_node = 'n1', started_at = now(), heartbeat_at = now(),
    lease_expires_at = now() + interval '30 s'
  FROM picked WHERE m.id = picked.id RETURNING m.id, m.epoch, m.item_id, m.started_at)
INSERT INTO claimed SELECT * FROM claim;
COMMIT;
BEGIN;
WITH fence AS MATERIALIZED (SELECT id, epoch FROM claimed),
done AS (
  UPDATE q.messages m SET state = 'done', finished_at = clock_timestamp(), outcome = 'ok',
    output = '{"o": 1}', lease_expires_at = NULL, heartbeat_at = NULL
  FROM fence WHERE m.id = fence.id AND m.epoch = fence.epoch
  RETURNING m.id, m.item_id, m.stage, m.epoch, m.attempt, m.started_at),
attempt AS (
  INSERT INTO q.attempts (message_id, item_id, run_id, stage, attempt, epoch, node, started_at,
                          finished_at, result, outcome)
  SELECT id, item_id, 1, stage, attempt, epoch, 'n1', started_at, clock_timestamp(), 'completed', 'ok'
  FROM done)
INSERT INTO q.messages (run_id, item_id, stage, payload, parent_id)
  SELECT 1, item_id, stage + 1, NULL, id FROM done WHERE stage < :stages;
DELETE FROM claimed;
COMMIT;
