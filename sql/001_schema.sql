SET lock_timeout = '5s';

-- Applications write webhooks.endpoints and webhooks.outbox; the relay owns the rest.

-- Standard Webhooks secrets: whsec_ + base64 of 24-64 random bytes. The CASE keeps decode() away from bad input.
CREATE OR REPLACE FUNCTION webhooks.is_webhook_secret(secret text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN secret ~ '^whsec_([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
              THEN length(decode(substr(secret, 7), 'base64')) BETWEEN 24 AND 64
              ELSE false END
$$;

CREATE TABLE IF NOT EXISTS webhooks.endpoints (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  url text NOT NULL
    CONSTRAINT endpoint_url_must_be_http_or_https CHECK (url ~* '^https?://[^/?#]+'),
  secret text NOT NULL
    CONSTRAINT endpoint_secret_must_be_whsec_base64_of_24_to_64_bytes CHECK (webhooks.is_webhook_secret(secret)),
  event_types text[], -- NULL = every event type
  enabled boolean NOT NULL DEFAULT true,
  description text,
  -- Secret rotation: while previous_secret_expires_at is in the future, requests carry both signatures.
  previous_secret text
    CONSTRAINT endpoint_previous_secret_must_be_whsec_base64_of_24_to_64_bytes
    CHECK (webhooks.is_webhook_secret(previous_secret)),
  previous_secret_expires_at timestamptz,
  -- Per-endpoint limits; NULL = the relay's ENDPOINT_CONCURRENCY, and no rate limit.
  max_in_flight integer CONSTRAINT endpoint_max_in_flight_1_to_10000 CHECK (max_in_flight BETWEEN 1 AND 10000),
  rate_limit_per_second real CONSTRAINT endpoint_rate_limit_positive CHECK (rate_limit_per_second > 0),
  -- Set by the relay: first failure of the current failing streak (NULL while healthy); why and when disabled.
  failing_since timestamptz,
  disabled_reason text,
  disabled_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT endpoint_previous_secret_needs_expiry
    CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);

CREATE TABLE IF NOT EXISTS webhooks.outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_type text NOT NULL
    CONSTRAINT outbox_event_type_must_be_1_to_255_chars CHECK (length(event_type) BETWEEN 1 AND 255),
  payload jsonb NOT NULL,
  endpoint_id uuid REFERENCES webhooks.endpoints (id), -- set: deliver to that endpoint only, no fan-out
  idempotency_key text UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per event x endpoint.
--
--   pending --claim--> delivering --2xx--> delivered
--      ^                   |
--      +---- failure ------+----- last attempt failed --> dead
--      +---- lease expired (sweep) / released at shutdown
--
-- outbox_id has no foreign key on purpose: the replication stream can show a committed outbox row a moment
-- before other sessions see it, and the fan-out insert must not fail (or be dropped) because of that.
CREATE TABLE IF NOT EXISTS webhooks.deliveries (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  outbox_id bigint NOT NULL,
  endpoint_id uuid NOT NULL REFERENCES webhooks.endpoints (id) ON DELETE CASCADE,
  status text NOT NULL DEFAULT 'pending'
    CONSTRAINT delivery_status_known CHECK (status IN ('pending', 'delivering', 'delivered', 'dead')),
  attempts integer NOT NULL DEFAULT 0, -- incremented at claim time, so a delivery that crashes relays still ends dead
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  lease_owner text,
  lease_until timestamptz,
  last_status_code integer,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz,
  CONSTRAINT deliveries_one_per_event_and_endpoint UNIQUE (outbox_id, endpoint_id)
);

CREATE INDEX IF NOT EXISTS deliveries_pending_due ON webhooks.deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_leases ON webhooks.deliveries (lease_until) WHERE status = 'delivering';
CREATE INDEX IF NOT EXISTS deliveries_endpoint ON webhooks.deliveries (endpoint_id);

-- One row per failed attempt (successes are recorded on the delivery itself).
CREATE TABLE IF NOT EXISTS webhooks.delivery_attempts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id bigint NOT NULL REFERENCES webhooks.deliveries (id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  status_code integer,
  error text NOT NULL,
  response_snippet text,
  duration_ms integer,
  worker_id text,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS delivery_attempts_delivery ON webhooks.delivery_attempts (delivery_id);

-- Parking: a disabled endpoint's pending deliveries wait at next_attempt_at = infinity, so the claim's index
-- range never walks them; enabling the endpoint makes them due at once. A trigger, so that it holds whoever
-- flips `enabled`: the relay (410, sustained failure), the operator commands, or the application's own SQL.
CREATE OR REPLACE FUNCTION webhooks.park_or_release_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.enabled THEN
    UPDATE webhooks.deliveries SET next_attempt_at = now(), updated_at = now()
    WHERE endpoint_id = NEW.id AND status = 'pending' AND next_attempt_at = 'infinity';
  ELSE
    UPDATE webhooks.deliveries SET next_attempt_at = 'infinity', updated_at = now()
    WHERE endpoint_id = NEW.id AND status = 'pending';
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS endpoints_park_deliveries ON webhooks.endpoints;
CREATE TRIGGER endpoints_park_deliveries
  AFTER UPDATE OF enabled ON webhooks.endpoints
  FOR EACH ROW WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled)
  EXECUTE FUNCTION webhooks.park_or_release_deliveries();
