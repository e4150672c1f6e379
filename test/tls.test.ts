import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { chmod, chown, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { z } from 'zod';
import { parseDatabaseUrl } from '../src/db/connection-options.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { createDatabasePool } from '../src/db/pool.ts';
import { isRelayError } from '../src/errors.ts';
import { createLogger } from '../src/log.ts';
import { runWalSession } from '../src/replication/wal-stream.ts';
import { test } from './fixtures.ts';
import { newSecret } from './support/postgres.ts';
import { untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

const run = promisify(execFile);

// This file needs a server with ssl=on and a CA of its own, so it runs its own Postgres (as pg-restart does).
// The server certificate names only `localhost`: connecting to 127.0.0.1 shows the host name check at work.
let server: EmbeddedPostgres;
let dir: string;
const file = (name: string) => join(dir, name);

/** A CA (key + self-signed certificate) and, with `signedBy`, a leaf certificate it signs. */
async function openssl(...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}
async function makeCa(name: string): Promise<void> {
  await openssl(
    ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2'],
    ...['-keyout', `${name}.key`, '-out', `${name}.pem`, '-subj', `/CN=${name}`],
    ...['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
  );
}
async function makeLeaf(name: string, ca: string, cn: string, extensions: string): Promise<void> {
  await openssl(
    ...['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
    ...['-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`],
  );
  await writeFile(file(`${name}.ext`), `${extensions}\nbasicConstraints=CA:FALSE\n`);
  await openssl(
    ...['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial'],
    ...['-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`],
  );
}

async function query<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []) {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'outbox-relay-tls-'));
  await chmod(dir, 0o755); // the server (the postgres user, when tests run as root) reads its files here
  await makeCa('ca');
  await makeCa('other-ca');
  await makeLeaf('server', 'ca', 'localhost', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth');
  await makeLeaf('client', 'ca', 'cert_user', 'extendedKeyUsage=clientAuth');
  server = await startEmbeddedPostgres({ settings: { fsync: 'off' } });
  // Postgres refuses a key file others may read, or one owned by somebody else than the server's user.
  const owner = await stat(server.dataDir);
  await chown(file('server.key'), owner.uid, owner.gid);
  await chmod(file('server.key'), 0o600);
  // Client certificates of the CA log in `cert_user` without a password, over TLS only (first matching line).
  const hba = join(server.dataDir, 'pg_hba.conf');
  await writeFile(
    hba,
    `hostssl all cert_user 127.0.0.1/32 cert\nhostssl all cert_user ::1/128 cert\n${await readFile(hba, 'utf8')}`,
  );
  await query(server.url, 'CREATE ROLE cert_user LOGIN');
  for (const [name, value] of [
    ['ssl_cert_file', file('server.pem')],
    ['ssl_key_file', file('server.key')],
    ['ssl_ca_file', file('ca.pem')],
    ['ssl', 'on'],
  ] as const) {
    await query(server.url, `ALTER SYSTEM SET ${name} = '${value}'`);
  }
  await query(server.url, 'SELECT pg_reload_conf()');
  await until(async () => (await query<{ ssl: string }>(server.url, 'SHOW ssl'))[0]?.ssl === 'on', {
    what: 'ssl on after reload',
  });
});

afterAll(async () => {
  await server?.destroy();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

let databases = 0;
/** A new, empty database on the TLS server; `url(host, params)` reaches it as the superuser. */
async function newDatabase() {
  const name = `tls_${++databases}`;
  await query(server.url, `CREATE DATABASE ${name}`);
  const plain = server.url.replace(/\/postgres$/, `/${name}`);
  return {
    name,
    plain,
    /** Slots are cluster-wide: one per database. */
    slot: `slot_${name}`,
    url: (host: 'localhost' | '127.0.0.1', params: Record<string, string>) => {
      const url = new URL(plain);
      url.hostname = host;
      for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
      return url.toString();
    },
  };
}

const relayEnv = (db: { slot: string }, databaseUrl: string) => ({
  DATABASE_URL: databaseUrl,
  SLOT_NAME: db.slot,
  HTTP_PORT: '0',
  ALLOW_PRIVATE_NETWORKS: 'true',
  ALLOW_HTTP: 'true',
  CLAIM_INTERVAL: '100ms',
  STATUS_INTERVAL: '1s',
});

/** The TLS state of every session the relay holds on `db` (its pool and its replication connection). */
const relaySessions = (plainUrl: string, db: string) =>
  query<{ application_name: string; ssl: boolean }>(
    plainUrl,
    `SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid
     WHERE a.datname = $1 AND a.application_name LIKE 'outbox-relay%' ORDER BY 1`,
    [db],
  );

describe('DATABASE_URL TLS parameters', () => {
  test('sslmode=verify-full with the right CA: migrate, stream and deliver a webhook over verified TLS', async ({
    receiver,
    spawnRelay,
  }) => {
    const db = await newDatabase();
    const relay = spawnRelay(
      relayEnv(db, db.url('localhost', { sslmode: 'verify-full', sslrootcert: file('ca.pem') })),
      'run',
    );
    await untilReady(relay);
    await query(db.plain, 'INSERT INTO webhooks.endpoints (url, secret) VALUES ($1, $2)', [receiver.url, newSecret()]);
    const [{ id }] = (await query<{ id: string }>(
      db.plain,
      `INSERT INTO webhooks.outbox (event_type, payload) VALUES ('invoice.paid', '{"id": 42}') RETURNING id`,
    )) as [{ id: string }];
    await until(() => receiver.requests.some((r) => r.headers['webhook-id'] === `msg_${id}`), {
      what: `webhook msg_${id} delivered`,
    });
    const sessions = await relaySessions(db.plain, db.name);
    expect(sessions.map((s) => s.application_name)).toEqual(
      expect.arrayContaining(['outbox-relay', 'outbox-relay stream']),
    );
    expect(sessions.every((s) => s.ssl)).toBe(true);
  });

  test('sslmode=verify-full with a different CA: exit 1 with one line about certificate verification', async ({
    spawnRelay,
  }) => {
    const db = await newDatabase();
    const relay = spawnRelay(
      relayEnv(db, db.url('localhost', { sslmode: 'verify-full', sslrootcert: file('other-ca.pem') })),
      'run',
    );
    expect((await relay.exited).code).toBe(1);
    const lines = relay.stderr().trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `^outbox-relay: cannot connect to the database: the server's certificate was not verified with ` +
          `sslrootcert=${file('other-ca.pem')} \\(.+\\); check sslrootcert or sslmode$`,
      ),
    );
  });

  test('sslmode=require without a CA: encrypted, unverified, and delivers', async ({ receiver, spawnRelay }) => {
    const db = await newDatabase();
    const relay = spawnRelay(relayEnv(db, db.url('127.0.0.1', { sslmode: 'require' })), 'run');
    await untilReady(relay);
    await query(db.plain, 'INSERT INTO webhooks.endpoints (url, secret) VALUES ($1, $2)', [receiver.url, newSecret()]);
    await query(db.plain, `INSERT INTO webhooks.outbox (event_type, payload) VALUES ('invoice.paid', '{}')`);
    await until(() => receiver.requests.length === 1, { what: 'webhook delivered' });
    const sessions = await relaySessions(db.plain, db.name);
    expect(sessions.length).toBeGreaterThanOrEqual(2);
    expect(sessions.every((s) => s.ssl)).toBe(true);
  });

  test('verify-full checks the host name, verify-ca only the CA', async ({ spawnRelay }) => {
    const db = await newDatabase();
    const params = { sslrootcert: file('ca.pem') };
    const full = spawnRelay(relayEnv(db, db.url('127.0.0.1', { ...params, sslmode: 'verify-full' })), 'migrate');
    expect((await full.exited).code).toBe(1);
    expect(full.stderr()).toMatch(
      /^outbox-relay: cannot connect to the database: the server's certificate does not name the host in DATABASE_URL \(.*127\.0\.0\.1.*\); .*sslmode=verify-ca.*\n$/,
    );
    const ca = spawnRelay(relayEnv(db, db.url('127.0.0.1', { ...params, sslmode: 'verify-ca' })), 'migrate');
    expect((await ca.exited).code, ca.stderr()).toBe(0);
  });

  test('sslcert and sslkey log in with a client certificate', async () => {
    const db = await newDatabase();
    const url = new URL(db.url('localhost', { sslrootcert: file('ca.pem'), sslcert: file('client.pem') }));
    url.username = 'cert_user';
    url.password = '';
    url.searchParams.set('sslkey', file('client.key'));
    const pool = await createDatabasePool(url.toString(), { maximumPoolSize: 1 });
    try {
      const row = await pool.one(
        sql.type(z.object({ who: z.string(), ssl: z.boolean() }))`
          SELECT current_user AS who, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`,
      );
      expect(row).toEqual({ who: 'cert_user', ssl: true });
    } finally {
      await pool.end();
    }
  });

  test('each sslmode connects as libpq would: plain, TLS when offered, TLS required', async () => {
    const db = await newDatabase();
    const sslOf = async (params: Record<string, string>) => {
      const pool = await createDatabasePool(db.url('127.0.0.1', params), { maximumPoolSize: 1 });
      try {
        return await pool.oneFirst(
          sql.type(z.object({ ssl: z.boolean() }))`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`,
        );
      } finally {
        await pool.end();
      }
    };
    expect(await sslOf({ sslmode: 'disable' })).toBe(false);
    expect(await sslOf({ sslmode: 'allow' })).toBe(false);
    expect(await sslOf({})).toBe(true); // prefer, libpq's default
    expect(await sslOf({ sslmode: 'prefer' })).toBe(true);
    expect(await sslOf({ sslmode: 'require' })).toBe(true);
    expect(await sslOf({ sslmode: 'verify-ca', sslrootcert: file('ca.pem') })).toBe(true);
  });

  test('a stop that comes while the stream tries TLS (sslmode=prefer) ends the session before it streams', async () => {
    const db = await newDatabase();
    const log = createLogger('silent');
    await migrate({ databaseUrl: db.plain, slotName: db.slot, publicationName: 'outbox_relay', log });
    const stopped = AbortSignal.abort(); // aborted by the time the trial connection returns
    let streamed = false;
    const session = runWalSession(
      {
        databaseUrl: db.url('127.0.0.1', { sslmode: 'prefer' }),
        slotName: db.slot,
        publicationName: 'outbox_relay',
        statusIntervalMs: 1_000,
        streamIdleTimeoutMs: 60_000,
        fanoutBatch: 100,
        maxQueuedBytes: 16 * 2 ** 20,
        log,
        fanOut: () => Promise.resolve({ resolved: Promise.resolve() }),
        confirmedLsn: () => Promise.resolve(undefined),
        onStreaming: () => (streamed = true),
      },
      stopped,
    );
    const outcome = await Promise.race([session.then(() => 'ended'), sleep(5_000).then(() => 'still running')]);
    expect(outcome).toBe('ended');
    expect(streamed).toBe(false);
  });

  test('a certificate file that cannot be read stops the start with a message naming it', async ({ spawnRelay }) => {
    const relay = spawnRelay(
      { DATABASE_URL: `${server.url}?sslmode=verify-full&sslrootcert=${file('missing.pem')}` },
      'migrate',
    );
    expect((await relay.exited).code).toBe(1);
    expect(relay.stderr()).toContain(
      `DATABASE_URL: sslrootcert=${file('missing.pem')} cannot be read (ENOENT); check the path`,
    );
    expect(relay.stderr()).not.toContain('    at ');
  });
});

describe('parseDatabaseUrl', () => {
  const base = 'postgres://u:p@db.example:5432/app?application_name=x';
  const problem = (url: string) => {
    try {
      parseDatabaseUrl(url);
    } catch (err) {
      if (isRelayError(err, 'CONFIG_INVALID')) return err.message;
      throw err;
    }
    return undefined;
  };

  test('takes the TLS parameters out of the URL and keeps the rest', () => {
    const conn = parseDatabaseUrl(`${base}&sslmode=require`);
    expect(conn.url).toBe(base);
    expect(conn).toMatchObject({ sslMode: 'require', ssl: { rejectUnauthorized: false } });
    expect(conn.fallback).toBeUndefined();
  });

  test('modes map to libpq behaviour', () => {
    expect(parseDatabaseUrl(base)).toMatchObject({ sslMode: 'prefer', fallback: false });
    expect(parseDatabaseUrl(`${base}&sslmode=disable`)).toMatchObject({ ssl: false });
    expect(parseDatabaseUrl(`${base}&sslmode=allow`)).toMatchObject({ ssl: false, fallback: {} });
    expect(parseDatabaseUrl(`${base}&sslmode=no-verify`)).toMatchObject({ sslMode: 'require' });
    const full = parseDatabaseUrl(`${base}&sslmode=verify-full`);
    expect(full.ssl).toEqual({ rejectUnauthorized: true }); // the system's CAs, host name checked
    expect(parseDatabaseUrl(`${base}&sslrootcert=system`).sslMode).toBe('verify-full');
  });

  test('sslrootcert turns require into verify-ca and, alone, means verify-full', async () => {
    const dirOf = await mkdtemp(join(tmpdir(), 'outbox-relay-ca-'));
    try {
      await writeFile(join(dirOf, 'ca.pem'), 'CA TEXT');
      const root = `sslrootcert=${join(dirOf, 'ca.pem')}`;
      const require = parseDatabaseUrl(`${base}&sslmode=require&${root}`).ssl;
      expect(require).toMatchObject({ ca: 'CA TEXT', rejectUnauthorized: true });
      expect(require !== false && require.checkServerIdentity?.('db.example', {} as never)).toBeUndefined();
      const alone = parseDatabaseUrl(`${base}&${root}`);
      expect(alone.sslMode).toBe('verify-full');
      expect(alone.ssl).toEqual({ ca: 'CA TEXT', rejectUnauthorized: true });
    } finally {
      await rm(dirOf, { recursive: true });
    }
  });

  test('bad TLS parameters are CONFIG_INVALID, one line each, saying what to fix', () => {
    expect(problem(`${base}&sslmode=verify_full`)).toContain(
      'DATABASE_URL: sslmode: expected one of disable, allow, prefer, require, verify-ca, verify-full, got "verify_full"',
    );
    expect(problem(`${base}&sslmode=verify-ca`)).toContain('sslmode=verify-ca needs sslrootcert=');
    expect(problem(`${base}&sslmode=require&sslrootcert=system`)).toContain('needs sslmode=verify-full');
    expect(problem(`${base}&sslcert=/a.pem`)).toContain('sslcert and sslkey go together');
    expect(problem(`${base}&sslcrl=/crl.pem`)).toContain('the "sslcrl" parameter is not supported');
    expect(problem(`${base}&ssl=true`)).toContain('use sslmode=verify-full');
    expect(problem(`${base}&sslpassword=hunter2&sslcert=/nope&sslkey=/nope`)).not.toContain('hunter2');
  });
});
