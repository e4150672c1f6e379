import { once } from 'node:events';
import pg from 'pg';
import { sql } from 'slonik';
import { expect, inject } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, withAdmin, type TestDb } from './support/postgres.ts';
import { relayEnv } from './support/relay.ts';
import { spawnRelay as spawnCommand, untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

/** `url` logged in as `user` (password `password`). */
function as(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password;
  return u.toString();
}

/** Runs `outbox-relay <args>` to the end; stdout and stderr complete. */
async function cli(env: Record<string, string>, args: string[]) {
  const child = spawnCommand(env, args);
  const [code] = (await once(child.child, 'close')) as [number | null];
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

/** Runs SQL text of many statements (what a DBA pipes into psql) on one connection. */
async function apply(url: string, text: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

const statusOf = (db: TestDb, outboxId: string) =>
  db.pool.one(sql.type(z.object({ status: z.string(), attempts: z.number(), failed: z.number() }))`
    SELECT d.status, d.attempts, (SELECT count(*) FROM webhooks.delivery_attempts a WHERE a.delivery_id = d.id)::int AS failed
    FROM webhooks.deliveries d WHERE d.outbox_id = ${outboxId}`);

test('a LOGIN REPLICATION role that owns nothing runs the relay with exactly the grants "grants --role" prints', async ({
  db,
  receiver,
  spawnRelay,
  onTestFinished,
}) => {
  // Needs quoting (upper case, a hyphen): the printed statements must quote it.
  const role = `Relay-${db.name}`;
  const app = `app_${db.name}`;
  const password = 'relay-pw';
  const adminUrl = inject('pgAdminUrl');
  onTestFinished(async () => {
    // After the fixtures dropped the database (and its privileges): nothing else depends on the roles.
    await withAdmin(adminUrl, async (c) => {
      await c.query(`DROP ROLE IF EXISTS "${role}"`);
      await c.query(`DROP ROLE IF EXISTS ${app}`);
    });
  });
  await withAdmin(adminUrl, async (c) => {
    await c.query(`CREATE ROLE "${role}" LOGIN REPLICATION PASSWORD '${password}'`);
    await c.query(`CREATE ROLE ${app} LOGIN PASSWORD '${password}'`);
  });

  // The superuser migrated the database (the fixture); it prints the grants and a DBA applies them as printed.
  const printed = await cli(relayEnv(db), ['grants', '--role', role]);
  expect(printed.code, printed.stderr).toBe(0);
  expect(printed.stdout).toContain(`GRANT USAGE ON SCHEMA webhooks TO "${role}";`);
  expect(printed.stderr).toBe('');
  await apply(db.url, printed.stdout);
  // The application's grants are printed as comments, for a role of its own.
  const appGrants = printed.stdout
    .split('\n')
    .filter((line) => /^-- {3}GRANT /.test(line))
    .map((line) => line.replace(/^-- {3}/, '').replace('<app role>', app));
  expect(appGrants).toContain(`GRANT INSERT ON TABLE webhooks.outbox TO <app role>;`.replace('<app role>', app));
  await apply(db.url, appGrants.join('\n'));

  await addEndpoint(db, receiver.url);
  receiver.reply((_req, i) => (i === 0 ? { status: 500 } : { status: 204 })); // fails once, then succeeds
  const env = relayEnv(db, { DATABASE_URL: as(db.url, role, password), MIGRATE_ON_START: 'false' });
  const relay = spawnRelay(env, 'run');
  await untilReady(relay);

  // The application writes the event under its own role.
  const appClient = new pg.Client({ connectionString: as(db.url, app, password) });
  await appClient.connect();
  const { rows } = await appClient
    .query<{ id: string }>(
      `INSERT INTO webhooks.outbox (event_type, payload) VALUES ('invoice.paid', '{}') RETURNING id`,
    )
    .then(async (inserted) => {
      // webhooks.emit() works with the printed EXECUTE grant (a tenant with no endpoint: nothing to deliver).
      await appClient.query(`SELECT webhooks.emit(event_type => 'x', payload => '{}', tenant => 'nobody')`);
      return inserted;
    })
    .finally(() => appClient.end());
  const outboxId = rows[0]!.id;
  await until(async () => (await statusOf(db, outboxId)).status === 'delivered', { what: 'delivered after a retry' });
  expect(await statusOf(db, outboxId)).toEqual({ status: 'delivered', attempts: 2, failed: 1 });
  expect(receiver.requests).toHaveLength(2);

  // The operator's read commands work as that role too.
  const status = await cli(env, ['status', '--json']);
  expect(status.code, status.stderr).toBe(0);
  expect(JSON.parse(status.stdout)).toMatchObject({ ok: true, slot: { active: true }, deliveries: { delivered: 1 } });
  const list = await cli(env, ['deliveries', 'list', '--json']);
  expect(list.code, list.stderr).toBe(0);

  // Least privilege: the relay keeps endpoint health but cannot redirect an endpoint or drop the schema's tables.
  const relayClient = new pg.Client({ connectionString: as(db.url, role, password) });
  await relayClient.connect();
  try {
    await expect(relayClient.query(`UPDATE webhooks.endpoints SET url = 'https://evil.example/'`)).rejects.toThrow(
      /permission denied/,
    );
    await expect(relayClient.query(`TRUNCATE webhooks.deliveries`)).rejects.toThrow(/permission denied/);
    // Operational events are written by definer functions: the relay itself cannot write the outbox.
    await expect(
      relayClient.query(`INSERT INTO webhooks.outbox (event_type, payload) VALUES ('relay.fake', '{}')`),
    ).rejects.toThrow(/permission denied/);
  } finally {
    await relayClient.end();
  }

  relay.kill('SIGTERM');
  expect((await relay.exited).code).toBe(0);
  // Every loop ran (sweep, retention, stats, claims, outcome writes) and none hit a missing privilege.
  expect(relay.stdout()).not.toContain('permission denied');
  expect(relay.logs.filter((l) => typeof l.level === 'number' && l.level >= 50)).toEqual([]);
});

test('grants refuses a role name GRANT would read as something else, and a database with no schema', async ({ db }) => {
  const publicRole = await cli(relayEnv(db), ['grants', '--role', 'PUBLIC']);
  expect(publicRole.code).toBe(2);
  expect(publicRole.stderr).toContain('--role: "PUBLIC" cannot be a role name');
  const missing = await cli(relayEnv(db), ['grants']);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toContain('--role: the name of the role "run" uses is required');

  const empty = `e_${db.name}`;
  const adminUrl = inject('pgAdminUrl');
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE ${empty}`));
  try {
    const url = new URL(db.url);
    url.pathname = `/${empty}`;
    const none = await cli(relayEnv(db, { DATABASE_URL: url.toString() }), ['grants', '--role', 'relay']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('schema "webhooks" is missing or incomplete: run "outbox-relay migrate" first');
  } finally {
    await withAdmin(adminUrl, (c) => c.query(`DROP DATABASE ${empty} WITH (FORCE)`));
  }
});

test('grants --json lists the statements and says what the role lacks', async ({ db }) => {
  const out = await cli(relayEnv(db), ['grants', '--role', 'nobody_yet', '--json']);
  expect(out.code, out.stderr).toBe(0);
  const grants = JSON.parse(out.stdout) as { quotedRole: string; missingAttributes: null; statements: string[] };
  expect(grants).toMatchObject({ quotedRole: 'nobody_yet', missingAttributes: null });
  expect(grants.statements).toContain(
    'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE webhooks.deliveries TO nobody_yet;',
  );
  expect(out.stderr).toContain('role "nobody_yet" does not exist yet; create it LOGIN REPLICATION');
});
