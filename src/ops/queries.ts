// Queries of the operator commands. Every value is a bound parameter; optional filters are composed from
// sql.fragment pieces, never from strings. Secrets leave the database only masked (`whsec_…abcd`).
import { sql } from 'slonik';
import { z } from 'zod';
import { ago, blockedHeads, dueAfter, literalInt } from '../db/fragments.ts';

export const STATUSES = ['pending', 'delivering', 'delivered', 'dead'] as const;
export type Status = (typeof STATUSES)[number];

const hint = (column: ReturnType<typeof sql.fragment>) => sql.fragment`'whsec_…' || right(${column}, 4)`;

// ---- slot and backlog --------------------------------------------------------------------------------------

const Slot = z.object({
  maxSlotWalKeepSize: z.string(),
  exists: z.boolean(),
  active: z.boolean().nullable(),
  activePid: z.number().nullable(),
  walStatus: z.string().nullable(),
  holderApplicationName: z.string().nullable(),
  holderClientAddr: z.string().nullable(),
  lagBytes: z.number().nullable(),
  retainedWalBytes: z.number().nullable(),
});
export type SlotRow = z.infer<typeof Slot>;

/** One row whether or not the slot exists. WAL byte counts are float8: exact far beyond any real WAL size. */
export const slotStatus = (slotName: string) => sql.type(Slot)`
  SELECT current_setting('max_slot_wal_keep_size') AS "maxSlotWalKeepSize",
         s.slot_name IS NOT NULL AS exists, s.active, s.active_pid AS "activePid", s.wal_status AS "walStatus",
         r.application_name AS "holderApplicationName", host(r.client_addr) AS "holderClientAddr",
         (pg_current_wal_lsn() - s.confirmed_flush_lsn)::float8 AS "lagBytes",
         (pg_current_wal_lsn() - s.restart_lsn)::float8 AS "retainedWalBytes"
  FROM (SELECT 1) one
  LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = ${slotName}
  LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid = s.active_pid`;

export const deliveryCounts = () => sql.type(z.object({ status: z.string(), n: z.number() }))`
  SELECT s.status, count(d.id)::int AS n
  FROM unnest(${sql.array([...STATUSES], 'text')}) AS s(status)
  LEFT JOIN webhooks.deliveries d ON d.status = s.status
  GROUP BY s.status`;

const Backlog = z.object({ due: z.number(), oldestDueAgeSeconds: z.number().nullable(), parked: z.number() });

/**
 * Pending work (the partial index on pending rows): due deliveries of enabled endpoints and how long the oldest
 * has waited past its next_attempt_at, and parked ones (pending on a disabled endpoint, sent when it is enabled).
 */
export const backlog = () => sql.type(Backlog)`
  SELECT count(*) FILTER (WHERE ep.enabled AND d.next_attempt_at <= now())::int AS due,
         round(extract(epoch FROM now() - min(d.next_attempt_at)
           FILTER (WHERE ep.enabled AND d.next_attempt_at <= now()))::numeric, 3)::float8 AS "oldestDueAgeSeconds",
         count(*) FILTER (WHERE NOT ep.enabled)::int AS parked
  FROM webhooks.deliveries d JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
  WHERE d.status = 'pending'`;

const Ordered = z.object({
  endpointId: z.string(),
  tenant: z.string().nullable(),
  url: z.string(),
  blockedKeys: z.number(),
  oldestBlockedHead: z
    .object({
      outboxId: z.string(),
      orderingKey: z.string(),
      since: z.number(),
      attempts: z.number(),
      /** Null while parked (its endpoint disabled). */
      nextAttemptAt: z.number().nullable(),
      lastStatusCode: z.number().nullable(),
      lastError: z.string().nullable(),
    })
    .nullable(),
});
export type OrderedRow = z.infer<typeof Ordered>;

