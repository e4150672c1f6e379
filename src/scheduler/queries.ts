import { sql } from 'slonik';
import { z } from 'zod';
import type { Job, Outcome } from '../domain.ts';
import { dueAfter, endpointColumns, isHead, leaseUntil, literalInt } from '../db/fragments.ts';

/** The endpoint id a round-robin claim starts after when it begins a new round (the smallest uuid). */
export const FIRST_ENDPOINT = '00000000-0000-0000-0000-000000000000';

/**
 * A claimed delivery's columns, as every statement that claims rows returns them (all null when it claimed
 * none); `jobOf` turns one into a Job.
 */
export const ClaimedColumns = {
  deliveryId: z.string().nullable(),
  outboxId: z.string().nullable(),
  endpointId: z.string().nullable(),
  attempt: z.number().nullable(),
  eventType: z.string().nullable(),
  payload: z.string().nullable(),
  createdAtMs: z.number().nullable(),
  traceparent: z.string().nullable(),
  ordered: z.boolean().nullable(),
  url: z.string().nullable(),
  tenant: z.string().nullable(),
  secrets: z.array(z.string()).nullable(),
  maxInFlight: z.number().nullable(),
  ratePerSecond: z.number().nullable(),
};

/** A claim row with its job columns set, as a Job; none when the statement claimed nothing. */
export function jobOf(row: { [K in keyof Job]: Job[K] | null }): Job[] {
  const { deliveryId, outboxId, endpointId, attempt, eventType, payload, createdAtMs, url, secrets } = row;
  if (deliveryId === null || outboxId === null || endpointId === null || attempt === null) return [];
  if (eventType === null || payload === null || createdAtMs === null || url === null || secrets === null) return [];
  return [
    {
      deliveryId,
      outboxId,
      endpointId,
      tenant: row.tenant,
      attempt,
      eventType,
      payload,
      createdAtMs,
      traceparent: row.traceparent,
      url,
      secrets,
      maxInFlight: row.maxInFlight,
      ratePerSecond: row.ratePerSecond,
      ...(row.ordered === true ? { ordered: true } : {}),
    },
  ];
}

const ClaimRow = z.object({
  ...ClaimedColumns,
  /** Endpoints that still have due rows after this claim (quota or total reached). */
  more: z.array(z.string()),
  /** Where the next claim starts; null when this one reached the end of the list (the next round begins). */
  cursor: z.string().nullable(),
});

/**
 * Claims due pending deliveries fairly: endpoint by endpoint in round-robin order (uuid order, starting after
 * `cursor`), each endpoint at most its quota, `limit` in all. One endpoint's backlog of old rows therefore never
 * hides another endpoint's due rows, which a globally oldest-first claim did.
 *
 * - The endpoints with pending rows are found with a loose index scan (one descent of the per-endpoint partial
 *   index per endpoint), at most `maxEndpoints` of them per claim.
 * - Per endpoint, its oldest due rows in order, locked SKIP LOCKED: a compare-and-set on the database clock.
 *   `attempts` goes up here, at claim time, so a delivery that crashes every relay that tries it still ends dead.
 * - Disabled endpoints are skipped; a due row of one (it raced its endpoint being disabled) is parked.
 * - Endpoints whose shared breaker is open or half-open are skipped, rows untouched (src/limits/).
 * - No outbox check: fan-out inserts a delivery only once its outbox row is visible, and retention never deletes
 *   an outbox row that still has deliveries.
 * - Limits are literals, so the statement is always planned for them (a generic plan took 53 ms per claim).
 *
 * Always at least one row back: job columns are null when nothing was claimed.
 */
