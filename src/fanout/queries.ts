import { sql } from 'slonik';
import { z } from 'zod';
import { endpointColumns, firstAttemptAt, subscribes } from '../db/fragments.ts';
import type { Quotas } from '../scheduler/capacity.ts';

/**
 * A delivery's `ordering_key, order_lsn` from the event row `alias` (with ordering_key and commit_lsn) and its
 * endpoint `ep`: the key only for an ordered endpoint; the commit LSN ('0/0' when unknown: then outbox id order).
 */
const orderingOf = (alias: 'w' | 'ev') => {
  const r = sql.identifier([alias]);
  return sql.fragment`CASE WHEN ep.ordered THEN ${r}.ordering_key END AS ordering_key,
    CASE WHEN ep.ordered AND ${r}.ordering_key IS NOT NULL THEN coalesce(${r}.commit_lsn::pg_lsn, '0/0') END AS order_lsn`;
};

const FannedOut = z.object({
  visible: z.number(),
  deliveryId: z.string().nullable(),
  outboxId: z.string().nullable(),
  endpointId: z.string().nullable(),
  claimed: z.boolean().nullable(),
  url: z.string().nullable(),
  tenant: z.string().nullable(),
  secrets: z.array(z.string()).nullable(),
  maxInFlight: z.number().nullable(),
  ratePerSecond: z.number().nullable(),
});
export type FannedOutRow = z.infer<typeof FannedOut>;

/**
 * Fans a batch of outbox rows out to their endpoints in one statement. Idempotent: a replayed batch hits
 * ON CONFLICT and inserts nothing. The first `room` new rows of enabled endpoints, each endpoint within its
 * quota (fair share), are inserted already claimed by `owner` (lease on the database clock); the rest stay
 * pending for the claim loop.
 *
 * The event itself comes from the WAL, never from the table. But the stream can show a commit a moment before
 * other sessions see it, and an endpoint created in that same transaction would then be missed: with
 * `requireVisible`, nothing is inserted unless every row of the batch is visible, and `visible` says how many
 * were, so the caller can retry briefly. Always one row back (delivery columns NULL when nothing was inserted).
 */
export const fanOutBatch = (
  events: {
    ids: readonly string[];
    eventTypes: readonly string[];
    targets: readonly (string | null)[];
    tenants: readonly (string | null)[];
    /** Operational events: the endpoint the event is about, which never receives it. */
    abouts: readonly (string | null)[];
    orderingKeys: readonly (string | null)[];
    commitLsns: readonly (string | null)[];
  },
  owner: string,
  leaseMs: number,
  room: number,
  quotas: Quotas,
  requireVisible: boolean,
) => sql.type(FannedOut)`
  WITH ev AS (
    SELECT * FROM unnest(${sql.array(events.ids, 'int8')}, ${sql.array(events.eventTypes, 'text')},
                         ${sql.array(events.targets, 'uuid')}, ${sql.array(events.tenants, 'text')},
                         ${sql.array(events.abouts, 'uuid')}, ${sql.array(events.orderingKeys, 'text')},
                         ${sql.array(events.commitLsns, 'text')})
      WITH ORDINALITY AS e(outbox_id, event_type, endpoint_id, tenant, about_endpoint, ordering_key, commit_lsn, ord)
  ), visible AS (
    SELECT count(*)::int AS n FROM webhooks.outbox WHERE id = ANY (${sql.array(events.ids, 'int8')})
  ), quota AS (
    SELECT * FROM unnest(${sql.array(quotas.endpointIds, 'uuid')}, ${sql.array(quotas.quotas, 'int4')})
      AS q(endpoint_id, quota)
  ), matched AS (
    -- k: the row's place among its endpoint's rows in this batch; within the endpoint's quota it may be claimed.
    -- An ordered key's deliveries are never claimed here: the claim takes each key's head in turn.
    SELECT ev.outbox_id, ep.id AS endpoint_id, ev.ord, ${firstAttemptAt} AS first_attempt_at,
           ${orderingOf('ev')},
           ep.enabled AND NOT (ep.ordered AND ev.ordering_key IS NOT NULL)
             AND row_number() OVER (PARTITION BY ep.id ORDER BY ev.ord)
                          <= coalesce((SELECT q.quota FROM quota q WHERE q.endpoint_id = ep.id), ${quotas.fresh})
             AS eligible
    FROM ev JOIN webhooks.endpoints ep ON ${subscribes}
    WHERE NOT ${requireVisible} OR (SELECT n FROM visible) = ${events.ids.length}
  ), numbered AS (
    -- The first eligible rows, in commit order, as many as there is room for, go in claimed; the rest pending.
    SELECT *, eligible AND sum(eligible::int) OVER (ORDER BY ord, endpoint_id) <= ${room} AS claim FROM matched
  ), inserted AS (
    INSERT INTO webhooks.deliveries AS d (outbox_id, endpoint_id, status, attempts, lease_owner, lease_until,
                                          next_attempt_at, ordering_key, order_lsn)
    SELECT m.outbox_id, m.endpoint_id,
           CASE WHEN m.claim THEN 'delivering' ELSE 'pending' END,
           CASE WHEN m.claim THEN 1 ELSE 0 END,
           CASE WHEN m.claim THEN ${owner} END,
           CASE WHEN m.claim THEN now() + ${leaseMs}::int * interval '1 millisecond' END,
           CASE WHEN m.ordering_key IS NULL THEN m.first_attempt_at ELSE 'infinity' END, m.ordering_key, m.order_lsn
    FROM numbered m
    ON CONFLICT (outbox_id, endpoint_id) DO NOTHING
    RETURNING d.id, d.outbox_id, d.endpoint_id, d.status
  )
  SELECT v.n AS visible, i.id AS "deliveryId", i.outbox_id AS "outboxId", i.endpoint_id AS "endpointId",
         i.status = 'delivering' AS claimed, ${endpointColumns}
  FROM visible v
  LEFT JOIN (inserted i JOIN webhooks.endpoints ep ON ep.id = i.endpoint_id) ON true`;

