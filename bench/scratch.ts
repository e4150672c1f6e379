// A throwaway embedded Postgres with the schema migrated, for the scripts that measure one statement
// (claim-plan.ts, claim-blocked.ts): nothing streams from it, so its slot is dropped and it keeps no WAL.
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { createLogger } from '../src/log.ts';

/** Runs `work` with a client on a fresh migrated database named after `name`; stops and removes it after. */
export async function withScratchDatabase(name: string, work: (db: pg.Client) => Promise<void>): Promise<void> {
  const postgres = await startEmbeddedPostgres({});
  try {
    await migrate({ databaseUrl: postgres.url, slotName: name, publicationName: name, log: createLogger('warn') });
    const db = new pg.Client({ connectionString: postgres.url });
    db.on('error', () => {}); // the server stopping at the end
    await db.connect();
    await db.query(`SELECT pg_drop_replication_slot($1)`, [name]);
    try {
      await work(db);
    } finally {
      await db.end();
    }
  } finally {
    await postgres.stop();
    await rm(dirname(postgres.dataDir), { recursive: true, force: true });
  }
}

/** `n` endpoints at example.com with valid secrets; their ids. */
export async function insertEndpoints(db: pg.Client, n: number): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO webhooks.endpoints (url, secret)
     SELECT 'https://example.com/' || g, 'whsec_' || encode(decode(md5(g::text) || md5(g::text || 'x'), 'hex'), 'base64')
     FROM generate_series(1, $1::int) g RETURNING id`,
    [n],
  );
  return rows.map((r) => r.id);
}

export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
