import { sql } from 'slonik';
import { z } from 'zod';
import { endpointColumns, isHead, leaseUntil } from '../db/fragments.ts';
import { ClaimedColumns } from '../scheduler/queries.ts';

const ms = (n: number) => sql.fragment`${n}::bigint * interval '1 millisecond'`;

const Polled = z.object({
  joinedMsAgo: z.number(),
  peers: z.array(z.string()),
  breakers: z.array(
    z.object({
      endpointId: z.string(),
      state: z.enum(['open', 'half-open']),
      remainingMs: z.number(),
      probeOwner: z.string().nullable(),
    }),
  ),
});

/**
 * The poll, one statement a second per relay: renews this relay's membership row (it lives `leaseMs` on the
 * database clock), forgets rows expired for a minute, and reads the other live relays and every breaker that
 * is not closed. Times come back relative to the database's now(), never as the relay's clock.
 */
export const pollCluster = (owner: string, workerId: string, leaseMs: number) => sql.type(Polled)`
  WITH me AS (
    INSERT INTO webhooks.relays AS r (owner, worker_id, expires_at) VALUES (${owner}, ${workerId}, now() + ${ms(leaseMs)})
    ON CONFLICT (owner) DO UPDATE SET seen_at = now(), expires_at = EXCLUDED.expires_at
    RETURNING r.joined_at
  ), gone AS (
    DELETE FROM webhooks.relays WHERE expires_at < now() - interval '1 minute' AND owner <> ${owner}
  )
  SELECT (extract(epoch FROM now() - (SELECT joined_at FROM me)) * 1000)::float8 AS "joinedMsAgo",
         coalesce((SELECT array_agg(owner ORDER BY owner) FROM webhooks.relays
                   WHERE expires_at > now() AND owner <> ${owner}), '{}') AS peers,
         coalesce((SELECT json_agg(json_build_object(
                     'endpointId', b.endpoint_id, 'state', b.state, 'probeOwner', b.probe_owner,
                     'remainingMs', greatest(0, extract(epoch FROM
                        (CASE WHEN b.state = 'open' THEN b.open_until ELSE b.probe_until END) - now()) * 1000)))
                   FROM webhooks.endpoint_breakers b WHERE b.state <> 'closed'), '[]') AS breakers`;

/** Leaving: peers take this relay's shares at their next poll. */
export const leaveCluster = (owner: string) => sql.type(z.object({ left: z.number() }))`
  WITH d AS (DELETE FROM webhooks.relays WHERE owner = ${owner} RETURNING 1) SELECT count(*)::int AS left FROM d`;

/**
 * Opens an endpoint's shared breaker for `resetMs`, only if it is closed (a compare-and-set: an open or half-open
 * breaker is left as it is). `opened` is false when another relay's state stood; the next poll reads it.
 */
export const openBreaker = (endpointId: string, owner: string, resetMs: number) => sql.type(
  z.object({ opened: z.boolean() }),
)`
  WITH o AS (
    INSERT INTO webhooks.endpoint_breakers AS b (endpoint_id, state, open_until, opened_by, opened_at, opens)
    SELECT ep.id, 'open', now() + ${ms(resetMs)}, ${owner}, now(), 1 FROM webhooks.endpoints ep WHERE ep.id = ${endpointId}
    ON CONFLICT (endpoint_id) DO UPDATE
      SET state = 'open', open_until = EXCLUDED.open_until, opened_by = EXCLUDED.opened_by, opened_at = now(),
          probe_owner = NULL, probe_until = NULL, opens = b.opens + 1, changed_at = now()
      WHERE b.state = 'closed'
    RETURNING 1
  )
  SELECT count(*) > 0 AS opened FROM o`;

const ProbeRow = z.object({ taken: z.boolean(), ...ClaimedColumns });

/**
 * Takes the half-open probe of an endpoint whose open period ended (or whose probe owner's time ran out) and
 * claims its one probe delivery, in one statement: a compare-and-set on the breaker row, so exactly one relay
 * probes per half-open period. Only when the endpoint is enabled and has a due delivery; the probe lasts as long
 * as the delivery's lease. `taken` with no delivery (a peer held every due row locked): give the probe back.
 */
export const takeProbe = (endpointId: string, owner: string, leaseMs: number) => sql.type(ProbeRow)`
  WITH take AS (
    UPDATE webhooks.endpoint_breakers b
    SET state = 'half-open', probe_owner = ${owner}, probe_until = ${leaseUntil(leaseMs)}, changed_at = now()
    WHERE b.endpoint_id = ${endpointId}
      AND ((b.state = 'open' AND b.open_until <= now()) OR (b.state = 'half-open' AND b.probe_until <= now()))
      AND EXISTS (SELECT 1 FROM webhooks.endpoints ep WHERE ep.id = b.endpoint_id AND ep.enabled)
      AND EXISTS (SELECT 1 FROM webhooks.deliveries d
                  WHERE d.endpoint_id = b.endpoint_id AND d.status = 'pending' AND d.next_attempt_at <= now()
                    AND ${isHead})
    RETURNING b.endpoint_id
  ), pick AS (
    SELECT d.id FROM webhooks.deliveries d JOIN take ON d.endpoint_id = take.endpoint_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND ${isHead}
    ORDER BY d.endpoint_id, d.next_attempt_at
    LIMIT 1
    FOR UPDATE OF d SKIP LOCKED
  ), claimed AS (
    UPDATE webhooks.deliveries d
    SET status = 'delivering', attempts = d.attempts + 1, lease_owner = ${owner},
        lease_until = ${leaseUntil(leaseMs)}, updated_at = now()
    FROM webhooks.outbox o, webhooks.endpoints ep
    WHERE d.id = (SELECT id FROM pick) AND o.id = d.outbox_id AND ep.id = d.endpoint_id
    RETURNING d.id AS "deliveryId", d.outbox_id AS "outboxId", d.endpoint_id AS "endpointId",
              d.attempts AS attempt, o.event_type AS "eventType", o.payload::text AS payload,
              o.created_at AS "createdAtMs", o.traceparent,
              d.ordering_key IS NOT NULL AS ordered, ${endpointColumns}
  )
  SELECT EXISTS (SELECT 1 FROM take) AS taken, c.* FROM (SELECT 1) one LEFT JOIN claimed c ON true`;

/**
 * Decides this relay's probe: delivered closes the breaker; failed opens it again for `resetMs`; undecided
 * (the probe was not a verdict on the endpoint: a lost lease, a refused destination) hands the probe back at
 * once (open, due now). Guarded by probe_owner, so a probe taken over by a peer changes nothing.
 */
export const decideProbe = (
  endpointId: string,
  owner: string,
  verdict: 'delivered' | 'failed' | 'undecided',
  resetMs: number,
) => sql.type(z.object({ changed: z.number() }))`
  WITH u AS (
    UPDATE webhooks.endpoint_breakers b
    SET state = CASE WHEN ${verdict} = 'delivered' THEN 'closed' ELSE 'open' END,
        open_until = CASE WHEN ${verdict} = 'delivered' THEN NULL
                          WHEN ${verdict} = 'failed' THEN now() + ${ms(resetMs)} ELSE now() END,
        probe_owner = NULL, probe_until = NULL, changed_at = now()
    WHERE b.endpoint_id = ${endpointId} AND b.state = 'half-open' AND b.probe_owner = ${owner}
    RETURNING 1
  )
  SELECT count(*)::int AS changed FROM u`;
