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

-- Only a key's head is ever due. Its later deliveries are written waiting (pending, next_attempt_at = infinity,
-- outside the claim's index range), so a claim never walks the rows queued behind a failing head; when the head
-- is delivered or dead, this promotes the key's next delivery (due now, or left parked on a disabled endpoint).
-- An AFTER trigger: it runs at the end of the statement that resolved the head, seeing every row committed by
-- then. Rows of the key committed later by another session are covered by promoteHeads (src/db/ordering.ts),
-- which fan-out runs after each insert and the outcome writer and sweep after each resolution they commit.
CREATE OR REPLACE FUNCTION webhooks.promote_next_in_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE webhooks.deliveries d SET next_attempt_at = now(), updated_at = now()
  WHERE d.id = (SELECT h.id FROM webhooks.deliveries h
                WHERE h.endpoint_id = OLD.endpoint_id AND h.ordering_key = OLD.ordering_key
                  AND h.status IN ('pending', 'delivering')
                ORDER BY h.order_lsn, h.outbox_id LIMIT 1)
    AND d.status = 'pending' AND d.next_attempt_at = 'infinity'
    AND EXISTS (SELECT 1 FROM webhooks.endpoints ep WHERE ep.id = d.endpoint_id AND ep.enabled);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS deliveries_promote_next_in_key ON webhooks.deliveries;
CREATE TRIGGER deliveries_promote_next_in_key
  AFTER UPDATE OF status ON webhooks.deliveries
  FOR EACH ROW WHEN (OLD.ordering_key IS NOT NULL AND OLD.status IN ('pending', 'delivering')
                     AND NEW.status IN ('delivered', 'dead'))
  EXECUTE FUNCTION webhooks.promote_next_in_key();

-- Enabling an endpoint releases its parked deliveries, but of an ordered key only the head: the rest keep
-- waiting for their turn.
CREATE OR REPLACE FUNCTION webhooks.park_or_release_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.enabled THEN
    UPDATE webhooks.deliveries d SET next_attempt_at = now(), updated_at = now()
    WHERE d.endpoint_id = NEW.id AND d.status = 'pending' AND d.next_attempt_at = 'infinity'
      AND (d.ordering_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM webhooks.deliveries h
        WHERE h.endpoint_id = d.endpoint_id AND h.ordering_key = d.ordering_key
          AND h.status IN ('pending', 'delivering')
          AND (h.order_lsn, h.outbox_id) < (d.order_lsn, d.outbox_id)));
  ELSE
    UPDATE webhooks.deliveries SET next_attempt_at = 'infinity', updated_at = now()
    WHERE endpoint_id = NEW.id AND status = 'pending';
  END IF;
  RETURN NULL;
END
$$;

-- A keyed delivery always has its place in the order (a NULL would compare as unknown and hold nothing back).
ALTER TABLE webhooks.deliveries DROP CONSTRAINT IF EXISTS deliveries_ordered_have_a_place;
ALTER TABLE webhooks.deliveries ADD CONSTRAINT deliveries_ordered_have_a_place
  CHECK (ordering_key IS NULL OR order_lsn IS NOT NULL) NOT VALID;
