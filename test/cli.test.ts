import { readdir } from 'node:fs/promises';
import pg from 'pg';
import { expect, inject, test } from 'vitest';
import { spawnRelay } from './support/relay-process.ts';
import { withAdmin } from './support/postgres.ts';

test('bad environment values stop the process with one message naming each variable and the fix', async () => {
  const relay = spawnRelay(
    { DATABASE_URL: 'mysql://nope', HTTP_PORT: '80a', LEASE: 'banana', RETRY_SCHEDULE: '5s,soon', LOG_LEVEL: 'loud' },
    'run',
  );
  const { code } = await relay.exited;
  expect(code).toBe(1);
  const err = relay.stderr();
  expect(err).toContain('DATABASE_URL: expected a postgres:// or postgresql:// connection URL');
  expect(err).toContain('HTTP_PORT: expected a whole number 0-65535, got "80a"');
  expect(err).toContain('LEASE: expected a duration such as 500ms, 30s, 5m or 2h, got "banana"');
  expect(err).toContain('RETRY_SCHEDULE:');
  expect(err).toContain('"soon"');
  expect(err).toContain('LOG_LEVEL:');
  expect(err).not.toContain('    at '); // a message for a human, not a stack trace
});

test('an unknown command exits 2 with usage', async () => {
  const relay = spawnRelay({}, 'frobnicate');
  expect((await relay.exited).code).toBe(2);
  expect(relay.stderr()).toContain('usage: outbox-relay');
});

test('migrate run three times at once leaves exactly one slot and one publication, without error', async () => {
  const adminUrl = inject('pgAdminUrl');
  const name = `m_${Date.now().toString(36)}`;
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const slot = `slot_${name}`;
  try {
    const runs = Array.from({ length: 3 }, () =>
      spawnRelay({ DATABASE_URL: url.toString(), SLOT_NAME: slot, LOG_LEVEL: 'warn' }, 'migrate'),
    );
    const exits = await Promise.all(runs.map((r) => r.exited));
    expect(
      exits.map((e) => e.code),
      runs.map((r) => r.stderr()).join('\n'),
    ).toEqual([0, 0, 0]);
    const c = new pg.Client({ connectionString: url.toString() });
    await c.connect();
    try {
      const slots = await c.query('SELECT slot_name, plugin FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      expect(slots.rows).toEqual([{ slot_name: slot, plugin: 'pgoutput' }]);
      const pubs = await c.query(
        `SELECT pubname, pubinsert, pubupdate, pubdelete FROM pg_publication ORDER BY pubname`,
      );
      // Outbox inserts only (retention's deletes are never streamed); every change of an endpoint.
      expect(pubs.rows).toEqual([
        { pubname: 'outbox_relay', pubinsert: true, pubupdate: false, pubdelete: false },
        { pubname: 'outbox_relay_endpoints', pubinsert: true, pubupdate: true, pubdelete: true },
      ]);
      const tables = await c.query(`SELECT pubname, tablename FROM pg_publication_tables ORDER BY pubname`);
      expect(tables.rows).toEqual([
        { pubname: 'outbox_relay', tablename: 'outbox' },
        { pubname: 'outbox_relay_endpoints', tablename: 'endpoints' },
      ]);
      const recorded = await c.query(`SELECT pubname FROM webhooks.relay_publications`);
      expect(recorded.rows).toEqual([{ pubname: 'outbox_relay_endpoints' }]);
      const versions = await c.query('SELECT version FROM webhooks.schema_migrations');
      const files = (await readdir(new URL('../sql/', import.meta.url))).filter((f) => /^\d{3}_.*\.sql$/.test(f));
      expect(versions.rowCount).toBe(files.length); // each migration applied once
    } finally {
      await c.end();
    }
    // A fourth run, later, is a no-op.
    const again = spawnRelay({ DATABASE_URL: url.toString(), SLOT_NAME: slot, LOG_LEVEL: 'warn' }, 'migrate');
    expect((await again.exited).code).toBe(0);
  } finally {
    await withAdmin(adminUrl, async (c) => {
      await c.query('SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    });
  }
});

test('migrate refuses to create a new slot when the old one is gone and points to repair', async () => {
  const adminUrl = inject('pgAdminUrl');
  const name = `g_${Date.now().toString(36)}`;
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const slot = `slot_${name}`;
  const env = { DATABASE_URL: url.toString(), SLOT_NAME: slot, LOG_LEVEL: 'warn' };
  try {
    expect((await spawnRelay(env, 'migrate').exited).code).toBe(0);
    await withAdmin(adminUrl, (c) => c.query('SELECT pg_drop_replication_slot($1)', [slot]));
    const again = spawnRelay(env, 'migrate');
    expect((await again.exited).code).toBe(1);
    expect(again.stderr()).toContain(`replication slot "${slot}" is missing`);
    expect(again.stderr()).toContain('outbox-relay repair --since');
    await withAdmin(adminUrl, async (c) => {
      const { rowCount } = await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      expect(rowCount).toBe(0);
    });
  } finally {
    await withAdmin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  }
});
