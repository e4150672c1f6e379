import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';
import { coerceError, isRelayError, RelayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { connectWith, parseDatabaseUrl } from './connection-options.ts';
import { fanOutMissing } from './repair.ts';
import { withMigrateLock, type Session } from './session.ts';
import { createSlot, slotInfo, slotLost } from './slots.ts';

const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));

export type MigrateOptions = {
  databaseUrl: string;
  slotName: string;
  publicationName: string;
  log: Logger;
  /** false: schema and publication only (test templates, which are cloned and get their own slots). */
  createSlot?: boolean;
};

export type MigrateResult = { applied: string[]; publicationCreated: boolean; slotCreated: boolean };

/**
 * Creates or upgrades the schema, the publication and the logical slot. Idempotent and safe to run from many
 * processes at once (session advisory lock, see `withMigrateLock`).
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  try {
    return await withMigrateLock(options.databaseUrl, 'outbox-relay migrate', async (session) => {
      const applied = await applyMigrations(session, options.databaseUrl, options.log);
      const publicationCreated = await ensurePublication(session, options.publicationName);
      const slotCreated =
        options.createSlot === false ? false : await ensureSlot(session, options.slotName, options.log);
      options.log.info({ applied, publicationCreated, slotCreated, slot: options.slotName }, 'migrate done');
      return { applied, publicationCreated, slotCreated };
    });
  } catch (err) {
    if (isRelayError(err)) throw err;
    throw new RelayError('MIGRATION_FAILED', `migrate failed: ${coerceError(err).message}`, { cause: err });
  }
}

async function applyMigrations(session: Session, databaseUrl: string, log: Logger): Promise<string[]> {
  await session.query(sql.unsafe`CREATE SCHEMA IF NOT EXISTS webhooks`);
  await session.query(sql.unsafe`
    CREATE TABLE IF NOT EXISTS webhooks.schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  await session.query(sql.unsafe`
    CREATE TABLE IF NOT EXISTS webhooks.relay_slots (
      slot_name text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())`);
  await session.query(sql.unsafe`
    CREATE TABLE IF NOT EXISTS webhooks.relay_publications (
      pubname text PRIMARY KEY, created_lsn pg_lsn NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
  const done = new Set(
    await session.anyFirst(sql.type(z.object({ version: z.number() }))`SELECT version FROM webhooks.schema_migrations`),
  );
  const files = (await readdir(SQL_DIR)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const applied: string[] = [];
  for (const file of files) {
    const version = Number(file.slice(0, 3));
    if (done.has(version)) continue;
    await applyFile(databaseUrl, version, file, await readFile(SQL_DIR + file, 'utf8'));
    log.info({ migration: file }, 'migration applied');
    applied.push(file);
  }
  return applied;
}

/**
 * Applies one migration file and records it, in one transaction. A file is trusted SQL text of many statements,
 * which slonik refuses in one query, so it goes over a plain connection of its own while the caller's session
 * holds the migrate lock. Recording the version in the same transaction makes a second run skip it.
 */