export const claimFair = (
  owner: string,
  leaseMs: number,
  limit: number,
  quotas: { endpointIds: readonly string[]; quotas: readonly number[]; fresh: number },
  cursor: string,
  maxEndpoints: number,
) => sql.type(ClaimRow)`
  WITH RECURSIVE candidates(endpoint_id, step) AS (
    SELECT (SELECT d.endpoint_id FROM webhooks.deliveries d
            WHERE d.status = 'pending' AND d.endpoint_id > ${cursor}::uuid ORDER BY d.endpoint_id LIMIT 1), 1
    UNION ALL
    SELECT (SELECT d.endpoint_id FROM webhooks.deliveries d
            WHERE d.status = 'pending' AND d.endpoint_id > c.endpoint_id ORDER BY d.endpoint_id LIMIT 1), c.step + 1
    FROM candidates c WHERE c.endpoint_id IS NOT NULL AND c.step < ${literalInt(maxEndpoints)}
  ), quota AS (
    SELECT * FROM unnest(${sql.array(quotas.endpointIds, 'uuid')}, ${sql.array(quotas.quotas, 'int4')})
      AS q(endpoint_id, quota)
  ), eligible AS (
    SELECT c.endpoint_id, c.step, coalesce(q.quota, ${literalInt(quotas.fresh)}) AS quota
    FROM candidates c
    JOIN webhooks.endpoints ep ON ep.id = c.endpoint_id AND ep.enabled
    LEFT JOIN quota q ON q.endpoint_id = c.endpoint_id
    -- A shared breaker that is not closed: its rows are left alone (one relay's probe claims its own row).
    WHERE NOT EXISTS (SELECT 1 FROM webhooks.endpoint_breakers b
                      WHERE b.endpoint_id = c.endpoint_id AND b.state <> 'closed')
  ), due AS (
    -- Endpoints taken in step order (sorted here, so the join keeps that order and needs no sort of its rows):
    -- the LIMIT below then stops the walk once it has its total. Sorting the joined rows instead read and locked
    -- every eligible endpoint's quota first (90,000 rows locked for a claim of 500, bench/claim-blocked.ts).
    SELECT picked.id, e.endpoint_id FROM (SELECT * FROM eligible ORDER BY step) e
    CROSS JOIN LATERAL (
      -- Ordered as the per-endpoint index is, so that index is the plan: the global due index filtered by
      -- endpoint walked every older row of every other endpoint first (an old backlog, per claim).
      -- An ordered key's later rows wait for its head (isHead).
      SELECT d.id FROM webhooks.deliveries d
      WHERE d.endpoint_id = e.endpoint_id AND d.status = 'pending' AND d.next_attempt_at <= now() AND ${isHead}
      ORDER BY d.endpoint_id, d.next_attempt_at
      LIMIT e.quota
      FOR UPDATE OF d SKIP LOCKED
    ) picked
    ORDER BY e.step
    LIMIT ${literalInt(limit)}
  ), parked AS (
    -- A due row of a disabled endpoint (one that raced its endpoint being disabled) is parked, not claimed.
    UPDATE webhooks.deliveries d SET next_attempt_at = 'infinity', updated_at = now()
    WHERE d.id IN (
      SELECT x.id FROM candidates c
      JOIN webhooks.endpoints ep ON ep.id = c.endpoint_id AND NOT ep.enabled
      CROSS JOIN LATERAL (
        SELECT d2.id FROM webhooks.deliveries d2
        WHERE d2.endpoint_id = c.endpoint_id AND d2.status = 'pending' AND d2.next_attempt_at <= now()
        ORDER BY d2.endpoint_id, d2.next_attempt_at
        LIMIT ${literalInt(limit)}
      ) x)
  ), claimed AS (
    UPDATE webhooks.deliveries d
    SET status = 'delivering', attempts = d.attempts + 1, lease_owner = ${owner},
        lease_until = ${leaseUntil(leaseMs)}, updated_at = now()
    FROM webhooks.outbox o, webhooks.endpoints ep
    -- = ANY (ARRAY(…)): primary-key probes. Joined to the CTE the planner misjudged its size and hashed a
    -- sequential scan of every delivery and outbox row into each claim.
    WHERE d.id = ANY (ARRAY(SELECT due.id FROM due)) AND o.id = d.outbox_id AND ep.id = d.endpoint_id
    RETURNING d.id AS "deliveryId", d.outbox_id AS "outboxId", d.endpoint_id AS "endpointId",
              d.attempts AS attempt, o.event_type AS "eventType", o.payload::text AS payload,
              o.created_at AS "createdAtMs", o.traceparent,
              d.ordering_key IS NOT NULL AS ordered, ${endpointColumns}
  ), more AS (
    -- Endpoints with a due row beyond what this claim took (rows a peer holds locked count too: conservative).
    SELECT coalesce(array_agg(e.endpoint_id::text), '{}') AS ids FROM eligible e
    WHERE EXISTS (
      SELECT 1 FROM webhooks.deliveries d
      WHERE d.endpoint_id = e.endpoint_id AND d.status = 'pending' AND d.next_attempt_at <= now() AND ${isHead}
      ORDER BY d.endpoint_id, d.next_attempt_at
      OFFSET (SELECT count(*) FROM due WHERE due.endpoint_id = e.endpoint_id))
  ), last AS (
    SELECT CASE WHEN count(endpoint_id) < ${literalInt(maxEndpoints)} THEN NULL
                ELSE (max(endpoint_id::text)) END AS cursor
    FROM candidates
  )
  SELECT c.*, more.ids AS more,
         coalesce((SELECT max(endpoint_id::text) FROM due WHERE (SELECT count(*) FROM due) = ${literalInt(limit)}),
                  last.cursor) AS cursor
  FROM more CROSS JOIN last LEFT JOIN claimed c ON true`;

