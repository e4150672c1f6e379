import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { RelayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { SqlState, sqlStateOf } from './pg-errors.ts';
import { fanOutMissing } from './repair.ts';

const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));
/** Serialises migrate across replicas and processes: one key for the whole database. */
export const MIGRATE_LOCK_KEY = 'outbox-relay:migrate';

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
 * processes at once (session advisory lock). Runs on one plain `pg` session because it needs a session-level
 * lock, multi-statement files, and a slot created outside any transaction that has written.
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const client = new pg.Client({ connectionString: options.databaseUrl, application_name: 'outbox-relay migrate' });
  client.on('error', (err) => options.log.warn({ err }, 'migrate connection error'));
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [MIGRATE_LOCK_KEY]);
    const applied = await applyMigrations(client, options.log);
    const publicationCreated = await ensurePublication(client, options.publicationName);
    const slotCreated = options.createSlot === false ? false : await ensureSlot(client, options.slotName, options.log);
    options.log.info({ applied, publicationCreated, slotCreated, slot: options.slotName }, 'migrate done');
    return { applied, publicationCreated, slotCreated };
  } catch (err) {
    if (err instanceof RelayError) throw err;
    throw new RelayError('MIGRATION_FAILED', `migrate failed: ${(err as Error).message}`, { cause: err });
  } finally {
    await client.end().catch(() => {});
  }
}

async function applyMigrations(client: pg.Client, log: Logger): Promise<string[]> {
  await client.query(`
    CREATE SCHEMA IF NOT EXISTS webhooks;
    CREATE TABLE IF NOT EXISTS webhooks.schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE IF NOT EXISTS webhooks.relay_slots (
      slot_name text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now());`);
  const done = new Set(
    (await client.query<{ version: number }>('SELECT version FROM webhooks.schema_migrations')).rows.map(
      (r) => r.version,
    ),
  );
  const files = (await readdir(SQL_DIR)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const applied: string[] = [];
  for (const file of files) {
    const version = Number(file.slice(0, 3));
    if (done.has(version)) continue;
    const text = await readFile(SQL_DIR + file, 'utf8');
    await client.query('BEGIN');
    try {
      await client.query(text);
      await client.query('INSERT INTO webhooks.schema_migrations (version, name) VALUES ($1, $2)', [version, file]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw new RelayError('MIGRATION_FAILED', `migration ${file} failed: ${(err as Error).message}`, { cause: err });
    }
    log.info({ migration: file }, 'migration applied');
    applied.push(file);
  }
  return applied;
}

/** Publishes inserts on webhooks.outbox only; repairs a publication that drifted. */
async function ensurePublication(client: pg.Client, name: string): Promise<boolean> {
  const ident = client.escapeIdentifier(name);
  const { rowCount } = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [name]);
  if (rowCount === 0) {
    await client.query(`CREATE PUBLICATION ${ident} FOR TABLE webhooks.outbox WITH (publish = 'insert')`);
    return true;
  }
  await client.query(`ALTER PUBLICATION ${ident} SET TABLE webhooks.outbox`);
  await client.query(`ALTER PUBLICATION ${ident} SET (publish = 'insert')`);
  return false;
}

/**
 * Creates the slot only when no event can have been missed without it: the slot was never created for this
 * schema and the outbox is empty. A slot that existed and is gone (or was invalidated) means events may have
 * been skipped, so we refuse and point to `repair` instead of quietly starting a new slot.
 */
async function ensureSlot(client: pg.Client, slot: string, log: Logger): Promise<boolean> {
  const existing = await client.query<{ plugin: string; database: string; wal_status: string | null }>(
    'SELECT plugin, database, wal_status FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  const row = existing.rows[0];
  if (row !== undefined) {
    const db = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db;
    if (row.plugin !== 'pgoutput' || row.database !== db) {
      throw new RelayError(
        'SLOT_MISSING',
        `replication slot "${slot}" exists but belongs to database "${row.database}" with plugin "${row.plugin}"; set SLOT_NAME to a slot of your own`,
      );
    }
    if (row.wal_status === 'lost') throw slotLost(slot, 'was invalidated (wal_status = lost)');
    return false;
  }
  const known = await client.query('SELECT 1 FROM webhooks.relay_slots WHERE slot_name = $1', [slot]);
  const outboxHasRows = (await client.query('SELECT 1 FROM webhooks.outbox LIMIT 1')).rowCount !== 0;
  if (known.rowCount !== 0 || outboxHasRows) throw slotLost(slot, 'is missing');
  await createSlot(client, slot);
  // An application that started with us may have committed outbox rows after the emptiness check and before
  // the slot's consistent point: the slot will never stream those. Fan out whatever has no deliveries yet
  // (rows the slot does stream meet ON CONFLICT).
  if ((await client.query('SELECT 1 FROM webhooks.outbox LIMIT 1')).rowCount !== 0) {
    await fanOutMissing(client, 100 * 365 * 86_400_000, log);
  }
  return true;
}

/** Creates the slot (its own statement, outside any transaction that has written) and records it. */
export async function createSlot(client: pg.Client, slot: string): Promise<void> {
  try {
    await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
  } catch (err) {
    if (sqlStateOf(err) !== SqlState.DUPLICATE_OBJECT) throw err;
  }
  await client.query('INSERT INTO webhooks.relay_slots (slot_name) VALUES ($1) ON CONFLICT DO NOTHING', [slot]);
}

export function slotLost(slot: string, what: string): RelayError {
  return new RelayError(
    what.includes('invalidated') ? 'SLOT_INVALIDATED' : 'SLOT_MISSING',
    `replication slot "${slot}" ${what}: outbox events committed meanwhile may not have been fanned out. ` +
      `Run "outbox-relay repair --since <duration>" (e.g. --since 24h) to recreate the slot and fan out every ` +
      `outbox row of that window that has no deliveries yet.`,
  );
}