async function applyFile(databaseUrl: string, version: number, file: string, text: string): Promise<void> {
  const conn = parseDatabaseUrl(databaseUrl);
  const client = await connectWith(conn, async (ssl) => {
    const c = new pg.Client({ connectionString: conn.url, ssl, application_name: 'outbox-relay migrate' });
    c.on('error', () => {}); // a dropped connection fails the query below, which reports it
    await c.connect();
    return c;
  });
  try {
    await client.query('BEGIN');
    await client.query(text);
    await client.query('INSERT INTO webhooks.schema_migrations (version, name) VALUES ($1, $2)', [version, file]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw new RelayError('MIGRATION_FAILED', `migration ${file} failed: ${coerceError(err).message}`, { cause: err });
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Fails fast, with the fix, when the schema the relay needs is not there: otherwise every loop would fail and
 * retry forever while readiness stays red with no clear reason.
 */
export async function requireSchema(pool: DatabasePool): Promise<void> {
  const ready = await pool.oneFirst(
    sql.type(z.object({ ready: z.boolean() }))`SELECT to_regclass('webhooks.deliveries') IS NOT NULL AS ready`,
  );
  if (!ready) {
    throw new RelayError(
      'SCHEMA_MISSING',
      'schema "webhooks" is not migrated in this database: run "outbox-relay migrate", or set MIGRATE_ON_START=true',
    );
  }
}

/**
 * Publishes inserts on webhooks.outbox, and every change of webhooks.endpoints in a second publication
 * (`endpointsPublication`), so the relay that streams the slot sees endpoint definitions in commit order with
 * the events and can send without asking the table first. Two publications because `publish` is per
 * publication: the outbox's retention deletes must not be streamed. Repairs publications that drifted.
 *
 * Postgres 17 refuses to decode a change older than a publication the session names, so the endpoints
 * publication's creation position is recorded: a slot still behind it streams without it (and every event goes
 * through the table, as before it existed).
 */
async function ensurePublication(session: Session, name: string): Promise<boolean> {
  const ident = sql.identifier([name]);
  const exists = await session.exists(sql.unsafe`SELECT 1 FROM pg_publication WHERE pubname = ${name}`);
  if (!exists) {
    await session.query(sql.unsafe`CREATE PUBLICATION ${ident} FOR TABLE webhooks.outbox WITH (publish = 'insert')`);
  } else {
    await session.query(sql.unsafe`ALTER PUBLICATION ${ident} SET TABLE webhooks.outbox`);
    await session.query(sql.unsafe`ALTER PUBLICATION ${ident} SET (publish = 'insert')`);
  }
  const endpoints = endpointsPublication(name);
  const endpointsIdent = sql.identifier([endpoints]);
  if (!(await session.exists(sql.unsafe`SELECT 1 FROM pg_publication WHERE pubname = ${endpoints}`))) {
    await session.query(sql.unsafe`CREATE PUBLICATION ${endpointsIdent} FOR TABLE webhooks.endpoints
      WITH (publish = 'insert, update, delete')`);
    await session.query(sql.unsafe`
      INSERT INTO webhooks.relay_publications (pubname, created_lsn) VALUES (${endpoints}, pg_current_wal_lsn())
      ON CONFLICT (pubname) DO UPDATE SET created_lsn = EXCLUDED.created_lsn, created_at = now()`);
  } else {
    await session.query(sql.unsafe`ALTER PUBLICATION ${endpointsIdent} SET TABLE webhooks.endpoints`);
    await session.query(sql.unsafe`ALTER PUBLICATION ${endpointsIdent} SET (publish = 'insert, update, delete')`);
  }
  return !exists;
}

/** The publication of endpoint changes that goes with the outbox publication `name`. */
export function endpointsPublication(name: string): string {
  return `${name.slice(0, 53)}_endpoints`;
}

/**
 * Creates the slot only when no event can have been missed without it: the slot was never created for this
 * schema and the outbox is empty. A slot that existed and is gone (or was invalidated) means events may have
 * been skipped, so we refuse and point to `repair` instead of quietly starting a new slot.
 */
async function ensureSlot(session: Session, slot: string, log: Logger): Promise<boolean> {
  const row = await session.maybeOne(slotInfo(slot));
  if (row !== null) {
    if (row.plugin !== 'pgoutput' || row.database !== row.currentDatabase) {
      throw new RelayError(
        'SLOT_MISSING',
        `replication slot "${slot}" exists but belongs to database "${row.database}" with plugin "${row.plugin}"; set SLOT_NAME to a slot of your own`,
      );
    }
    if (row.walStatus === 'lost') throw slotLost(slot, 'invalidated');
    return false;
  }
  const known = await session.exists(sql.unsafe`SELECT 1 FROM webhooks.relay_slots WHERE slot_name = ${slot}`);
  const outboxHasRows = () => session.exists(sql.unsafe`SELECT 1 FROM webhooks.outbox`);
  if (known || (await outboxHasRows())) throw slotLost(slot, 'missing');
  await createSlot(session, slot);
  // An application that started with us may have committed outbox rows after the emptiness check and before
  // the slot's consistent point: the slot will never stream those. Fan out whatever has no deliveries yet
  // (rows the slot does stream meet ON CONFLICT).
  if (await outboxHasRows()) await fanOutMissing(session, slot, 100 * 365 * 86_400_000, log);
  return true;
}
