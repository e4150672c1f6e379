import pg from 'pg';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';
import { createLogger } from '../src/log.ts';
import { startRelay } from '../src/relay.ts';
import { newSecret } from './support/postgres.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { until } from './support/until.ts';

// This file restarts Postgres, so it runs its own server instead of the shared one.
let server: EmbeddedPostgres;
let receiver: Receiver;
beforeAll(async () => {
  server = await startEmbeddedPostgres({ settings: { fsync: 'off' } });
  receiver = await startReceiver();
});
afterAll(async () => {
  await receiver.close();
  await server.destroy();
});

async function query<R extends pg.QueryResultRow = Record<string, string>>(
  url: string,
  text: string,
  values: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await c.query<R>(text, values);
  } finally {
    await c.end().catch(() => {});
  }
}

const countOf = async (url: string, text: string) => Number((await query<{ n: string }>(url, text)).rows[0]!.n);

/** Inserts events one per transaction until stopped, riding out the outage (failed inserts are simply retried). */
function writeContinuously(url: string): { stop: () => Promise<void> } {
  let running = true;
  const loop = (async () => {
    let client: pg.Client | undefined;
    while (running) {
      try {
        if (client === undefined) {
          client = new pg.Client({ connectionString: url });
          client.on('error', () => {});
          await client.connect();
        }
        await client.query(`INSERT INTO webhooks.outbox (event_type, payload) VALUES ('tick', '{}')`);
      } catch {
        await client?.end().catch(() => {});
        client = undefined;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await client?.end().catch(() => {});
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

test.each(['fast', 'immediate'] as const)(
  'Postgres restarted (%s) while events flow: every committed row is delivered',
  async (mode) => {
    const dbName = `restart_${mode}`;
    await query(server.url, `CREATE DATABASE ${dbName}`);
    const url = server.url.replace(/\/postgres$/, `/${dbName}`);
    const config = loadConfig({
      DATABASE_URL: url,
      SLOT_NAME: `slot_${mode}`,
      HTTP_PORT: '0',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      ALLOW_PRIVATE_NETWORKS: 'true',
      ALLOW_HTTP: 'true',
      CLAIM_INTERVAL: '100ms',
      SWEEP_INTERVAL: '300ms',
      HEARTBEAT_INTERVAL: '500ms',
      REQUEST_TIMEOUT: '1s',
      LEASE: '3s',
      STATUS_INTERVAL: '500ms',
      STREAM_IDLE_TIMEOUT: '5s',
    });
    const relay = await startRelay(config, createLogger(config.logLevel));
    try {
      await query(url, 'INSERT INTO webhooks.endpoints (url, secret) VALUES ($1, $2)', [receiver.url, newSecret()]);
      await until(() => relay.streamState() === 'streaming');
      const writer = writeContinuously(url);
      await until(async () => (await countOf(url, 'SELECT count(*) AS n FROM webhooks.outbox')) >= 200);
      if (mode === 'fast') await server.stop();
      else await server.crash();
      await server.start();
      await until(async () => (await countOf(url, 'SELECT count(*) AS n FROM webhooks.outbox')) >= 600, {
        what: 'writes resumed after the restart',
      });
      await writer.stop();
      const committed = await countOf(url, 'SELECT count(*) AS n FROM webhooks.outbox');
      await until(
        async () => {
          return (
            (await countOf(url, `SELECT count(*) AS n FROM webhooks.deliveries WHERE status = 'delivered'`)) ===
            committed
          );
        },
        { what: `all ${committed} committed rows delivered`, timeoutMs: 60_000, intervalMs: 200 },
      );
      const ids = await query(url, 'SELECT id FROM webhooks.outbox');
      const received = new Set(receiver.requests.map((r) => r.headers['webhook-id']));
      for (const row of ids.rows) expect(received).toContain(`msg_${row.id}`);
      expect(await countOf(url, 'SELECT count(*) AS n FROM webhooks.deliveries')).toBe(committed); // one delivery row per event, replays included
    } finally {
      await relay.stop();
    }
  },
  120_000,
);

test('/readyz turns red while the database is down and green again once it is back; /healthz stays up', async () => {
  const dbName = 'readiness';
  await query(server.url, `CREATE DATABASE ${dbName}`);
  const url = server.url.replace(/\/postgres$/, `/${dbName}`);
  const config = loadConfig({
    DATABASE_URL: url,
    SLOT_NAME: 'slot_readiness',
    HTTP_PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    STATUS_INTERVAL: '500ms',
  });
  const relay = await startRelay(config, createLogger(config.logLevel));
  const status = async (path: string) => (await fetch(`http://127.0.0.1:${relay.httpPort}${path}`)).status;
  try {
    await until(async () => (await status('/readyz')) === 200, { what: 'ready' });
    await server.stop();
    await until(async () => (await status('/readyz')) === 503, { what: 'not ready while the database is down' });
    expect(await status('/healthz')).toBe(200);
    await server.start();
    await until(async () => (await status('/readyz')) === 200, { what: 'ready again', timeoutMs: 60_000 });
  } finally {
    await relay.stop();
  }
}, 120_000);

test('an invalidated slot (wal_status lost) fails loudly and repair recreates it', async () => {
  const dbName = 'invalidated';
  await query(server.url, `CREATE DATABASE ${dbName}`);
  const url = server.url.replace(/\/postgres$/, `/${dbName}`);
  const env = {
    DATABASE_URL: url,
    SLOT_NAME: 'slot_invalidated',
    HTTP_PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ALLOW_PRIVATE_NETWORKS: 'true',
    ALLOW_HTTP: 'true',
  };
  const log = createLogger('silent');
  const { migrate } = await import('../src/db/migrate.ts');
  const { repair } = await import('../src/db/repair.ts');
  await migrate({ databaseUrl: url, slotName: env.SLOT_NAME, publicationName: 'outbox_relay', log });
  await query(server.url, `ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
  await query(server.url, 'SELECT pg_reload_conf()');
  try {
    // Push the slot's retained WAL past the limit, then checkpoint: Postgres invalidates the slot.
    await query(url, 'CREATE TABLE filler (pad text)');
    await until(
      async () => {
        await query(url, `INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 20000)`);
        await query(url, 'SELECT pg_switch_wal()');
        await query(url, 'CHECKPOINT');
        const r = await query<{ wal_status: string }>(
          url,
          'SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1',
          [env.SLOT_NAME],
        );
        return r.rows[0]?.wal_status === 'lost';
      },
      { what: 'slot invalidated', timeoutMs: 60_000 },
    );
    await expect(startRelay(loadConfig(env), log)).rejects.toThrow(/was invalidated.*outbox-relay repair --since/s);
    const relay = await startRelay(loadConfig({ ...env, MIGRATE_ON_START: 'false' }), log);
    try {
      await until(() => relay.streamState() === 'failed', { what: 'stream failed on the lost slot' });
    } finally {
      await relay.stop();
    }
    expect(await repair({ databaseUrl: url, slotName: env.SLOT_NAME, sinceMs: 3_600_000, log })).toMatchObject({
      slot: 'recreated',
    });
    const healed = await startRelay(loadConfig(env), log);
    try {
      await until(() => healed.streamState() === 'streaming', { what: 'streaming the recreated slot' });
    } finally {
      await healed.stop();
    }
  } finally {
    await query(server.url, 'ALTER SYSTEM RESET max_slot_wal_keep_size');
    await query(server.url, 'SELECT pg_reload_conf()');
  }
}, 120_000);