/** Ordered endpoints (most blocked keys first) with how many keys are blocked and the oldest blocked head. */
export const orderedEndpoints = (limit: number) => sql.type(Ordered)`
  WITH heads AS (${blockedHeads})
  SELECT ep.id AS "endpointId", ep.tenant, ep.url, count(h.outbox_id)::int AS "blockedKeys",
         (SELECT json_build_object('outboxId', o.outbox_id::text, 'orderingKey', o.ordering_key,
                                   'since', (extract(epoch FROM o.created_at) * 1000)::float8,
                                   'attempts', o.attempts,
                                   'nextAttemptAt', CASE WHEN isfinite(o.next_attempt_at)
                                     THEN (extract(epoch FROM o.next_attempt_at) * 1000)::float8 END,
                                   'lastStatusCode', o.last_status_code, 'lastError', o.last_error)
          FROM heads o WHERE o.endpoint_id = ep.id ORDER BY o.created_at, o.outbox_id LIMIT 1) AS "oldestBlockedHead"
  FROM webhooks.endpoints ep LEFT JOIN heads h ON h.endpoint_id = ep.id
  -- An endpoint switched back to unordered is listed while keyed deliveries of its ordered days still block.
  WHERE ep.ordered OR EXISTS (SELECT 1 FROM heads b WHERE b.endpoint_id = ep.id)
  GROUP BY ep.id
  ORDER BY count(h.outbox_id) DESC, ep.created_at, ep.id
  LIMIT ${literalInt(limit)}`;

// ---- endpoints ---------------------------------------------------------------------------------------------

const EndpointFields = {
  id: z.string(),
  tenant: z.string().nullable(),
  url: z.string(),
  eventTypes: z.array(z.string()).nullable(),
  enabled: z.boolean(),
  ordered: z.boolean(),
  description: z.string().nullable(),
  secretHint: z.string(),
  previousSecretHint: z.string().nullable(),
  previousSecretExpiresAt: z.number().nullable(),
  disabledReason: z.string().nullable(),
  disabledAt: z.number().nullable(),
  failingSince: z.number().nullable(),
  consecutiveFailures: z.number(),
  createdAt: z.number(),
  updatedAt: z.number(),
};
const Endpoint = z.object(EndpointFields);
export type EndpointRow = z.infer<typeof Endpoint>;

const endpointColumns = sql.fragment`
  ep.id, ep.tenant, ep.url, ep.event_types AS "eventTypes", ep.enabled, ep.ordered, ep.description,
  ${hint(sql.fragment`ep.secret`)} AS "secretHint", ${hint(sql.fragment`ep.previous_secret`)} AS "previousSecretHint",
  ep.previous_secret_expires_at AS "previousSecretExpiresAt", ep.disabled_reason AS "disabledReason",
  ep.disabled_at AS "disabledAt", ep.failing_since AS "failingSince",
  ep.consecutive_failures AS "consecutiveFailures", ep.created_at AS "createdAt",
  ep.updated_at AS "updatedAt"`;

const Health = z.object({
  ...EndpointFields,
  deliveredLastHour: z.number(),
  failedAttemptsLastHour: z.number(),
  pending: z.number(),
  delivering: z.number(),
  dead: z.number(),
  maxInFlight: z.number().nullable(),
  ratePerSecond: z.number().nullable(),
  breakerState: z.enum(['closed', 'open', 'half-open']),
  breakerOpenUntil: z.number().nullable(),
  breakerProbeOwner: z.string().nullable(),
});
export type EndpointHealthRow = z.infer<typeof Health>;

/**
 * Endpoints with their last hour and their backlog. Troubled ones first (disabled, then failing longest), so a
 * limited page shows what needs attention; the counts are computed only for the rows on the page.
 */
export const endpointHealth = (limit: number, { id, tenant }: { id?: string; tenant?: string } = {}) => sql.type(
  Health,
)`
  SELECT ${endpointColumns}, ds.delivered AS "deliveredLastHour", fa.failed AS "failedAttemptsLastHour",
         ds.pending, ds.delivering, ds.dead, ep.max_in_flight AS "maxInFlight",
         ep.rate_limit_per_second AS "ratePerSecond", coalesce(b.state, 'closed') AS "breakerState",
         CASE WHEN b.state = 'open' THEN b.open_until END AS "breakerOpenUntil",
         CASE WHEN b.state = 'half-open' THEN b.probe_owner END AS "breakerProbeOwner"
  FROM (SELECT * FROM webhooks.endpoints ep
        WHERE ${id === undefined ? sql.fragment`true` : sql.fragment`ep.id = ${id}`}
          AND ${tenant === undefined ? sql.fragment`true` : sql.fragment`ep.tenant = ${tenant}`}
        ORDER BY ep.enabled, ep.failing_since NULLS LAST, ep.created_at, ep.id
        LIMIT ${literalInt(limit)}) ep
  CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE d.status = 'delivered' AND d.delivered_at > ${ago(3_600_000)})::int AS delivered,
           count(*) FILTER (WHERE d.status = 'pending')::int AS pending,
           count(*) FILTER (WHERE d.status = 'delivering')::int AS delivering,
           count(*) FILTER (WHERE d.status = 'dead')::int AS dead
    FROM webhooks.deliveries d WHERE d.endpoint_id = ep.id) ds
  CROSS JOIN LATERAL (
    SELECT count(*)::int AS failed
    FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
    WHERE d.endpoint_id = ep.id AND a.created_at > ${ago(3_600_000)}) fa
  LEFT JOIN webhooks.endpoint_breakers b ON b.endpoint_id = ep.id
  ORDER BY ep.enabled, ep.failing_since NULLS LAST, ep.created_at, ep.id`;

