// SQL pieces more than one stage shares: the rules they encode (who subscribes, when a row is due, what a job
// needs of its endpoint) must read the same everywhere. slonik fragments only: values stay bound parameters.
import { sql, type FragmentSqlToken } from 'slonik';

/**
 * A whole number written into the SQL text itself (`LIMIT '500'`), so the statement is always planned for that
 * value: a generic plan of the claim with `LIMIT $1` took 53 ms per claim (see DESIGN, traps).
 */
export function literalInt(n: number): FragmentSqlToken {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`expected a non-negative integer, got ${n}`);
  return sql.literalValue(String(n));
}

/** `ms` milliseconds before now, on the database clock (never the relay's). */
export const ago = (ms: number) => sql.fragment`now() - ${ms}::bigint * interval '1 millisecond'`;

/** A lease's end, on the database clock. */
export const leaseUntil = (leaseMs: number) => sql.fragment`now() + ${leaseMs}::int * interval '1 millisecond'`;

/**
 * When a pending delivery is next due: after `delay`, or never while its endpoint is disabled (parked; the
 * endpoints trigger makes it due when the endpoint is enabled). Keeps parked rows outside the claim's range.
 */
export const dueAfter = (endpointId: FragmentSqlToken, delay: FragmentSqlToken) => sql.fragment`
  CASE WHEN (SELECT ep.enabled FROM webhooks.endpoints ep WHERE ep.id = ${endpointId})
       THEN now() + ${delay} ELSE 'infinity'::timestamptz END`;

/** What a delivery needs of its endpoint `ep`, read when it is claimed so URL and secret changes apply at once. */
export const endpointColumns = sql.fragment`
  ep.url, ep.tenant,
  CASE WHEN ep.previous_secret_expires_at > now() THEN ARRAY[ep.secret, ep.previous_secret]
       ELSE ARRAY[ep.secret] END AS secrets,
  ep.max_in_flight AS "maxInFlight", ep.rate_limit_per_second AS "ratePerSecond"`;

/**
 * Which endpoints `ep` receive an event `ev` (with endpoint_id, event_type, tenant, about_endpoint). Never one
 * of another tenant (NULL matches only NULL), whatever the event types say. Then: the targeted endpoint; for an
 * operational event (relay.*), the endpoints that list its type or 'relay.*' (event_types NULL does not), except
 * the endpoint it is about (`about_endpoint`, its payload's endpoint_id); else every endpoint whose event_types
 * match (NULL = all). Disabled endpoints included: their deliveries are created parked (see `firstAttemptAt`)
 * and go out when the endpoint is enabled again, so an endpoint the relay disabled for a while (410, sustained
 * failure) misses nothing. Shared by fan-out and repair.
 */
export const subscribes = sql.fragment`ep.tenant IS NOT DISTINCT FROM ev.tenant AND CASE
  WHEN ev.endpoint_id IS NOT NULL THEN ep.id = ev.endpoint_id
  WHEN ev.event_type LIKE 'relay.%' THEN ep.event_types && ARRAY[ev.event_type, 'relay.*']
                                         AND ep.id IS DISTINCT FROM ev.about_endpoint
  ELSE ep.event_types IS NULL OR ev.event_type = ANY (ep.event_types) END`;

/** Due now for an enabled endpoint `ep`; parked (never due until enabled, see the endpoints trigger) otherwise. */
export const firstAttemptAt = sql.fragment`CASE WHEN ep.enabled THEN now() ELSE 'infinity'::timestamptz END`;

/**
 * Whether delivery `d` may be attempted now as far as ordering goes: it carries no ordering key, or it is its
 * key's head, with no earlier delivery of the same (endpoint, key) pending or delivering. Every claim of a
 * persisted row applies it, so at most one delivery per (endpoint, key) is claimed anywhere in the cluster;
 * the partial index deliveries_ordered_unresolved answers it.
 */
export const isHead = sql.fragment`(d.ordering_key IS NULL OR NOT EXISTS (
  SELECT 1 FROM webhooks.deliveries h
  WHERE h.endpoint_id = d.endpoint_id AND h.ordering_key = d.ordering_key
    AND h.status IN ('pending', 'delivering')
    AND (h.order_lsn, h.outbox_id) < (d.order_lsn, d.outbox_id)))`;

/**
 * A blocked key's head: an ordered key's first unresolved delivery that has failed at least once (waiting for
 * its retry, its endpoint's breaker, or the endpoint being enabled; or retrying right now) while later events of
 * the key wait behind it.
 */
export const blockedHeads = sql.fragment`
  SELECT d.endpoint_id, d.outbox_id, d.ordering_key, d.created_at, d.attempts, d.next_attempt_at,
         d.last_status_code, d.last_error
  FROM webhooks.deliveries d
  WHERE d.ordering_key IS NOT NULL AND ${isHead}
    -- failed at least once: pending for its retry, or in flight again (attempts count at claim time)
    AND ((d.status = 'pending' AND d.attempts > 0) OR (d.status = 'delivering' AND d.attempts > 1))
    AND EXISTS (SELECT 1 FROM webhooks.deliveries l
                WHERE l.endpoint_id = d.endpoint_id AND l.ordering_key = d.ordering_key
                  AND l.status IN ('pending', 'delivering')
                  AND (l.order_lsn, l.outbox_id) > (d.order_lsn, d.outbox_id))`;
