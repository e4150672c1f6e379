SET lock_timeout = '5s';

-- Per-endpoint limits (max_in_flight, rate_limit_per_second, ENDPOINT_CONCURRENCY) and the circuit breaker hold
-- for the whole cluster, coordinated through these two tables (src/limits/). No statement per delivery: each
-- relay runs one poll statement a second, and writes a breaker row only on a transition.

-- Live relays. Each relay upserts its row on every poll (expires_at moves forward by CLUSTER_LEASE) and deletes it
-- when it stops; a crashed relay's row simply expires. Every relay splits each endpoint's limits between the
-- relays whose rows are live, so a dead relay's share comes back when its row expires.
CREATE TABLE IF NOT EXISTS webhooks.relays (
  owner text PRIMARY KEY,
  worker_id text NOT NULL,
  joined_at timestamptz NOT NULL DEFAULT now(),
  seen_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);

-- The shared circuit breaker of an endpoint. No row, or state 'closed': deliveries go out. 'open': nobody sends
-- until open_until (database clock) and claims skip the endpoint. After open_until one relay takes the probe by
-- compare-and-set ('half-open', probe_owner, probe_until), sends one delivery and closes or reopens the breaker;
-- a probe whose owner died is taken over after probe_until.
CREATE TABLE IF NOT EXISTS webhooks.endpoint_breakers (
  endpoint_id uuid PRIMARY KEY REFERENCES webhooks.endpoints (id) ON DELETE CASCADE,
  state text NOT NULL CONSTRAINT endpoint_breaker_state CHECK (state IN ('closed', 'open', 'half-open')),
  open_until timestamptz,
  probe_owner text,
  probe_until timestamptz,
  opened_by text,
  opened_at timestamptz,
  opens integer NOT NULL DEFAULT 0,
  changed_at timestamptz NOT NULL DEFAULT now()
);

-- The poll and the claim read only breakers that are not closed.
CREATE INDEX IF NOT EXISTS endpoint_breakers_not_closed ON webhooks.endpoint_breakers (endpoint_id)
  WHERE state <> 'closed';