const Relay = z.object({ owner: z.string(), workerId: z.string(), joinedAt: z.number(), seenAt: z.number() });
export type RelayRow = z.infer<typeof Relay>;

/** The live relays, which split every endpoint's limits between them (oldest first). */
/** Relays a status lists at most. */
export const RELAYS_SHOWN = 20;

export const liveRelays = (limit: number) => sql.type(Relay)`
  SELECT owner, worker_id AS "workerId", joined_at AS "joinedAt", seen_at AS "seenAt"
  FROM webhooks.relays WHERE expires_at > now() ORDER BY joined_at, owner LIMIT ${literalInt(limit)}`;

const Totals = z.object({
  total: z.number(),
  disabled: z.number(),
  failing: z.number(),
  breakersOpen: z.number(),
  ordered: z.number(),
  blockedKeys: z.number(),
});
export type EndpointTotals = z.infer<typeof Totals>;

/**
 * Counts over every endpoint (a status lists only the first page): disabled, failing (enabled, with failed
 * attempts since its last success), with the shared breaker not closed (open or half-open), ordered, and the
 * ordered keys blocked by a failing head on any endpoint.
 */
export const endpointTotals = () => sql.type(Totals)`
  SELECT count(*)::int AS total, count(*) FILTER (WHERE NOT enabled)::int AS disabled,
         count(*) FILTER (WHERE enabled AND failing_since IS NOT NULL)::int AS failing,
         (SELECT count(*)::int FROM webhooks.endpoint_breakers b WHERE b.state <> 'closed') AS "breakersOpen",
         count(*) FILTER (WHERE ordered)::int AS ordered,
         (SELECT count(*)::int FROM (${blockedHeads}) h) AS "blockedKeys"
  FROM webhooks.endpoints`;

/** Every endpoint, or those of `tenant` only. */
export const listEndpoints = (limit: number, tenant?: string) => sql.type(Endpoint)`
  SELECT ${endpointColumns} FROM webhooks.endpoints ep
  WHERE ${tenant === undefined ? sql.fragment`true` : sql.fragment`ep.tenant = ${tenant}`}
  ORDER BY ep.created_at, ep.id LIMIT ${literalInt(limit)}`;

export const insertEndpoint = (e: {
  url: string;
  secret: string;
  eventTypes: string[] | null;
  description: string | null;
  tenant: string | null;
  ordered: boolean;
}) => sql.type(Endpoint)`
  INSERT INTO webhooks.endpoints AS ep (url, secret, event_types, description, tenant, ordered)
  VALUES (${e.url}, ${e.secret}, ${e.eventTypes === null ? null : sql.array(e.eventTypes, 'text')}, ${e.description},
          ${e.tenant}, ${e.ordered})
  RETURNING ${endpointColumns}`;

export const disableEndpoint = (id: string, reason: string) => sql.type(Endpoint)`
  UPDATE webhooks.endpoints ep
  SET enabled = false, disabled_reason = ${reason}, disabled_at = now(), updated_at = now()
  WHERE ep.id = ${id}
  RETURNING ${endpointColumns}`;

/**
 * Clears the failing streak too (the relay would otherwise disable it again on the next failure); the
 * endpoints trigger does the same for any enable, SQL included.
 */
export const enableEndpoint = (id: string) => sql.type(Endpoint.extend({ parked: z.number() }))`
  UPDATE webhooks.endpoints ep
  SET enabled = true, disabled_reason = NULL, disabled_at = NULL, failing_since = NULL, updated_at = now()
  WHERE ep.id = ${id}
  RETURNING ${endpointColumns},
    (SELECT count(*)::int FROM webhooks.deliveries d WHERE d.endpoint_id = ep.id AND d.status = 'pending') AS parked`;

/**
 * The current secret becomes the previous one, still signed with until now() + keepMs (keepMs 0: dropped now).
 * `droppedLivePrevious` tells that a rotation still in progress lost its older secret.
 */
