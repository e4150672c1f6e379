import pg from 'pg';
import { RelayError } from '../errors.ts';
import { firstAttemptAt, subscribes } from '../fanout/queries.ts';
import type { Logger } from '../log.ts';
import { createSlot, MIGRATE_LOCK_KEY } from './migrate.ts';

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
  const client = new pg.Client({ connectionString: o.databaseUrl, application_name: 'outbox-relay repair' });
  client.on('error', (err) => o.log.warn({ err }, 'repair connection error'));
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [MIGRATE_LOCK_KEY]);
    const schema = await client.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'webhooks'`);
    if (schema.rowCount === 0)
      throw new RelayError('USAGE', 'schema "webhooks" does not exist: run "outbox-relay migrate" first');
    const slot = await ensureSlot(client, o);
    return { slot, ...(await fanOutMissing(client, o.sinceMs, o.log, o.batch)) };
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Fans out, as pending rows, every outbox row newer than `sinceMs` that has no delivery at all, in id-range
 * batches. Idempotent (ON CONFLICT); used by repair and by migrate right after it creates a slot.
 */
export async function fanOutMissing(
  client: pg.Client,
  sinceMs: number,
  log: Logger,
  batchSize = 10_000,
): Promise<Omit<RepairResult, 'slot'>> {
  const { rows } = await client.query<{ lo: string | null; hi: string | null }>(
    `SELECT min(id)::text AS lo, max(id)::text AS hi FROM webhooks.outbox
     WHERE created_at >= now() - $1::bigint * interval '1 millisecond'`,
    [sinceMs],
  );
  const result = { scanned: 0, fannedOut: 0, deliveries: 0 };
  const lo = rows[0]?.lo;
  const hi = rows[0]?.hi;
  if (lo === null || lo === undefined || hi === null || hi === undefined) return result;
  const batch = BigInt(batchSize);
  for (let from = BigInt(lo); from <= BigInt(hi); from += batch) {
    const to = from + batch - 1n;
    const r = await client.query<{ events: number; deliveries: number; scanned: number }>(FAN_OUT_MISSING, [
      from.toString(),
      to.toString(),
      sinceMs,
    ]);
    const row = r.rows[0]!;
    result.scanned += row.scanned;
    result.fannedOut += row.events;
    result.deliveries += row.deliveries;
    log.info({ from: from.toString(), to: to.toString(), ...row }, 'fan-out of rows with no deliveries');
  }
  return result;
}

async function ensureSlot(client: pg.Client, o: RepairOptions): Promise<RepairResult['slot']> {
  const { rows } = await client.query<{ wal_status: string | null; active_pid: number | null }>(
    'SELECT wal_status, active_pid FROM pg_replication_slots WHERE slot_name = $1',
    [o.slotName],
  );
  const existing = rows[0];
  if (existing !== undefined && existing.wal_status !== 'lost') return 'kept';
  if (existing !== undefined) {
    if (existing.active_pid !== null) await client.query('SELECT pg_terminate_backend($1)', [existing.active_pid]);
    await client.query('SELECT pg_drop_replication_slot($1)', [o.slotName]);
  }
  await createSlot(client, o.slotName);
  o.log.warn({ slot: o.slotName }, existing === undefined ? 'slot created' : 'invalidated slot dropped and recreated');
  return existing === undefined ? 'created' : 'recreated';
}

const subscribesText = subscribes.sql;
const firstAttemptAtText = firstAttemptAt.sql;

/** Outbox rows in [$1, $2] newer than $3 ms with no delivery at all: fanned out as pending rows. */
const FAN_OUT_MISSING = `
  WITH window_rows AS (
    SELECT o.id, o.event_type, o.endpoint_id FROM webhooks.outbox o
    WHERE o.id BETWEEN $1::bigint AND $2::bigint
      AND o.created_at >= now() - $3::bigint * interval '1 millisecond'
  ), ev AS (
    SELECT w.id AS outbox_id, w.event_type, w.endpoint_id FROM window_rows w
    WHERE NOT EXISTS (SELECT 1 FROM webhooks.deliveries d WHERE d.outbox_id = w.id)
  ), inserted AS (
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, next_attempt_at)
    SELECT ev.outbox_id, ep.id, ${firstAttemptAtText} FROM ev JOIN webhooks.endpoints ep ON ${subscribesText}
    ON CONFLICT (outbox_id, endpoint_id) DO NOTHING
    RETURNING outbox_id
  )
  SELECT (SELECT count(*) FROM window_rows)::int AS scanned,
         (SELECT count(DISTINCT outbox_id) FROM inserted)::int AS events,
         (SELECT count(*) FROM inserted)::int AS deliveries`;
