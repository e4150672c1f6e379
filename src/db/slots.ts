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

/**
 * What a stream session needs to know before it starts: the server's WAL position now (rows written after it
 * were never seen by an earlier session, so they may be sent from the stream), and whether the endpoints
 * publication may be named (it was created at or before the slot's confirmed position: Postgres 17 refuses to
 * decode a change older than a publication the session names). A missing relay_publications table (a schema
 * migrated by an older relay) reads as not usable.
 */
export const streamStart = (slotName: string, endpointsPublication: string) => sql.type(
  z.object({ walLsn: z.string(), endpointsUsable: z.boolean() }),
)`
  SELECT pg_current_wal_lsn()::text AS "walLsn",
         coalesce((SELECT p.created_lsn <= s.confirmed_flush_lsn
                   FROM webhooks.relay_publications p, pg_replication_slots s
                   WHERE p.pubname = ${endpointsPublication} AND s.slot_name = ${slotName}
                     AND EXISTS (SELECT 1 FROM pg_publication WHERE pubname = ${endpointsPublication})), false)
           AS "endpointsUsable"`;
