SET lock_timeout = '5s';

-- Hardening (issue 15). Idempotent: every constraint, function and trigger is dropped or replaced by name.

-- ---- rate_limit_per_second: bounded ---------------------------------------------------------------------------
--
-- The scheduler spaces an endpoint's requests 1000 / rate ms apart with a timer. Below ~5e-7 that exceeds what
-- setTimeout takes (2^31-1 ms), the timer fires at once, and the endpoint's jobs never start while their leases
-- are renewed forever. 0.001 (one request per 1000 s, a 1e6 ms timer) keeps it three orders of magnitude clear;
-- 10000/s (a 0.1 ms spacing) is beyond what one endpoint is ever sent. Rows outside the range are clamped to it
-- first: below the minimum they were stuck anyway, so the nearest working value is what their owner meant.
UPDATE webhooks.endpoints
SET rate_limit_per_second = least(greatest(rate_limit_per_second, 0.001), 10000), updated_at = now()
WHERE rate_limit_per_second < 0.001 OR rate_limit_per_second > 10000;

ALTER TABLE webhooks.endpoints DROP CONSTRAINT IF EXISTS endpoint_rate_limit_positive;
ALTER TABLE webhooks.endpoints DROP CONSTRAINT IF EXISTS endpoint_rate_limit_per_second_between_0_001_and_10000;
ALTER TABLE webhooks.endpoints ADD CONSTRAINT endpoint_rate_limit_per_second_between_0_001_and_10000
  CHECK (rate_limit_per_second BETWEEN 0.001 AND 10000);

-- ---- deleting an endpoint keeps its delivery history -----------------------------------------------------------
--
-- Nothing is deleted except by the retention job: deleting an endpoint used to cascade to its deliveries (and
-- their attempt log). Now the deliveries keep their endpoint_id (no foreign key, so the id outlives the row and
-- `deliveries list --endpoint ID` still finds them); the open ones end `dead` with last_error 'endpoint deleted';
-- retention removes them later like any dead delivery. Why not ON DELETE SET NULL: the history would lose which
-- endpoint it was for, and endpoint_id would turn nullable for every reader.
--
-- What the foreign keys did besides, kept by triggers:
-- - a delivery is never inserted for an endpoint that does not exist: fan-out and repair racing a delete skip
--   that endpoint. The endpoint row is locked FOR KEY SHARE as the foreign key check did, so a concurrent delete
--   waits for the insert to commit, and its trigger then sees (and ends) the new row. No open delivery of a
--   missing endpoint ever exists, so the claim, the sweep and the outcome writes never meet one.
-- - an outbox row naming an endpoint_id that does not exist is refused (SQLSTATE 23503, as before). An outbox
--   row whose endpoint is deleted later no longer blocks the delete: that event simply has no one to go to.
-- The trigger functions run as their owner (SECURITY DEFINER, fixed search_path), as the foreign keys' checks
-- and actions did: an application role that may insert outbox rows or delete endpoints needs no rights on
-- webhooks.deliveries, nor UPDATE on webhooks.endpoints for the FOR KEY SHARE lock.
-- delivery_attempts keeps its ON DELETE CASCADE to deliveries: only retention deletes deliveries, and their
-- attempt log goes with them.

ALTER TABLE webhooks.deliveries DROP CONSTRAINT IF EXISTS deliveries_endpoint_id_fkey;
ALTER TABLE webhooks.outbox DROP CONSTRAINT IF EXISTS outbox_endpoint_id_fkey;

CREATE OR REPLACE FUNCTION webhooks.end_deliveries_of_deleted_endpoint() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE webhooks.deliveries
  SET status = 'dead', last_error = 'endpoint deleted', lease_owner = NULL, lease_until = NULL, updated_at = now()
  WHERE endpoint_id = OLD.id AND status IN ('pending', 'delivering');
  RETURN OLD;
END
$$;

DROP TRIGGER IF EXISTS endpoints_end_deliveries_on_delete ON webhooks.endpoints;
CREATE TRIGGER endpoints_end_deliveries_on_delete
  BEFORE DELETE ON webhooks.endpoints
  FOR EACH ROW EXECUTE FUNCTION webhooks.end_deliveries_of_deleted_endpoint();

-- TRUNCATE fires no row triggers (and the foreign keys used to refuse it): end every open delivery.
CREATE OR REPLACE FUNCTION webhooks.end_deliveries_of_truncated_endpoints() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE webhooks.deliveries
  SET status = 'dead', last_error = 'endpoint deleted', lease_owner = NULL, lease_until = NULL, updated_at = now()
  WHERE status IN ('pending', 'delivering');
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS endpoints_end_deliveries_on_truncate ON webhooks.endpoints;
CREATE TRIGGER endpoints_end_deliveries_on_truncate
  BEFORE TRUNCATE ON webhooks.endpoints
  FOR EACH STATEMENT EXECUTE FUNCTION webhooks.end_deliveries_of_truncated_endpoints();

CREATE OR REPLACE FUNCTION webhooks.skip_delivery_of_missing_endpoint() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM 1 FROM webhooks.endpoints WHERE id = NEW.endpoint_id FOR KEY SHARE;
  IF NOT FOUND THEN
    RETURN NULL; -- deleted meanwhile: nothing to deliver to
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS deliveries_need_endpoint ON webhooks.deliveries;
CREATE TRIGGER deliveries_need_endpoint
  BEFORE INSERT ON webhooks.deliveries
  FOR EACH ROW EXECUTE FUNCTION webhooks.skip_delivery_of_missing_endpoint();

CREATE OR REPLACE FUNCTION webhooks.require_outbox_endpoint() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM 1 FROM webhooks.endpoints WHERE id = NEW.endpoint_id FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE foreign_key_violation USING
      MESSAGE = format('webhooks.outbox.endpoint_id %s is not an endpoint', NEW.endpoint_id),
      HINT = 'target an id from webhooks.endpoints, or leave endpoint_id NULL to fan out by event type';
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS outbox_endpoint_must_exist ON webhooks.outbox;
CREATE TRIGGER outbox_endpoint_must_exist
  BEFORE INSERT OR UPDATE OF endpoint_id ON webhooks.outbox
  FOR EACH ROW WHEN (NEW.endpoint_id IS NOT NULL)
  EXECUTE FUNCTION webhooks.require_outbox_endpoint();