export const rotateSecret = (id: string, secret: string, keepMs: number) =>
  sql.type(Endpoint.extend({ droppedLivePrevious: z.boolean() }))`
  UPDATE webhooks.endpoints ep
  SET previous_secret = CASE WHEN ${keepMs}::bigint > 0 THEN ep.secret END,
      previous_secret_expires_at = CASE WHEN ${keepMs}::bigint > 0
        THEN now() + ${keepMs}::bigint * interval '1 millisecond' END,
      secret = ${secret}, updated_at = now()
  FROM (SELECT id, coalesce(previous_secret_expires_at > now(), false) AS live
        FROM webhooks.endpoints WHERE id = ${id} FOR UPDATE) old
  WHERE ep.id = old.id
  RETURNING ${endpointColumns}, old.live AS "droppedLivePrevious"`;

// ---- deliveries and replay ---------------------------------------------------------------------------------

export type DeliveryFilter = {
  status?: Status;
  endpointId?: string;
  /** Deliveries to endpoints of this tenant (an event only ever reaches its own tenant's endpoints). */
  tenant?: string;
  eventType?: string;
  sinceMs?: number;
  untilMs?: number;
  ids?: string[];
  /** The event's outbox id: what a receiver saw as `webhook-id: msg_<outboxId>`. */
  outboxId?: string;
  /** Created at or after this instant (epoch ms), for a filter given as a timestamp rather than a duration. */
  sinceAtMs?: number;
  /** Only deliveries with a smaller id: the cursor of a page that continues an earlier one (newest first). */
  beforeId?: string;
};

/** The filters as one AND-ed condition on `d` (webhooks.deliveries); since/until apply to its created_at. */
function matching(f: DeliveryFilter) {
  const parts = [sql.fragment`true`];
  if (f.status !== undefined) parts.push(sql.fragment`d.status = ${f.status}`);
  if (f.endpointId !== undefined) parts.push(sql.fragment`d.endpoint_id = ${f.endpointId}`);
  if (f.tenant !== undefined) {
    parts.push(sql.fragment`d.endpoint_id IN (SELECT ep.id FROM webhooks.endpoints ep WHERE ep.tenant = ${f.tenant})`);
  }
  if (f.sinceMs !== undefined) parts.push(sql.fragment`d.created_at >= ${ago(f.sinceMs)}`);
  if (f.untilMs !== undefined) parts.push(sql.fragment`d.created_at <= ${ago(f.untilMs)}`);
  if (f.sinceAtMs !== undefined) {
    parts.push(sql.fragment`d.created_at >= to_timestamp(${f.sinceAtMs}::float8 / 1000)`);
  }
  if (f.ids !== undefined) parts.push(sql.fragment`d.id = ANY (${sql.array(f.ids, 'int8')})`);
  if (f.outboxId !== undefined) parts.push(sql.fragment`d.outbox_id = ${f.outboxId}::int8`);
  if (f.beforeId !== undefined) parts.push(sql.fragment`d.id < ${f.beforeId}::int8`);
  if (f.eventType !== undefined) {
    parts.push(sql.fragment`EXISTS (SELECT 1 FROM webhooks.outbox o
                                    WHERE o.id = d.outbox_id AND o.event_type = ${f.eventType})`);
  }
  return sql.join(parts, sql.fragment` AND `);
}

const Delivery = z.object({
  id: z.string(),
  outboxId: z.string(),
  endpointId: z.string(),
  tenant: z.string().nullable(),
  eventType: z.string().nullable(),
  status: z.string(),
  attempts: z.number(),
  nextAttemptAt: z.number(),
  lastStatusCode: z.number().nullable(),
  lastError: z.string().nullable(),
  createdAt: z.number(),
  updatedAt: z.number(),
  deliveredAt: z.number().nullable(),
  lastDurationMs: z.number().nullable(),
});
export type DeliveryRow = z.infer<typeof Delivery>;

/**
 * Newest first. event_type is NULL only for an outbox row removed by retention (no foreign key on purpose); the
 * tenant is the event's (its endpoint's too), NULL also when both the outbox row and the endpoint are gone.
 */
