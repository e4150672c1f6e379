// The three systems under test, on the same Postgres: how each is set up, fed, reset and started.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

export const SECRET_B64 = Buffer.alloc(32, 7).toString('base64');
export const SECRET = `whsec_${SECRET_B64}`;

/**
 * outbox-relay's environment for the whole run (recorded in the results): its defaults, as a user gets them.
 * Only what a loopback bench needs is set (receivers on 127.0.0.1 over plain http, any free health port), plus
 * the image's own NODE_OPTIONS (a bounded young generation; V8 sizes it from the host's memory otherwise).
 */
export const RELAY_ENV: Record<string, string> = {
  ALLOW_PRIVATE_NETWORKS: 'true',
  ALLOW_HTTP: 'true',
  HTTP_PORT: '0',
  NODE_OPTIONS: '--max-semi-space-size=8',
};
export const POLLER_ENV: Record<string, string> = { WORKERS: '4', BATCH: '500', IN_FLIGHT: '64', POLL_IDLE_MS: '100' };

export type Running = { name: string; child: ChildProcess; stop(): Promise<void>; tail(): string };
export type SystemName = 'outbox-relay' | 'poller' | 'pg-transactional-outbox';

export type System = {
  name: SystemName;
  short: string;
  /** Once per run: schema, publication, slot. */
  setup(db: pg.Client, url: string): Promise<void>;
  /** Before each measurement: empty tables, point at these endpoint URLs. */
  reset(db: pg.Client, urls: string[]): Promise<void>;
  /** One event; $1 = payload text. */
  insertSql: string;
  /** n events in one transaction; $1 = sentAt (float8), $2 = n. */
  burstSql: string;
  /** n pending deliveries written with SQL while the system is stopped; $1 = sentAt, $2 = n. */
  backlogSql: string;
  /** (seq, endpoint url or NULL for every endpoint) of every delivery the system recorded as done. */
  doneSql: string;
  /**
   * Rows the system itself has written so far (inserted, updated, deleted), from pg_stat_user_tables: its
   * delivery bookkeeping, not the application's outbox inserts.
   */
  writesSql: string;
  /** Slots to move to the current WAL position before a start (so no system decodes the others' WAL). */
  slot: string | undefined;
  /** Whether the slot must stay put after the backlog insert (the system reads its backlog from the slot). */
  backlogViaSlot: boolean;
  start(url: string, urls: string[], track: (c: ChildProcess) => void): Promise<Running>;
};

const payloadSql = `jsonb_build_object('seq', g, 'sentAt', $1::float8)`;

