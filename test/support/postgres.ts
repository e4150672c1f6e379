import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { sql, type DatabasePool } from 'slonik';
import { inject } from 'vitest';
import { z } from 'zod';
import { migrate } from '../../src/db/migrate.ts';
import { createDatabasePool } from '../../src/db/pool.ts';
import { createLogger } from '../../src/log.ts';
import { until } from './until.ts';
import type { OutboxEvent } from '../../src/domain.ts';

export type TestDb = {
  name: string;
  url: string;
  slotName: string;
  publicationName: string;
  pool: DatabasePool;
  /** A plain pg client for application-style writes (explicit transactions). */
  app: pg.Client;
  drop(): Promise<void>;
};

/** A fresh database cloned from the migrated template, with its own replication slot. */
export async function cloneTemplate(options: { slot?: boolean } = {}): Promise<TestDb> {
  const adminUrl = inject('pgAdminUrl');
  const name = `t_${randomBytes(5).toString('hex')}`;
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${inject('pgTemplate')}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const slotName = `slot_${name}`;
  const publicationName = 'outbox_relay';
  if (options.slot !== false) {
    await migrate({ databaseUrl: url.toString(), slotName, publicationName, log: createLogger('warn') });
  }
  const pool = await createDatabasePool(url.toString(), { maximumPoolSize: 4 });
  const app = new pg.Client({ connectionString: url.toString() });
  app.on('error', () => {});
  await app.connect();
  return {
    name,
    url: url.toString(),
    slotName,
    publicationName,
    pool,
    app,
    drop: async () => {
      // Every session on the database goes first: a query left waiting (on a lock a failed test left held, or on
      // a link it broke) would keep app.end() and pool.end() waiting for it forever.
      await withAdmin(adminUrl, (c) =>
        c.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [name],
        ),
      );
      await app.end().catch(() => {});
      await pool.end();
      await withAdmin(adminUrl, async (c) => {
        // A stopped relay's WAL sender can outlive its client for a moment, and an active slot blocks both
        // dropping it and dropping the database: terminate it and wait until the slot is free.
        await until(
          async () => {
            const { rows } = await c.query<{ active: boolean }>(
              `SELECT active, pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`,
              [slotName],
            );
            return rows.every((r) => !r.active);
          },
          { what: `slot ${slotName} released` },
        );
        await c.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [
          slotName,
        ]);
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      });
    },
  };
}

export async function withAdmin<T>(adminUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const SECRET_BYTES = 32;
export const newSecret = () => `whsec_${randomBytes(SECRET_BYTES).toString('base64')}`;

/** Registers an endpoint the way an application would; returns its id and secret. */
export async function addEndpoint(
  db: TestDb,
  url: string,
  options: {
    eventTypes?: string[] | null;
    enabled?: boolean;
    secret?: string;
    ordered?: boolean;
    tenant?: string;
  } = {},
): Promise<{ id: string; secret: string }> {
  const secret = options.secret ?? newSecret();
  const eventTypes = options.eventTypes === undefined || options.eventTypes === null ? null : options.eventTypes;
  const id = await db.pool.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO webhooks.endpoints (url, secret, event_types, enabled, ordered, tenant)
    VALUES (${url}, ${secret}, ${eventTypes === null ? null : sql.array(eventTypes, 'text')}, ${options.enabled ?? true},
            ${options.ordered ?? false}, ${options.tenant ?? null})
    RETURNING id`);
  return { id, secret };
}

/** Inserts outbox rows one transaction each, as an application would; returns their ids. */
export async function insertEvents(
  db: TestDb,
  events: readonly { type: string; payload: string; endpointId?: string; tenant?: string }[],
): Promise<string[]> {
  const ids: string[] = [];
  for (const e of events) {
    const { rows } = await db.app.query<{ id: string }>(
      'INSERT INTO webhooks.outbox (event_type, payload, endpoint_id, tenant) VALUES ($1, $2::jsonb, $3, $4) RETURNING id',
      [e.type, e.payload, e.endpointId ?? null, e.tenant ?? null],
    );
    ids.push(rows[0]!.id);
  }
  return ids;
}

export const countWhere = (db: TestDb, status: string) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM webhooks.deliveries WHERE status = ${status}`);

/**
 * Outbox rows as the stream decodes them, for driving fan-out directly: type `eventType`, no target, tenant or
 * trace; `extra(i)` sets more (an ordering key, a commit LSN). The payload is a placeholder: fan-out never reads it.
 */
export function asEvents(
  ids: readonly string[],
  eventType: string,
  extra: (i: number) => Partial<OutboxEvent> = () => ({}),
): OutboxEvent[] {
  return ids.map((id, i) => ({
    id,
    eventType,
    endpointId: null,
    tenant: null,
    orderingKey: null,
    traceparent: null,
    payload: '{}',
    createdAtMs: Date.now(),
    ...extra(i),
  }));
}
