import { sql } from 'slonik';
import { z } from 'zod';
import { EndpointFields, endpointColumns } from '../scheduler/queries.ts';

/**
 * Which endpoints receive an event `ev` (with endpoint_id, event_type): the targeted endpoint whatever its state,
 * else every enabled endpoint whose event_types match (NULL = all). Shared by fan-out and repair.
 */
export const subscribes = sql.fragment`CASE
  WHEN ev.endpoint_id IS NOT NULL THEN ep.id = ev.endpoint_id
  ELSE ep.enabled AND (ep.event_types IS NULL OR ev.event_type = ANY (ep.event_types)) END`;

export const ClaimedRow = z.object({
  deliveryId: z.string(),
  outboxId: z.string(),
  endpointId: z.string(),
  claimed: z.boolean(),
  ...EndpointFields,
});

/**
 * Fans a batch of outbox rows out to their endpoints in one statement. Idempotent: a replayed batch hits
 * ON CONFLICT and inserts nothing. The first `room` new rows are inserted already claimed by `owner` (lease on
 * the database clock), the rest stay pending for the claim loop. Targeted rows (`endpoint_id`) go to that
 * endpoint even when it is disabled: the delivery waits, parked, until it is enabled again.
 *
 * Endpoints are read here, not the outbox: the stream can show a committed row before this session sees it.
 */
export const fanOutBatch = (
  ids: readonly string[],
  eventTypes: readonly string[],
  targets: readonly (string | null)[],
  owner: string,
  leaseMs: number,
  room: number,
) => sql.type(ClaimedRow)`
  WITH ev AS (
    SELECT * FROM unnest(${sql.array(ids, 'int8')}, ${sql.array(eventTypes, 'text')}, ${sql.array(targets, 'uuid')})
      WITH ORDINALITY AS e(outbox_id, event_type, endpoint_id, ord)
  ), matched AS (
    SELECT ev.outbox_id, ep.id AS endpoint_id, ep.enabled, row_number() OVER (ORDER BY ev.ord, ep.id) AS n
    FROM ev JOIN webhooks.endpoints ep ON ${subscribes}
  ), inserted AS (
    INSERT INTO webhooks.deliveries AS d (outbox_id, endpoint_id, status, attempts, lease_owner, lease_until)
    SELECT m.outbox_id, m.endpoint_id,
           CASE WHEN m.claim THEN 'delivering' ELSE 'pending' END,
           CASE WHEN m.claim THEN 1 ELSE 0 END,
           CASE WHEN m.claim THEN ${owner} END,
           CASE WHEN m.claim THEN now() + ${leaseMs}::int * interval '1 millisecond' END
    FROM (SELECT *, enabled AND n <= ${room} AS claim FROM matched) m
    ON CONFLICT (outbox_id, endpoint_id) DO NOTHING
    RETURNING d.id, d.outbox_id, d.endpoint_id, d.status
  )
  SELECT i.id AS "deliveryId", i.outbox_id AS "outboxId", i.endpoint_id AS "endpointId",
         i.status = 'delivering' AS claimed, ${endpointColumns}
  FROM inserted i JOIN webhooks.endpoints ep ON ep.id = i.endpoint_id`;

/** Targeted rows whose endpoint this session cannot see yet (created in the same, just-committed transaction). */
export const missingTargets = (targets: readonly string[]) => sql.type(z.object({ id: z.string() }))`
  SELECT t.id::text AS id FROM unnest(${sql.array(targets, 'uuid')}) AS t(id)
  WHERE NOT EXISTS (SELECT 1 FROM webhooks.endpoints ep WHERE ep.id = t.id)`;