/**
 * Inserts deliveries from the stream that are not sent from memory (over their endpoint's fair share, no room,
 * or a disabled endpoint's, parked) as pending rows for the claim loop, this relay's or a standby's. Idempotent.
 * As with `fanOutBatch`, nothing is inserted unless every event is visible to this session when
 * `requireVisible` (the delivery trigger must see an endpoint created in the event's own transaction).
 */
export const insertPending = (
  rows: {
    outboxIds: readonly string[];
    endpointIds: readonly string[];
    /** The events' ordering keys and commit LSNs, kept on the rows of ordered endpoints (see `orderingOf`). */
    orderingKeys?: readonly (string | null)[];
    commitLsns?: readonly (string | null)[];
  },
  requireVisible: boolean,
) => {
  const none = rows.outboxIds.map(() => null);
  return sql.type(z.object({ missing: z.number(), inserted: z.number() }))`
  WITH visible AS (
    SELECT count(DISTINCT id)::int AS n FROM webhooks.outbox
    WHERE id = ANY (${sql.array(rows.outboxIds, 'int8')})
  ), wanted AS (
    SELECT * FROM unnest(${sql.array(rows.outboxIds, 'int8')}, ${sql.array(rows.endpointIds, 'uuid')},
                         ${sql.array(rows.orderingKeys ?? none, 'text')}, ${sql.array(rows.commitLsns ?? none, 'text')})
      AS w(outbox_id, endpoint_id, ordering_key, commit_lsn)
  ), inserted AS (
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, next_attempt_at, ordering_key, order_lsn)
    SELECT w.outbox_id, w.endpoint_id, 'pending', 0,
           CASE WHEN ep.ordered AND w.ordering_key IS NOT NULL THEN 'infinity' ELSE ${firstAttemptAt} END,
           ${orderingOf('w')}
    FROM wanted w JOIN webhooks.endpoints ep ON ep.id = w.endpoint_id
    WHERE NOT ${requireVisible}
       OR (SELECT n FROM visible) = (SELECT count(DISTINCT outbox_id) FROM wanted)
    ON CONFLICT (outbox_id, endpoint_id) DO NOTHING
    RETURNING 1
  )
  SELECT (SELECT count(DISTINCT outbox_id)::int FROM wanted) - (SELECT n FROM visible) AS missing,
         (SELECT count(*)::int FROM inserted) AS inserted`;
};

/**
 * Writes rows for deliveries sent from the stream that are still unanswered after PERSIST_AFTER, claimed by
 * `owner` (leased on the database clock, one attempt counted): the slot can then be confirmed past their events,
 * and if this relay dies the sweep redoes them. A row that exists already is left alone (not returned).
 */
export const insertClaimed = (
  rows: { outboxIds: readonly string[]; endpointIds: readonly string[] },
  owner: string,
  leaseMs: number,
) => sql.type(z.object({ id: z.string(), outboxId: z.string(), endpointId: z.string() }))`
  INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, lease_owner, lease_until, next_attempt_at)
  SELECT w.outbox_id, w.endpoint_id, 'delivering', 1, ${owner}, now() + ${leaseMs}::int * interval '1 millisecond',
         now()
  FROM unnest(${sql.array(rows.outboxIds, 'int8')}, ${sql.array(rows.endpointIds, 'uuid')}) AS w(outbox_id, endpoint_id)
  ON CONFLICT (outbox_id, endpoint_id) DO NOTHING
  RETURNING id::text, outbox_id::text AS "outboxId", endpoint_id::text AS "endpointId"`;

/** `outbox_id/endpoint_id` of every delivery row of these events (the unique index answers it). */
export const recordedDeliveries = (outboxIds: readonly string[]) => sql.type(z.object({ key: z.string() }))`
  SELECT outbox_id::text || '/' || endpoint_id::text AS key FROM webhooks.deliveries
  WHERE outbox_id = ANY (${sql.array(outboxIds, 'int8')})`;
