SET lock_timeout = '5s';

-- Per-key ordering (README "Ordering"). An ordered endpoint receives the events that share an ordering key in
-- commit order: the next is not attempted before the previous one is delivered or dead.
ALTER TABLE webhooks.endpoints ADD COLUMN IF NOT EXISTS ordered boolean NOT NULL DEFAULT false;

-- A delivery to an ordered endpoint of an event with a key carries that key and its place in commit order: the
-- commit LSN of the event's transaction (then the outbox id within it). NULL key: unordered, as every other
-- delivery. A replay clears the key: the old event goes out as the replay it is, and holds nothing back.
ALTER TABLE webhooks.deliveries ADD COLUMN IF NOT EXISTS ordering_key text;
ALTER TABLE webhooks.deliveries ADD COLUMN IF NOT EXISTS order_lsn pg_lsn;

-- The unresolved deliveries of each (endpoint, key), in order: a claim asks it whether a row is its key's head
-- (no earlier one pending or delivering). Partial: unordered and finished rows never enter it.
CREATE INDEX IF NOT EXISTS deliveries_ordered_unresolved
  ON webhooks.deliveries (endpoint_id, ordering_key, order_lsn, outbox_id)
  WHERE ordering_key IS NOT NULL AND status IN ('pending', 'delivering');