export const listDeliveries = (f: DeliveryFilter, limit: number) => sql.type(Delivery)`
  SELECT d.id, d.outbox_id AS "outboxId", d.endpoint_id AS "endpointId",
         coalesce(o.tenant, (SELECT ep.tenant FROM webhooks.endpoints ep WHERE ep.id = d.endpoint_id)) AS tenant,
         o.event_type AS "eventType", d.status,
         d.attempts, d.next_attempt_at AS "nextAttemptAt", d.last_status_code AS "lastStatusCode",
         d.last_error AS "lastError", d.created_at AS "createdAt", d.updated_at AS "updatedAt",
         d.delivered_at AS "deliveredAt", d.last_duration_ms AS "lastDurationMs"
  FROM webhooks.deliveries d LEFT JOIN webhooks.outbox o ON o.id = d.outbox_id
  WHERE ${matching(f)}
  ORDER BY d.id DESC
  LIMIT ${literalInt(limit)}`;

const Moved = z.object({ moved: z.number(), parked: z.number() });

/**
 * Their endpoint row exists: dead deliveries of a deleted endpoint (kept as history) are never replayed. The
 * endpoint is locked FOR KEY SHARE so a concurrent delete waits for the replay to commit and then ends the rows
 * it moved (its trigger ends open deliveries); without the lock they could turn pending for an endpoint gone.
 */
const endpointExists = sql.fragment`
  EXISTS (SELECT 1 FROM webhooks.endpoints ep WHERE ep.id = d.endpoint_id FOR KEY SHARE)`;

/**
 * What a replay would move: dead deliveries matching `f` whose endpoint still exists, how many of those belong
 * to disabled endpoints, and how many matching ones belong to deleted endpoints (never moved).
 */
export const countReplayable = (f: DeliveryFilter) => sql.type(Moved.extend({ ofDeletedEndpoints: z.number() }))`
  SELECT count(ep.id)::int AS moved, count(*) FILTER (WHERE NOT ep.enabled)::int AS parked,
         count(*) FILTER (WHERE ep.id IS NULL)::int AS "ofDeletedEndpoints"
  FROM webhooks.deliveries d LEFT JOIN webhooks.endpoints ep ON ep.id = d.endpoint_id
  WHERE d.status = 'dead' AND ${matching({ ...f, status: undefined })}`;

/**
 * Moves one batch of dead deliveries back to pending, due now, with a fresh attempt budget (last_error is kept
 * until the next attempt), and out of any key's order. One short statement per batch: rows locked elsewhere are skipped, not waited for.
 * Deliveries of deleted endpoints stay dead: pending, they would wait forever for an endpoint that is gone.
 */
export const replayBatch = (f: DeliveryFilter, batch: number) => sql.type(Moved)`
  WITH moved AS (
    UPDATE webhooks.deliveries
    SET status = 'pending', attempts = 0, lease_owner = NULL, lease_until = NULL, updated_at = now(),
        next_attempt_at = ${dueAfter(sql.fragment`endpoint_id`, sql.fragment`interval '0'`)},
        -- An ordered key moved on when this went dead: the replay goes out as the replay it is, out of the key's
        -- order, and holds none of the key's newer events back.
        ordering_key = NULL
    WHERE status = 'dead' AND id IN (
      SELECT d.id FROM webhooks.deliveries d
      WHERE d.status = 'dead' AND ${endpointExists} AND ${matching({ ...f, status: undefined })}
      ORDER BY d.id LIMIT ${literalInt(batch)}
      FOR UPDATE SKIP LOCKED)
    RETURNING endpoint_id
  )
  SELECT count(*)::int AS moved, count(*) FILTER (WHERE NOT ep.enabled)::int AS parked
  FROM moved LEFT JOIN webhooks.endpoints ep ON ep.id = moved.endpoint_id`;

const Attempt = z.object({
  attempt: z.number(),
  statusCode: z.number().nullable(),
  error: z.string(),
  responseSnippet: z.string().nullable(),
  durationMs: z.number().nullable(),
  workerId: z.string().nullable(),
  createdAt: z.number(),
});
export type AttemptRow = z.infer<typeof Attempt>;

/**
 * The failed attempts of one delivery, oldest first (a success is recorded on the delivery itself). Bounded: a
 * long retry schedule is tens of attempts; the newest `limit` are kept.
 */
export const attemptsOf = (deliveryId: string, limit: number) => sql.type(Attempt)`
  SELECT * FROM (
    SELECT a.attempt, a.status_code AS "statusCode", a.error, a.response_snippet AS "responseSnippet",
           a.duration_ms AS "durationMs", a.worker_id AS "workerId", a.created_at AS "createdAt"
    FROM webhooks.delivery_attempts a
    WHERE a.delivery_id = ${deliveryId}::int8
    ORDER BY a.id DESC LIMIT ${literalInt(limit)}) newest
  ORDER BY "createdAt", attempt`;
