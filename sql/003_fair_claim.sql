SET lock_timeout = '5s';

-- Claims go endpoint by endpoint (round-robin, each within its fair share) instead of globally oldest-first, so
-- one endpoint's backlog never hides another's due rows. This index serves both steps of that claim: the loose
-- scan over the endpoints that have pending rows, and each endpoint's oldest due rows. Partial, like the queue
-- index: rows inserted already claimed never enter it.
CREATE INDEX IF NOT EXISTS deliveries_pending_by_endpoint
  ON webhooks.deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';

-- The global queue index served the oldest-first claim. Kept beside the per-endpoint one, the planner preferred it
-- for one endpoint's due rows and walked every older row of every other endpoint first, per claim; and every
-- pending row paid for two index entries. The oldest-due gauge reads the per-endpoint index too.
DROP INDEX IF EXISTS webhooks.deliveries_pending_due;