/** When the outcome write disables a failing endpoint: after this long with no success, or this many failed attempts in a row (0 = never). */
export type DisablePolicy = { autoDisableMs: number; autoDisableFailures: number };

/**
 * Writes a batch of outcomes in one statement, each guarded by `lease_owner = owner`: a stale worker's write
 * changes nothing. Failed attempts are logged in delivery_attempts; deferrals give their attempt back.
 * The same statement keeps endpoint health: it marks the start of a failing streak and counts its failed
 * attempts (consecutive_failures), clears both on a success, and disables an endpoint that answered 410 Gone,
 * has failed for `autoDisableMs` with no success, or has failed `autoDisableFailures` attempts in a row. The
 * endpoint row is written only when its health changes (a failure, or the first success after failures), never
 * for a success of a healthy endpoint. Deliveries it made dead are handed to webhooks.report_dead_deliveries
 * (coalesced relay.delivery.dead events), a part of the statement present only when the batch has a dead
 * outcome. Returns how many outcomes were still ours and which endpoints this write disabled.
 */
export const writeOutcomes = (owner: string, workerId: string, policy: DisablePolicy, outcomes: readonly Outcome[]) => {
  const column = <T extends string | number | boolean | null>(pick: (o: Outcome) => T, type: string) =>
    sql.array(outcomes.map(pick), type as 'text');
  // coalesce: failing_since is NULL while healthy, and NULL must mean "no", never an unknown `enabled`.
  const failingTooLong = sql.fragment`coalesce(${policy.autoDisableMs}::bigint > 0
    AND ep.failing_since < now() - ${policy.autoDisableMs}::bigint * interval '1 millisecond', false)`;
  // The streak after this batch: failures after the batch's last success, on top of the old streak if none.
  const streak = sql.fragment`(CASE WHEN h.ok THEN 0 ELSE ep.consecutive_failures END + h.failures_since_ok)`;
  const tooManyFailures = sql.fragment`(${policy.autoDisableFailures}::int > 0
    AND ${streak} >= ${policy.autoDisableFailures}::int)`;
  const disableNow = sql.fragment`(h.gone OR (NOT h.ok AND h.failed AND ${failingTooLong}) OR ${tooManyFailures})`;
  const anyDead = outcomes.some((o) => o.status === 'dead');
  // Outcomes of deliveries sent from the stream with no row yet: only then is the INSERT part planned at all.
  const anyNew = outcomes.some((o) => o.deliveryId === null);
  const insertedCte = sql.fragment`, inserted AS (
    -- Deliveries sent from the stream with no row yet: the row is written once, already in its final state (a
    -- delivered one is never touched again but by retention). A row this relay wrote meanwhile (PERSIST_AFTER,
    -- or a replay's fan-out) is still leased to it and takes the outcome; any other row wins.
    INSERT INTO webhooks.deliveries AS d (outbox_id, endpoint_id, status, attempts, next_attempt_at, delivered_at,
                                          last_status_code, last_error, last_duration_ms, updated_at)
    SELECT o.outbox_id, o.endpoint_id, o.status, CASE WHEN o.refund THEN 0 ELSE 1 END,
           CASE WHEN o.status = 'pending'
                THEN ${dueAfter(sql.fragment`o.endpoint_id`, sql.fragment`o.delay_ms * interval '1 millisecond'`)}
                ELSE now() END,
           CASE WHEN o.status = 'delivered' THEN now() END,
           CASE WHEN o.refund THEN NULL ELSE o.status_code END, CASE WHEN o.refund THEN NULL ELSE o.error END,
           CASE WHEN o.refund THEN NULL ELSE o.duration_ms END, now()
    FROM o WHERE o.id IS NULL
    ON CONFLICT (outbox_id, endpoint_id) DO UPDATE
    SET status = EXCLUDED.status, attempts = EXCLUDED.attempts, next_attempt_at = EXCLUDED.next_attempt_at,
        delivered_at = EXCLUDED.delivered_at, lease_owner = NULL, lease_until = NULL,
        last_status_code = EXCLUDED.last_status_code, last_error = EXCLUDED.last_error,
        last_duration_ms = EXCLUDED.last_duration_ms, updated_at = now()
    WHERE d.lease_owner = ${owner} AND d.attempts = 1
    RETURNING d.id, d.outbox_id, d.endpoint_id
  )`;
  return sql.type(
    z.object({ written: z.number(), disabled: z.array(z.string()), deadReported: z.number().nullable() }),
  )`
  WITH o AS (
    SELECT * FROM unnest(${column((o) => o.deliveryId, 'int8')}, ${column((o) => o.outboxId, 'int8')},
                         ${column((o) => o.endpointId, 'uuid')},
                         ${column((o) => o.status, 'text')}, ${column((o) => o.delayMs, 'int8')},
                         ${column((o) => o.statusCode, 'int4')}, ${column((o) => o.error, 'text')},
                         ${column((o) => o.snippet, 'text')}, ${column((o) => o.durationMs, 'int4')},
                         ${column((o) => o.attempt, 'int4')}, ${column((o) => o.refund, 'bool')},
                         ${column((o) => o.gone, 'bool')})
      WITH ORDINALITY AS o(id, outbox_id, endpoint_id, status, delay_ms, status_code, error, snippet, duration_ms,
                           attempt, refund, gone, ord)
  ), updated AS (
    UPDATE webhooks.deliveries d
    SET status = o.status,
        attempts = d.attempts - CASE WHEN o.refund THEN 1 ELSE 0 END,
        next_attempt_at = CASE WHEN o.status = 'pending'
                               THEN ${dueAfter(sql.fragment`d.endpoint_id`, sql.fragment`o.delay_ms * interval '1 millisecond'`)}
                               ELSE d.next_attempt_at END,
        delivered_at = CASE WHEN o.status = 'delivered' THEN now() END,
        lease_owner = NULL, lease_until = NULL,
        last_status_code = CASE WHEN o.refund THEN d.last_status_code ELSE o.status_code END,
        last_error = CASE WHEN o.refund THEN d.last_error ELSE o.error END,
        last_duration_ms = CASE WHEN o.refund THEN d.last_duration_ms ELSE o.duration_ms END,
        updated_at = now()
    FROM o
    -- The attempt number too: if this relay lost the lease and claimed the row again, an outcome of the
    -- earlier attempt must not overwrite the new one.
    -- Only d.id = o.id may lead the plan: one primary-key probe per outcome. A lease_owner is set exactly while
    -- a row is 'delivering' (every transition sets or clears both), so status is not tested: a status
    -- test let the planner use the leases index, either walking every dead entry the queue's churn left
    -- there (118 ms per batch) or, ANDed with a primary-key bitmap, looping over the outcomes once per row
    -- (45 ms for 300 outcomes against a fresh 200k-row backlog).
    WHERE d.id = o.id AND d.lease_owner = ${owner} AND d.attempts = o.attempt
    RETURNING d.id, d.outbox_id, d.endpoint_id
  )${anyNew ? insertedCte : sql.fragment``}, done AS (
    SELECT u.id, u.outbox_id, o.endpoint_id, o.status, o.status_code, o.error, o.snippet, o.duration_ms, o.attempt,
           o.refund, o.gone, o.ord
    FROM o JOIN updated u ON u.id = o.id${
      anyNew
        ? sql.fragment`
    UNION ALL
    SELECT i.id, i.outbox_id, o.endpoint_id, o.status, o.status_code, o.error, o.snippet, o.duration_ms, o.attempt,
           o.refund, o.gone, o.ord
    FROM o JOIN inserted i ON o.id IS NULL AND i.outbox_id = o.outbox_id AND i.endpoint_id = o.endpoint_id`
        : sql.fragment``
    }
  ), logged AS (
    INSERT INTO webhooks.delivery_attempts
      (delivery_id, attempt, status_code, error, response_snippet, duration_ms, worker_id)
    SELECT o.id, o.attempt, o.status_code, o.error, o.snippet, o.duration_ms, ${workerId}
    FROM done o
    WHERE o.status <> 'delivered' AND NOT o.refund
  ), health AS (
    SELECT endpoint_id, bool_or(ok) AS ok, bool_or(gone) AS gone, bool_or(failed) AS failed,
           count(*) FILTER (WHERE failed AND ord > last_ok)::int AS failures_since_ok
    FROM (SELECT o.endpoint_id, o.ord, o.gone, o.status = 'delivered' AS ok,
                 o.status <> 'delivered' AND NOT o.refund AS failed,
                 coalesce(max(o.ord) FILTER (WHERE o.status = 'delivered') OVER (PARTITION BY o.endpoint_id), 0)
                   AS last_ok
          FROM done o) attempts
    GROUP BY endpoint_id
  ), transitions AS (
    UPDATE webhooks.endpoints ep
    SET failing_since = CASE WHEN h.ok THEN NULL WHEN h.failed THEN coalesce(ep.failing_since, now())
                             ELSE ep.failing_since END,
        consecutive_failures = ${streak},
        enabled = ep.enabled AND NOT ${disableNow},
        disabled_reason = CASE
          WHEN ep.enabled AND h.gone THEN 'receiver answered 410 Gone'
          WHEN ep.enabled AND NOT h.ok AND h.failed AND ${failingTooLong}
            THEN 'every attempt failed since ' || to_char(ep.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
          WHEN ep.enabled AND ${tooManyFailures} THEN ${streak} || ' consecutive failed attempts'
          ELSE ep.disabled_reason END,
        disabled_at = CASE WHEN ep.enabled AND ${disableNow} THEN now() ELSE ep.disabled_at END,
        updated_at = now()
    FROM health h
    WHERE ep.id = h.endpoint_id AND (
         (h.ok AND (ep.failing_since IS NOT NULL OR ep.consecutive_failures > 0))
      OR h.failed
      OR (ep.enabled AND h.gone))
    RETURNING ep.id, ep.enabled, ep.disabled_at
  )${
    anyDead
      ? sql.fragment`, reported AS (
    SELECT webhooks.report_dead_deliveries(jsonb_agg(jsonb_build_object(
             'delivery_id', o.id, 'endpoint_id', o.endpoint_id, 'outbox_id', o.outbox_id, 'attempts', o.attempt,
             'status_code', o.status_code, 'error', o.error))) AS events
    FROM done o
    WHERE o.status = 'dead'
    HAVING count(*) > 0
  )`
      : sql.fragment``
  }
  SELECT (SELECT count(*) FROM done)::int AS written,
         coalesce((SELECT array_agg(id::text) FROM transitions WHERE NOT enabled AND disabled_at = now()), '{}')
           AS disabled,
         ${anyDead ? sql.fragment`(SELECT events FROM reported)` : sql.fragment`0`} AS "deadReported"`;
};