function capture(child: ChildProcess): () => string {
  let tail = '';
  const keep = (chunk: Buffer) => (tail = (tail + chunk.toString('utf8')).slice(-4000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => tail;
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

async function untilSlotActive(db: pg.Client, slot: string, child: ChildProcess, tail: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { rows } = await db.query<{ active: boolean }>(
      'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    if (rows[0]?.active === true) return;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${slot} never became active:\n${tail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function untilReadyMessage(child: ChildProcess, tail: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready message:\n${tail()}`)), 30_000);
    child.on('message', (m: { type?: string }) => {
      if (m.type === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', () => reject(new Error(`exited before ready:\n${tail()}`)));
  });
}

/** A fresh sampled W3C traceparent per row, as an application passing its trace context would write. */
const traceparentSql = `'00-' || md5(random()::text) || '-' || left(md5(random()::text), 16) || '-01'`;

/**
 * `cpuProfDir`: run the relay with `--cpu-prof`, one .cpuprofile per measurement (written at its clean exit).
 * `traced`: every event carries a traceparent (`--tracing context` or `export`).
 */
export function relay(monitor: pg.Client, cpuProfDir?: string, traced = false): System {
  const column = traced ? ', traceparent' : '';
  const value = traced ? `, ${traceparentSql}` : '';
  return {
    name: 'outbox-relay',
    short: 'relay',
    async setup(_db, url) {
      const child = spawn(process.execPath, ['src/main.ts', 'migrate'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: url, LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const tail = capture(child);
      const code = await new Promise<number | null>((r) => child.once('exit', r));
      if (code !== 0) throw new Error(`outbox-relay migrate failed:\n${tail()}`);
    },
    async reset(db, urls) {
      await db.query(
        'TRUNCATE webhooks.delivery_attempts, webhooks.deliveries, webhooks.outbox, webhooks.endpoints CASCADE',
      );
      for (const u of urls) await db.query('INSERT INTO webhooks.endpoints (url, secret) VALUES ($1, $2)', [u, SECRET]);
    },
    insertSql: `INSERT INTO webhooks.outbox (event_type, payload${column}) VALUES ('bench.event', $1${value})`,
    burstSql: `INSERT INTO webhooks.outbox (event_type, payload${column}) SELECT 'bench.event', ${payloadSql}${value} FROM generate_series(0, $2::int - 1) g`,
    backlogSql: `WITH o AS (INSERT INTO webhooks.outbox (event_type, payload${column})
                   SELECT 'bench.event', ${payloadSql}${value} FROM generate_series(0, $2::int - 1) g RETURNING id)
                 INSERT INTO webhooks.deliveries (outbox_id, endpoint_id)
                 SELECT o.id, e.id FROM o CROSS JOIN webhooks.endpoints e`,
    writesSql: `SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::float8 AS n FROM pg_stat_user_tables
                WHERE schemaname = 'webhooks' AND relname IN ('deliveries', 'delivery_attempts', 'endpoints')`,
    doneSql: `SELECT (o.payload->>'seq')::int AS seq, e.url FROM webhooks.deliveries d
              JOIN webhooks.outbox o ON o.id = d.outbox_id JOIN webhooks.endpoints e ON e.id = d.endpoint_id
              WHERE d.status = 'delivered'`,
    slot: 'outbox_relay',
    backlogViaSlot: false,
    async start(url, _urls, track) {
      const prof = cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', cpuProfDir];
      const child = spawn(process.execPath, [...prof, 'src/main.ts', 'run'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: url, ...RELAY_ENV },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      track(child);
      const tail = capture(child);
      await untilSlotActive(monitor, 'outbox_relay', child, tail);
      return { name: 'outbox-relay', child, tail, stop: () => stopChild(child, 5_000) };
    },
  };
}

export function poller(): System {
  return {
    name: 'poller',
    short: 'poller',
    async setup(db) {
      await db.query(`CREATE SCHEMA IF NOT EXISTS bench_poll;
        CREATE TABLE IF NOT EXISTS bench_poll.outbox (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_type text NOT NULL, payload jsonb NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(), delivered_at timestamptz);
        CREATE INDEX IF NOT EXISTS outbox_undelivered ON bench_poll.outbox (id) WHERE delivered_at IS NULL;`);
    },
    async reset(db) {
      await db.query('TRUNCATE bench_poll.outbox');
    },
    insertSql: `INSERT INTO bench_poll.outbox (event_type, payload) VALUES ('bench.event', $1)`,
    burstSql: `INSERT INTO bench_poll.outbox (event_type, payload) SELECT 'bench.event', ${payloadSql} FROM generate_series(0, $2::int - 1) g`,
    backlogSql: `INSERT INTO bench_poll.outbox (event_type, payload) SELECT 'bench.event', ${payloadSql} FROM generate_series(0, $2::int - 1) g`,
    doneSql: `SELECT (payload->>'seq')::int AS seq, NULL AS url FROM bench_poll.outbox WHERE delivered_at IS NOT NULL`,
    writesSql: `SELECT coalesce(sum(n_tup_upd + n_tup_del), 0)::float8 AS n FROM pg_stat_user_tables
                WHERE schemaname = 'bench_poll'`,
    slot: undefined,
    backlogViaSlot: false,
    async start(url, urls, track) {
      const child = fork(here('./poller.ts'), [], {
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: url, ENDPOINTS: urls.join(','), SECRET_B64, ...POLLER_ENV },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      });
      track(child);
      const tail = capture(child);
      await untilReadyMessage(child, tail);
      return { name: 'poller', child, tail, stop: () => stopChild(child, 3_000) };
    },
  };
}

export function pgTransactionalOutbox(monitor: pg.Client): System {
  return {
    name: 'pg-transactional-outbox',
    short: 'pgto',
    async setup(db) {
      const { default: lib } = await import('pg-transactional-outbox');
      const cfg = {
        outboxOrInbox: 'outbox' as const,
        database: 'postgres',
        schema: 'bench_pgto',
        table: 'outbox',
        listenerRole: 'postgres',
        publication: 'bench_pgto_pub',
        replicationSlot: 'bench_pgto_slot',
      };
      await db.query(lib.DatabaseSetup.dropAndCreateTable(cfg));
      await db.query(lib.DatabaseSetup.setupReplicationCore(cfg));
      // The slot must be created in its own transaction: run the generated statements one by one.
      for (const stmt of lib.DatabaseSetup.setupReplicationSlot(cfg)
        .split(';')
        .map((s) => s.replace(/--.*$/gm, '').trim())) {
        if (stmt !== '') await db.query(stmt);
      }
    },
    async reset(db) {
      await db.query('TRUNCATE bench_pgto.outbox');
    },
    insertSql: `INSERT INTO bench_pgto.outbox (id, aggregate_type, aggregate_id, message_type, payload, concurrency)
                VALUES (gen_random_uuid(), 'bench', $1::jsonb->>'seq', 'bench.event', $1, 'parallel')`,
    burstSql: `INSERT INTO bench_pgto.outbox (id, aggregate_type, aggregate_id, message_type, payload, concurrency)
               SELECT gen_random_uuid(), 'bench', g::text, 'bench.event', ${payloadSql}, 'parallel' FROM generate_series(0, $2::int - 1) g`,
    backlogSql: `INSERT INTO bench_pgto.outbox (id, aggregate_type, aggregate_id, message_type, payload, concurrency)
                 SELECT gen_random_uuid(), 'bench', g::text, 'bench.event', ${payloadSql}, 'parallel' FROM generate_series(0, $2::int - 1) g`,
    doneSql: `SELECT (payload->>'seq')::int AS seq, NULL AS url FROM bench_pgto.outbox WHERE processed_at IS NOT NULL`,
    writesSql: `SELECT coalesce(sum(n_tup_upd + n_tup_del + CASE WHEN relname = 'outbox' THEN 0 ELSE n_tup_ins END), 0)::float8
                AS n FROM pg_stat_user_tables WHERE schemaname = 'bench_pgto'`,
    slot: 'bench_pgto_slot',
    backlogViaSlot: true,
    async start(url, urls, track) {
      const child = fork(here('./pgto.ts'), [], {
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: url, ENDPOINTS: urls.join(','), SECRET_B64 },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      });
      track(child);
      const tail = capture(child);
      await untilSlotActive(monitor, 'bench_pgto_slot', child, tail);
      return { name: 'pg-transactional-outbox', child, tail, stop: () => stopChild(child, 3_500) };
    },
  };
}

/**
 * outbox-relay fed events that carry ordering keys (`keys` of them, round-robin over the burst's rows), its
 * endpoints ordered or not: the ordered scenario compares the two on the same events.
 */
export function keyed(base: System, keys: number, ordered: boolean): System {
  return {
    ...base,
    async reset(db, urls) {
      await base.reset(db, urls);
      await db.query('UPDATE webhooks.endpoints SET ordered = $1', [ordered]);
    },
    burstSql: `INSERT INTO webhooks.outbox (event_type, payload, ordering_key)
               SELECT 'bench.event', ${payloadSql}, 'key-' || (g % ${keys}) FROM generate_series(0, $2::int - 1) g`,
  };
}
