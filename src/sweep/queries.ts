import { sql } from 'slonik';
import { z } from 'zod';
import { dueAfter } from '../db/fragments.ts';

/**
 * Recovers deliveries whose lease expired (a relay crashed or froze mid-request): back to pending, due now, or
 * dead when the crashed attempt was the last one allowed. Bounded and SKIP LOCKED, so replicas sweeping at
 * once neither block nor double-count each other.
 */
export const reclaimExpired = (maxAttempts: number, limit: number) => sql.type(z.object({ reclaimed: z.number() }))`
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
        lease_owner = NULL, lease_until = NULL, updated_at = now(),
        next_attempt_at = ${dueAfter(sql.fragment`d.endpoint_id`, sql.fragment`interval '0'`)}
    FROM expired WHERE d.id = expired.id
    RETURNING 1
  )
  SELECT count(*)::int AS reclaimed FROM reclaimed`;
