SET lock_timeout = '5s';

-- The application's side (issue 13): webhooks.emit(), tenants, idempotency keys that outlive retention, a
-- per-tenant endpoint cap, a consecutive-failure streak, and operational events (relay.*) through the outbox.
-- Idempotent: columns and tables IF NOT EXISTS, every constraint, function and trigger dropped or replaced by name.
--
-- New CHECK constraints on existing tables are NOT VALID: their columns are new (all NULL), so there is nothing
-- to validate, and validating would read the whole outbox while this transaction holds its ACCESS EXCLUSIVE lock.
-- NOT VALID constraints are still enforced on every insert and update.

-- ---- columns ---------------------------------------------------------------------------------------------------

ALTER TABLE webhooks.outbox
  ADD COLUMN IF NOT EXISTS tenant text,
  ADD COLUMN IF NOT EXISTS ordering_key text,
  ADD COLUMN IF NOT EXISTS traceparent text;

ALTER TABLE webhooks.endpoints
  ADD COLUMN IF NOT EXISTS tenant text,
  -- Set by the relay: failed attempts since the last success (AUTO_DISABLE_AFTER_FAILURES); 0 while healthy.
  ADD COLUMN IF NOT EXISTS consecutive_failures integer NOT NULL DEFAULT 0;

-- W3C trace context, version 00 exactly (55 characters), or a later version with its 00 prefix fields; the
-- all-zero trace and parent ids and version ff are invalid. The CASE keeps the substr tests off bad input.
CREATE OR REPLACE FUNCTION webhooks.is_traceparent(value text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN value ~ '^(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}|[0-9a-e][0-9a-f]-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[!-~]*)?)$'
                   AND length(value) <= 512
              THEN substr(value, 4, 32) <> repeat('0', 32) AND substr(value, 37, 16) <> repeat('0', 16)
              ELSE false END
$$;

ALTER TABLE webhooks.outbox DROP CONSTRAINT IF EXISTS outbox_tenant_1_to_255_chars;
ALTER TABLE webhooks.outbox ADD CONSTRAINT outbox_tenant_1_to_255_chars
  CHECK (length(tenant) BETWEEN 1 AND 255) NOT VALID;
ALTER TABLE webhooks.outbox DROP CONSTRAINT IF EXISTS outbox_ordering_key_1_to_255_chars;
ALTER TABLE webhooks.outbox ADD CONSTRAINT outbox_ordering_key_1_to_255_chars
  CHECK (length(ordering_key) BETWEEN 1 AND 255) NOT VALID;
ALTER TABLE webhooks.outbox DROP CONSTRAINT IF EXISTS outbox_traceparent_must_be_w3c_trace_context;
ALTER TABLE webhooks.outbox ADD CONSTRAINT outbox_traceparent_must_be_w3c_trace_context
  CHECK (webhooks.is_traceparent(traceparent)) NOT VALID;
ALTER TABLE webhooks.endpoints DROP CONSTRAINT IF EXISTS endpoint_tenant_1_to_255_chars;
ALTER TABLE webhooks.endpoints ADD CONSTRAINT endpoint_tenant_1_to_255_chars
  CHECK (length(tenant) BETWEEN 1 AND 255) NOT VALID;

CREATE INDEX IF NOT EXISTS endpoints_tenant ON webhooks.endpoints (tenant);

-- ---- settings --------------------------------------------------------------------------------------------------

-- Knobs the database itself enforces (so they hold for SQL writes too, not only for the relay's commands).
CREATE TABLE IF NOT EXISTS webhooks.settings (
  key text PRIMARY KEY,
  value text NOT NULL,
  description text
);
ALTER TABLE webhooks.settings DROP CONSTRAINT IF EXISTS settings_max_endpoints_per_tenant_whole_number;
ALTER TABLE webhooks.settings ADD CONSTRAINT settings_max_endpoints_per_tenant_whole_number
  CHECK (key <> 'max_endpoints_per_tenant' OR value ~ '^[0-9]{1,9}$');
INSERT INTO webhooks.settings (key, value, description)
VALUES ('max_endpoints_per_tenant', '20', 'most endpoints one tenant may have (0 = no cap); endpoints without a tenant are not capped')
ON CONFLICT (key) DO NOTHING;

-- ---- tenants: an endpoint's tenant is fixed ----------------------------------------------------------------------
--
-- Its queued deliveries were fanned out to it because their events carry its tenant: moving the endpoint to
-- another tenant would send them across. A new endpoint for the other tenant is the way.
CREATE OR REPLACE FUNCTION webhooks.refuse_tenant_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE check_violation USING
    MESSAGE = format('webhooks.endpoints.tenant cannot change (endpoint %s belongs to %s)', OLD.id,
                     coalesce(quote_literal(OLD.tenant), 'no tenant')),
    HINT = 'its queued deliveries belong to that tenant: create a new endpoint for the other tenant, then delete this one',
    CONSTRAINT = 'endpoint_tenant_fixed';
END
$$;

DROP TRIGGER IF EXISTS endpoints_tenant_fixed ON webhooks.endpoints;
CREATE TRIGGER endpoints_tenant_fixed
  BEFORE UPDATE OF tenant ON webhooks.endpoints
  FOR EACH ROW WHEN (OLD.tenant IS DISTINCT FROM NEW.tenant)
  EXECUTE FUNCTION webhooks.refuse_tenant_change();

-- ---- tenants: the per-tenant endpoint cap ----------------------------------------------------------------------
--
-- A transaction-level advisory lock per tenant serialises inserts of one tenant's endpoints: two concurrent
-- inserts could otherwise each count cap - 1 and both go in. Under READ COMMITTED (the default) the count after
-- the lock sees what the previous holder committed. Endpoints without a tenant are the single-tenant default
-- and are not capped. SECURITY DEFINER: whoever inserts endpoints needs no rights on webhooks.settings.
CREATE OR REPLACE FUNCTION webhooks.enforce_endpoint_cap() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cap integer;
  held integer;
BEGIN
  SELECT value::integer INTO cap FROM webhooks.settings WHERE key = 'max_endpoints_per_tenant';
  cap := coalesce(cap, 20);
  IF cap = 0 THEN
    RETURN NEW;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('outbox-relay endpoints per tenant'), hashtext(NEW.tenant));
  SELECT count(*) INTO held FROM webhooks.endpoints WHERE tenant = NEW.tenant;
  IF held >= cap THEN
    RAISE check_violation USING
      MESSAGE = format('tenant %L already has %s endpoints, its cap (webhooks.settings max_endpoints_per_tenant = %s); '
                       'delete one, or raise the cap: UPDATE webhooks.settings SET value = ''%s'' WHERE key = ''max_endpoints_per_tenant''',
                       NEW.tenant, held, cap, cap * 2),
      CONSTRAINT = 'endpoints_per_tenant_cap';
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS endpoints_per_tenant_cap ON webhooks.endpoints;
CREATE TRIGGER endpoints_per_tenant_cap
  BEFORE INSERT ON webhooks.endpoints
  FOR EACH ROW WHEN (NEW.tenant IS NOT NULL)
  EXECUTE FUNCTION webhooks.enforce_endpoint_cap();

-- ---- tenants: a targeted event stays in its tenant -------------------------------------------------------------
--
-- Replaces 002's version: besides existing, the targeted endpoint must have the event's tenant (NULL = NULL).
CREATE OR REPLACE FUNCTION webhooks.require_outbox_endpoint() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  target_tenant text;
BEGIN
  SELECT ep.tenant INTO target_tenant FROM webhooks.endpoints ep WHERE ep.id = NEW.endpoint_id FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE foreign_key_violation USING
      MESSAGE = format('webhooks.outbox.endpoint_id %s is not an endpoint', NEW.endpoint_id),
      HINT = 'target an id from webhooks.endpoints, or leave endpoint_id NULL to fan out by event type';
  END IF;
  IF target_tenant IS DISTINCT FROM NEW.tenant THEN
    RAISE check_violation USING
      MESSAGE = format('webhooks.outbox: endpoint %s belongs to %s, the event to %s; an event never crosses tenants',
                       NEW.endpoint_id, coalesce('tenant ' || quote_literal(target_tenant), 'no tenant'),
                       coalesce('tenant ' || quote_literal(NEW.tenant), 'no tenant')),
      HINT = 'give the event the endpoint''s tenant, or target an endpoint of the event''s tenant',
      CONSTRAINT = 'outbox_endpoint_same_tenant';
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS outbox_endpoint_must_exist ON webhooks.outbox;
CREATE TRIGGER outbox_endpoint_must_exist
  BEFORE INSERT OR UPDATE OF endpoint_id, tenant ON webhooks.outbox
  FOR EACH ROW WHEN (NEW.endpoint_id IS NOT NULL)
  EXECUTE FUNCTION webhooks.require_outbox_endpoint();

-- ---- idempotency keys ------------------------------------------------------------------------------------------
--
-- One row per (tenant, key) ever used, kept by retention until max(RETENTION_DELIVERED, RETENTION_DEAD) after
-- its first use: at least as long as any delivery of that event is kept. Both ways of writing an event go
-- through it: webhooks.emit() returns the first event's id for a repeat, a plain INSERT with a repeated
-- idempotency_key is refused (SQLSTATE 23505, as the UNIQUE column it replaces did). NULL tenant is a scope of
-- its own: tenants are 1-255 characters, so coalesce(tenant, '') never collides with a real one.
-- outbox_id is NULL only inside the transaction that claimed the key, before its outbox row is inserted.
CREATE TABLE IF NOT EXISTS webhooks.idempotency_keys (
  tenant text,
  key text NOT NULL,
  outbox_id bigint,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS idempotency_keys_scope ON webhooks.idempotency_keys ((coalesce(tenant, '')), key);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON webhooks.idempotency_keys (created_at);

-- Keys already in the outbox (no tenants yet) become rows; then the global UNIQUE goes: keys are scoped by tenant.
INSERT INTO webhooks.idempotency_keys (tenant, key, outbox_id, created_at)
SELECT o.tenant, o.idempotency_key, o.id, o.created_at FROM webhooks.outbox o WHERE o.idempotency_key IS NOT NULL
ON CONFLICT DO NOTHING;
ALTER TABLE webhooks.outbox DROP CONSTRAINT IF EXISTS outbox_idempotency_key_key;

-- A plain INSERT with a key: records it, or refuses a repeat. A row emit() claimed in this same transaction
-- (outbox_id still NULL) is this insert's own claim and gets its id. A concurrent transaction's claim of the
-- same key makes ON CONFLICT wait for it: committed, it is a repeat; rolled back, the key is this insert's.
CREATE OR REPLACE FUNCTION webhooks.claim_idempotency_key() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
  first_id bigint;
BEGIN
  INSERT INTO webhooks.idempotency_keys AS k (tenant, key, outbox_id)
  VALUES (NEW.tenant, NEW.idempotency_key, NEW.id)
  ON CONFLICT ((coalesce(tenant, '')), key) DO UPDATE SET outbox_id = EXCLUDED.outbox_id WHERE k.outbox_id IS NULL;
  IF NOT FOUND THEN
    SELECT k.outbox_id INTO first_id FROM webhooks.idempotency_keys k
    WHERE coalesce(k.tenant, '') = coalesce(NEW.tenant, '') AND k.key = NEW.idempotency_key;
    RAISE unique_violation USING
      MESSAGE = format('idempotency_key %L was already used%s by outbox row %s', NEW.idempotency_key,
                       coalesce(' for tenant ' || quote_literal(NEW.tenant), ''), first_id),
      HINT = 'SELECT webhooks.emit(...) returns the first event''s id for a repeated key instead of failing',
      CONSTRAINT = 'idempotency_keys_scope';
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS outbox_claim_idempotency_key ON webhooks.outbox;
CREATE TRIGGER outbox_claim_idempotency_key
  BEFORE INSERT ON webhooks.outbox
  FOR EACH ROW WHEN (NEW.idempotency_key IS NOT NULL)
  EXECUTE FUNCTION webhooks.claim_idempotency_key();

-- ---- webhooks.emit() -------------------------------------------------------------------------------------------
--
-- The documented way to write an event, in the caller's transaction; returns the outbox id. A repeated
-- idempotency_key (same tenant) returns the first event's id, inserts nothing and never raises: the key is
-- claimed first with ON CONFLICT DO NOTHING, which waits for a concurrent transaction holding the same key
-- and then sees its committed row (or claims the key if that transaction rolled back). The loop covers a key
-- that retention removes between the two statements. Under REPEATABLE READ or SERIALIZABLE a race with a
-- concurrent first use ends in 40001 (retry the transaction), as any write conflict does there; never 23505.
-- SECURITY DEFINER: an application role needs EXECUTE on it and nothing on the tables (see `grants`).
CREATE OR REPLACE FUNCTION webhooks.emit(
  event_type text,
  payload jsonb,
  tenant text DEFAULT NULL,
  endpoint_id uuid DEFAULT NULL,
  idempotency_key text DEFAULT NULL,
  ordering_key text DEFAULT NULL,
  traceparent text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
  new_id bigint;
BEGIN
  IF emit.idempotency_key IS NOT NULL THEN
    LOOP
      INSERT INTO webhooks.idempotency_keys (tenant, key) VALUES (emit.tenant, emit.idempotency_key)
      ON CONFLICT ((coalesce(tenant, '')), key) DO NOTHING;
      EXIT WHEN FOUND; -- claimed: the insert below fills in its outbox id (claim_idempotency_key)
      SELECT k.outbox_id INTO new_id FROM webhooks.idempotency_keys k
      WHERE coalesce(k.tenant, '') = coalesce(emit.tenant, '') AND k.key = emit.idempotency_key;
      IF FOUND THEN
        RETURN new_id;
      END IF;
    END LOOP;
  END IF;
  INSERT INTO webhooks.outbox AS o (event_type, payload, tenant, endpoint_id, idempotency_key, ordering_key, traceparent)
  VALUES (emit.event_type, emit.payload, emit.tenant, emit.endpoint_id, emit.idempotency_key, emit.ordering_key,
          emit.traceparent)
  RETURNING o.id INTO new_id;
  RETURN new_id;
END
$$;

REVOKE EXECUTE ON FUNCTION webhooks.emit(text, jsonb, text, uuid, text, text, text) FROM PUBLIC;

-- ---- failing streak --------------------------------------------------------------------------------------------
--
-- Enabling an endpoint, whoever does it (the endpoints command, the console, plain SQL), starts it afresh: with
-- the old streak left in place the first failure would disable it again.
CREATE OR REPLACE FUNCTION webhooks.clear_streak_on_enable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.failing_since := NULL;
  NEW.consecutive_failures := 0;
  NEW.disabled_reason := NULL;
  NEW.disabled_at := NULL;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS endpoints_clear_streak_on_enable ON webhooks.endpoints;
CREATE TRIGGER endpoints_clear_streak_on_enable
  BEFORE UPDATE OF enabled ON webhooks.endpoints
  FOR EACH ROW WHEN (NOT OLD.enabled AND NEW.enabled)
  EXECUTE FUNCTION webhooks.clear_streak_on_enable();

-- ---- operational events ----------------------------------------------------------------------------------------
--
-- relay.endpoint.disabled and relay.delivery.dead are outbox rows like any other (signed, retried, fanned out),
-- under the tenant of the endpoint concerned, with `endpoint_id` in the payload. Fan-out (the `subscribes`
-- fragment in src/db/fragments.ts) sends a relay.* event only to endpoints of that tenant that list its type (or
-- 'relay.*') in event_types, never to event_types NULL, never to the endpoint it is about. An event no endpoint
-- would receive is not written at all. These functions run as their owner: the relay's role needs EXECUTE on
-- the two it calls, not INSERT on the outbox.

CREATE OR REPLACE FUNCTION webhooks.has_operational_subscriber(tenant text, event_type text, about uuid)
RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT EXISTS (
    SELECT 1 FROM webhooks.endpoints ep
    WHERE ep.tenant IS NOT DISTINCT FROM $1 AND ep.id <> $3 AND ep.event_types && ARRAY[$2, 'relay.*'])
$$;

-- Whoever disables an endpoint (the relay on 410 or a failing streak, an operator, plain SQL), its tenant's
-- operational endpoints hear of it, with the reason recorded (NULL when the UPDATE gave none).
CREATE OR REPLACE FUNCTION webhooks.report_endpoint_disabled() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF webhooks.has_operational_subscriber(NEW.tenant, 'relay.endpoint.disabled', NEW.id) THEN
    INSERT INTO webhooks.outbox (event_type, tenant, payload)
    VALUES ('relay.endpoint.disabled', NEW.tenant, jsonb_build_object(
      'endpoint_id', NEW.id,
      'tenant', NEW.tenant,
      'description', NEW.description,
      'reason', NEW.disabled_reason,
      'disabled_at', coalesce(NEW.disabled_at, now()),
      'failing_since', NEW.failing_since,
      'consecutive_failures', NEW.consecutive_failures));
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS endpoints_report_disabled ON webhooks.endpoints;
CREATE TRIGGER endpoints_report_disabled
  AFTER UPDATE OF enabled ON webhooks.endpoints
  FOR EACH ROW WHEN (OLD.enabled AND NOT NEW.enabled)
  EXECUTE FUNCTION webhooks.report_endpoint_disabled();

-- Coalescing of relay.delivery.dead, per endpoint: the first dead delivery is reported at once; later ones are
-- held (counted, the latest 10 kept) until a minute has passed since the last report, then reported together
-- by the next death or by the sweep's flush. So at most one event per endpoint per minute, and every death is
-- counted in exactly one event (`count`).
CREATE TABLE IF NOT EXISTS webhooks.dead_notices (
  endpoint_id uuid PRIMARY KEY,
  sent_at timestamptz NOT NULL DEFAULT '-infinity', -- the last relay.delivery.dead about this endpoint
  held integer NOT NULL DEFAULT 0,                   -- dead deliveries since then, not reported yet
  latest jsonb NOT NULL DEFAULT '[]'                 -- the latest (at most 10) of them, oldest first
);

-- The event for `held` deaths of `endpoint`: the newest one's fields at the top level (endpoint, outbox id, last
-- status and error), `count`, and the latest few in `deliveries`.
CREATE OR REPLACE FUNCTION webhooks.write_dead_notice(endpoint uuid, tenant text, held integer, latest jsonb)
RETURNS void
LANGUAGE sql AS $$
  INSERT INTO webhooks.outbox (event_type, tenant, payload)
  VALUES ('relay.delivery.dead', $2,
          coalesce($4 -> -1, '{}') || jsonb_build_object('endpoint_id', $1, 'tenant', $2, 'count', $3, 'deliveries', $4))
$$;

-- Called by the relay with the deliveries a statement of its own just made dead: a JSON array of
-- {delivery_id, endpoint_id, outbox_id, attempts, status_code, error}. Returns how many events it wrote.
-- Deaths of operational events themselves are not reported (two failing operational endpoints would
-- otherwise report each other's deaths forever).
CREATE OR REPLACE FUNCTION webhooks.report_dead_deliveries(dead jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  g record;
  n webhooks.dead_notices;
  written integer := 0;
BEGIN
  FOR g IN
    SELECT x.endpoint_id, ep.tenant, count(*)::int AS dead,
           jsonb_agg(jsonb_build_object(
             'delivery_id', x.delivery_id::text, 'outbox_id', x.outbox_id::text, 'event_type', o.event_type,
             'attempts', x.attempts, 'last_status_code', x.status_code, 'last_error', x.error)
             ORDER BY x.delivery_id) AS items
    FROM jsonb_to_recordset(dead)
      AS x(delivery_id bigint, endpoint_id uuid, outbox_id bigint, attempts integer, status_code integer, error text)
    JOIN webhooks.endpoints ep ON ep.id = x.endpoint_id
    LEFT JOIN webhooks.outbox o ON o.id = x.outbox_id
    WHERE o.event_type IS NULL OR o.event_type NOT LIKE 'relay.%'
    GROUP BY x.endpoint_id, ep.tenant
    ORDER BY x.endpoint_id -- notices locked in one order: concurrent writers never deadlock on them
  LOOP
    CONTINUE WHEN NOT webhooks.has_operational_subscriber(g.tenant, 'relay.delivery.dead', g.endpoint_id);
    INSERT INTO webhooks.dead_notices (endpoint_id) VALUES (g.endpoint_id) ON CONFLICT DO NOTHING;
    SELECT * INTO n FROM webhooks.dead_notices WHERE endpoint_id = g.endpoint_id FOR UPDATE;
    n.held := n.held + g.dead;
    SELECT coalesce(jsonb_agg(e ORDER BY i), '[]') INTO n.latest
    FROM jsonb_array_elements(n.latest || g.items) WITH ORDINALITY AS a(e, i)
    WHERE i > jsonb_array_length(n.latest || g.items) - 10;
    IF n.sent_at <= now() - interval '1 minute' THEN
      PERFORM webhooks.write_dead_notice(g.endpoint_id, g.tenant, n.held, n.latest);
      UPDATE webhooks.dead_notices SET sent_at = now(), held = 0, latest = '[]' WHERE endpoint_id = g.endpoint_id;
      written := written + 1;
    ELSE
      UPDATE webhooks.dead_notices SET held = n.held, latest = n.latest WHERE endpoint_id = g.endpoint_id;
    END IF;
  END LOOP;
  RETURN written;
END
$$;

-- Called by the sweep every SWEEP_INTERVAL: reports what was held once its minute is over, and forgets
-- notices with nothing held past their minute (the next death is then reported at once, as it would be anyway).
CREATE OR REPLACE FUNCTION webhooks.flush_dead_notices() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n record;
  written integer := 0;
BEGIN
  FOR n IN
    SELECT d.endpoint_id, d.held, d.latest, ep.id IS NOT NULL AS endpoint_exists, ep.tenant
    FROM webhooks.dead_notices d LEFT JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
    WHERE d.sent_at <= now() - interval '1 minute'
    ORDER BY d.endpoint_id
    FOR UPDATE OF d SKIP LOCKED
  LOOP
    IF n.held > 0 AND n.endpoint_exists THEN
      PERFORM webhooks.write_dead_notice(n.endpoint_id, n.tenant, n.held, n.latest);
      UPDATE webhooks.dead_notices SET sent_at = now(), held = 0, latest = '[]' WHERE endpoint_id = n.endpoint_id;
      written := written + 1;
    ELSE
      DELETE FROM webhooks.dead_notices WHERE endpoint_id = n.endpoint_id;
    END IF;
  END LOOP;
  RETURN written;
END
$$;

REVOKE EXECUTE ON FUNCTION webhooks.report_dead_deliveries(jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION webhooks.flush_dead_notices() FROM PUBLIC;
