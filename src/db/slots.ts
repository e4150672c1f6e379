// The replication slot as the database sees it: create, read, and the error that says it is gone.
import { sql } from 'slonik';
import { z } from 'zod';
import { RelayError } from '../errors.ts';
import { SqlState, sqlStateOf } from './pg-errors.ts';
import type { Session } from './session.ts';

export const slotConfirmedLsn = (slotName: string) => sql.type(z.object({ lsn: z.string().nullable() }))`
  SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${slotName}`;

const SlotRow = z.object({
  plugin: z.string().nullable(),
  database: z.string().nullable(),
  walStatus: z.string().nullable(),
  activePid: z.number().nullable(),
  currentDatabase: z.string(),
});

/** The slot's row in pg_replication_slots, with the session's database to compare; null when there is none. */
export const slotInfo = (slotName: string) => sql.type(SlotRow)`
  SELECT plugin, database, wal_status AS "walStatus", active_pid AS "activePid",
         current_database() AS "currentDatabase"
  FROM pg_replication_slots WHERE slot_name = ${slotName}`;

/** Creates the slot (its own statement, outside any transaction that has written) and records it. */
export async function createSlot(session: Session, slotName: string): Promise<void> {
  try {
    await session.query(sql.unsafe`SELECT pg_create_logical_replication_slot(${slotName}, 'pgoutput')`);
  } catch (err) {
    if (sqlStateOf(err) !== SqlState.DUPLICATE_OBJECT) throw err;
  }
  await session.query(
    sql.unsafe`INSERT INTO webhooks.relay_slots (slot_name) VALUES (${slotName}) ON CONFLICT DO NOTHING`,
  );
}

/** Drops the slot, ending the connection that streams it first. */
export async function dropSlot(session: Session, slotName: string, activePid: number | null): Promise<void> {
  if (activePid !== null) await session.query(sql.unsafe`SELECT pg_terminate_backend(${activePid})`);
  await session.query(sql.unsafe`SELECT pg_drop_replication_slot(${slotName})`);
}

/** The slot is gone or unusable: events committed meanwhile may not have been fanned out. Points to repair. */
export function slotLost(slotName: string, how: 'missing' | 'invalidated', options?: ErrorOptions): RelayError {
  const what = how === 'missing' ? 'is missing' : 'was invalidated (wal_status = lost)';
  return new RelayError(
    how === 'missing' ? 'SLOT_MISSING' : 'SLOT_INVALIDATED',
    `replication slot "${slotName}" ${what}: outbox events committed meanwhile may not have been fanned out. ` +
      `Run "outbox-relay repair --since <duration>" (e.g. --since 24h) to recreate the slot and fan out every ` +
      `outbox row of that window that has no deliveries yet.`,
    options,
  );
}
