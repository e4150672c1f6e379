import { sql } from 'slonik';
import { z } from 'zod';
import { dueAfter } from '../db/fragments.ts';

/**
 * Recovers deliveries whose lease expired (a relay crashed or froze mid-request): back to pending, due now, or
 * dead when the crashed attempt was the last one allowed (reported like any dead delivery, see
 * webhooks.report_dead_deliveries). Bounded and SKIP LOCKED, so replicas sweeping at once neither block nor
 * double-count each other.
 */
export const reclaimExpired = (maxAttempts: number, limit: number) => sql.type(
  z.object({ reclaimed: z.number(), deadReported: z.number().nullable(), deadOrdered: z.array(z.string()) }),
)`
  WITH expired AS (
    SELECT id FROM webhooks.deliveries
    WHERE status = 'delivering' AND lease_until < now()
    ORDER BY lease_until
    LIMIT ${limit}
    FOR UPDATE SKIP LOCKED
  ), reclaimed AS (
    UPDATE webhooks.deliveries d
    SET status = CASE WHEN d.attempts >= ${maxAttempts} THEN 'dead' ELSE 'pending' END,
        last_error = CASE WHEN d.attempts >= ${maxAttempts}
                          THEN 'lease expired during the last attempt (relay crashed or was frozen)' ELSE d.last_error END,
        -- The crashed attempt's duration is unknown: an earlier attempt's must not pass for it.
        last_duration_ms = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now(),
        next_attempt_at = ${dueAfter(sql.fragment`d.endpoint_id`, sql.fragment`interval '0'`)}
    FROM expired WHERE d.id = expired.id
    RETURNING d.id, d.endpoint_id, d.outbox_id, d.attempts, d.status, d.last_status_code, d.last_error,
              d.ordering_key
  ), reported AS (
    SELECT webhooks.report_dead_deliveries(jsonb_agg(jsonb_build_object(
             'delivery_id', r.id, 'endpoint_id', r.endpoint_id, 'outbox_id', r.outbox_id, 'attempts', r.attempts,
             'status_code', r.last_status_code, 'error', r.last_error))) AS events
    FROM reclaimed r WHERE r.status = 'dead'
    HAVING count(*) > 0
  )
  SELECT count(*)::int AS reclaimed, (SELECT events FROM reported) AS "deadReported",
         -- heads of ordered keys that went dead: their keys' next deliveries are promoted after the commit
         coalesce(array_agg(outbox_id::text) FILTER (WHERE status = 'dead' AND ordering_key IS NOT NULL), '{}')
           AS "deadOrdered"
  FROM reclaimed`;

/**
 * Writes the relay.delivery.dead events that coalescing held back once their minute is over (one statement per
 * sweep pass; the table holds a row only per endpoint with recent deaths and an operational subscriber).
 */
export const flushDeadNotices = () => sql.type(z.object({ events: z.number() }))`
  SELECT webhooks.flush_dead_notices() AS events`;