/** One statement renews every lease this process holds; ids missing from the result are lost leases. */
export const renewLeases = (owner: string, leaseMs: number, ids: readonly string[]) => sql.type(
  z.object({ id: z.string() }),
)`
  UPDATE webhooks.deliveries SET lease_until = ${leaseUntil(leaseMs)}
  WHERE id = ANY (${sql.array(ids, 'int8')}) AND lease_owner = ${owner} AND status = 'delivering'
    AND lease_until > now()
  RETURNING id`;

/**
 * Hands leases back so a peer can claim at once. `started = false` (never sent) also takes back the attempt
 * counted at claim time.
 */
export const releaseLeases = (owner: string, ids: readonly string[], started: boolean) => sql.type(
  z.object({ released: z.number() }),
)`
  WITH r AS (
    UPDATE webhooks.deliveries
    SET status = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = now(),
        next_attempt_at = ${dueAfter(sql.fragment`endpoint_id`, sql.fragment`interval '0'`)},
        attempts = CASE WHEN ${started} THEN attempts ELSE greatest(attempts - 1, 0) END
    WHERE id = ANY (${sql.array(ids, 'int8')}) AND lease_owner = ${owner} AND status = 'delivering'
    RETURNING 1
  )
  SELECT count(*)::int AS released FROM r`;

/**
 * Releases the deliveries this relay owns but does not hold (`heldIds`: queued, in flight, or answered and not
 * yet recorded): rows a claiming statement committed whose result was lost with its connection. Back to pending
 * at once, the attempt counted at claim time given back (none was made). Only live leases: an expired one is the
 * sweep's, which keeps its attempt (a request may have been made). Uses the leases index.
 */
export const releaseOrphans = (owner: string, heldIds: readonly string[]) => sql.type(
  z.object({ released: z.number() }),
)`
  WITH r AS (
    UPDATE webhooks.deliveries
    SET status = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = now(),
        next_attempt_at = ${dueAfter(sql.fragment`endpoint_id`, sql.fragment`interval '0'`)},
        attempts = greatest(attempts - 1, 0)
    WHERE status = 'delivering' AND lease_until > now() AND lease_owner = ${owner}
      AND id <> ALL (${sql.array(heldIds, 'int8')})
    RETURNING 1
  )
  SELECT count(*)::int AS released FROM r`;
