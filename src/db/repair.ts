import { sql } from 'slonik';
import { z } from 'zod';
import { RelayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { ago, firstAttemptAt, subscribes } from './fragments.ts';
import { promoteHeads } from './ordering.ts';
import { withMigrateLock, type Session } from './session.ts';
import { createSlot, dropSlot, slotInfo } from './slots.ts';

export type RepairOptions = { databaseUrl: string; slotName: string; sinceMs: number; log: Logger; batch?: number };
export type RepairResult = {
  slot: 'kept' | 'created' | 'recreated';
  scanned: number;
  fannedOut: number;
  deliveries: number;
};

/**
 * Recovers from a lost slot: recreates it (dropping an invalidated one), then fans out every outbox row of the
 * window that has no delivery rows yet. The slot comes first, so every later commit is streamed and every
 * earlier one is covered by the scan; where the two overlap, ON CONFLICT keeps one row. Idempotent.
 */
export async function repair(o: RepairOptions): Promise<RepairResult> {
  return withMigrateLock(o.databaseUrl, 'outbox-relay repair', async (session) => {
    const schema = await session.exists(sql.unsafe`SELECT 1 FROM pg_namespace WHERE nspname = 'webhooks'`);
    if (!schema) throw new RelayError('USAGE', 'schema "webhooks" does not exist: run "outbox-relay migrate" first');
    const slot = await ensureSlot(session, o);
    return { slot, ...(await fanOutMissing(session, o.slotName, o.sinceMs, o.log, o.batch)) };
  });
}

const UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

const IdRange = z.object({ lo: z.string().nullable(), hi: z.string().nullable() });
const Missing = z.object({ events: z.number(), deliveries: z.number(), scanned: z.number() });

/**
 * Outbox rows with ids in [from, to] newer than `sinceMs` and no delivery at all: fanned out as pending rows.
 * Keyed deliveries of ordered endpoints are written waiting (see sql/007_ordering.sql), placed at `slot`'s start:
 * they committed before it, so before anything it streams; among themselves, in outbox id order.
 */
const fanOutMissingRange = (from: bigint, to: bigint, sinceMs: number, slot: string) => sql.type(Missing)`
  WITH slot_start AS (
    SELECT coalesce((SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = ${slot}),
                    pg_current_wal_lsn()) AS lsn
  ), window_rows AS (
    SELECT o.id, o.event_type, o.endpoint_id, o.tenant, o.ordering_key,
           -- an operational event's subject, as fan-out reads it (aboutEndpoint): never its recipient
           CASE WHEN o.event_type LIKE 'relay.%' AND o.payload ->> 'endpoint_id' ~* ${UUID_PATTERN}
                THEN (o.payload ->> 'endpoint_id')::uuid END AS about_endpoint
    FROM webhooks.outbox o
    WHERE o.id BETWEEN ${from.toString()}::bigint AND ${to.toString()}::bigint AND o.created_at >= ${ago(sinceMs)}
  ), ev AS (
    SELECT w.id AS outbox_id, w.event_type, w.endpoint_id, w.tenant, w.about_endpoint, w.ordering_key
    FROM window_rows w
    WHERE NOT EXISTS (SELECT 1 FROM webhooks.deliveries d WHERE d.outbox_id = w.id)
  ), inserted AS (
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, next_attempt_at, ordering_key, order_lsn)
    SELECT ev.outbox_id, ep.id,
           CASE WHEN ep.ordered AND ev.ordering_key IS NOT NULL THEN 'infinity' ELSE ${firstAttemptAt} END,
           CASE WHEN ep.ordered THEN ev.ordering_key END,
           CASE WHEN ep.ordered AND ev.ordering_key IS NOT NULL THEN (SELECT lsn FROM slot_start) END
    FROM ev JOIN webhooks.endpoints ep ON ${subscribes}
    ON CONFLICT (outbox_id, endpoint_id) DO NOTHING
    RETURNING outbox_id
  )
  SELECT (SELECT count(*) FROM window_rows)::int AS scanned,
         (SELECT count(DISTINCT outbox_id) FROM inserted)::int AS events,
         (SELECT count(*) FROM inserted)::int AS deliveries`;

/**
 * Fans out, as pending rows, every outbox row newer than `sinceMs` that has no delivery at all, in id-range
 * batches. Idempotent (ON CONFLICT); used by repair and by migrate right after it creates a slot.
 */
export async function fanOutMissing(
  session: Session,
  slotName: string,
  sinceMs: number,
  log: Logger,
  batchSize = 10_000,
): Promise<Omit<RepairResult, 'slot'>> {
  const { lo, hi } = await session.one(sql.type(IdRange)`
    SELECT min(id)::text AS lo, max(id)::text AS hi FROM webhooks.outbox WHERE created_at >= ${ago(sinceMs)}`);
  const result = { scanned: 0, fannedOut: 0, deliveries: 0 };
  if (lo === null || hi === null) return result;
  const batch = BigInt(batchSize);
  for (let from = BigInt(lo); from <= BigInt(hi); from += batch) {
    const to = from + batch - 1n;
    const row = await session.one(fanOutMissingRange(from, to, sinceMs, slotName));
    // The heads of the ordered keys written (each keyed delivery was written waiting).
    await session.one(
      promoteHeads(sql.fragment`d.outbox_id BETWEEN ${from.toString()}::bigint AND ${to.toString()}::bigint`),
    );
    result.scanned += row.scanned;
    result.fannedOut += row.events;
    result.deliveries += row.deliveries;
    log.info({ from: from.toString(), to: to.toString(), ...row }, 'fan-out of rows with no deliveries');
  }
  return result;
}

async function ensureSlot(session: Session, o: RepairOptions): Promise<RepairResult['slot']> {
  const existing = await session.maybeOne(slotInfo(o.slotName));
  if (existing !== null && existing.walStatus !== 'lost') return 'kept';
  if (existing !== null) await dropSlot(session, o.slotName, existing.activePid);
  await createSlot(session, o.slotName);
  o.log.warn({ slot: o.slotName }, existing === null ? 'slot created' : 'invalidated slot dropped and recreated');
  return existing === null ? 'created' : 'recreated';
}
