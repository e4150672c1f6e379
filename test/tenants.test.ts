import pg from 'pg';
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { repair } from '../src/db/repair.ts';
import { createLogger } from '../src/log.ts';
import { test } from './fixtures.ts';
import { cli } from './support/cli.ts';
import { countWhere, newSecret, type TestDb } from './support/postgres.ts';
import { until } from './support/until.ts';

/** A small seeded generator (mulberry32), so a failing run can be repeated with its seed. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  return { next, pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]! };
}

/** Inserts an endpoint as an application would (plain pg: errors carry the server's own message). */
const addTenantEndpoint = async (
  db: TestDb,
  url: string,
  tenant: string | null,
  eventTypes: string[] | null = null,
) => {
  const { rows } = await db.app.query<{ id: string }>(
    'INSERT INTO webhooks.endpoints (url, secret, tenant, event_types) VALUES ($1, $2, $3, $4) RETURNING id',
    [url, newSecret(), tenant, eventTypes],
  );
  return rows[0]!.id;
};

const CAP_MESSAGE = (tenant: string, cap: number) =>
  `tenant '${tenant}' already has ${cap} endpoints, its cap (webhooks.settings max_endpoints_per_tenant = ${cap}); ` +
  `delete one, or raise the cap: UPDATE webhooks.settings SET value = '${cap * 2}' WHERE key = 'max_endpoints_per_tenant'`;

test('randomized: each receiver gets exactly its own tenant’s events (none is a tenant too), by emit and by INSERT', async ({
  db,
  receiver,
  startRelay,
}) => {
  const seed = Date.now() % 1_000_000;
  const rand = random(seed);
  const tenants = ['acme', 'globex', null] as const;
  const types = ['invoice.paid', 'user.created'];
  const label = (t: string | null) => t ?? 'none';
  // Per tenant: one endpoint for every type, one for invoice.paid only, and one targeted by some events.
  const endpoints: { id: string; tenant: string | null; path: string; types: string[] | null }[] = [];
  for (const tenant of tenants) {
    for (const [name, eventTypes] of [
      ['all', null],
      ['invoices', ['invoice.paid']],
      ['target', ['nothing.by.type']],
    ] as const) {
      const path = `/hooks/${label(tenant)}-${name}`;
      const id = await addTenantEndpoint(
        db,
        `${receiver.url}/${label(tenant)}-${name}`,
        tenant,
        eventTypes && [...eventTypes],
      );
      endpoints.push({ id, tenant, path, types: eventTypes && [...eventTypes] });
    }
  }
  await startRelay();

  // 120 events in 30 transactions, tenants and ways of writing mixed within a transaction.
  const expected = new Map<string, Set<string>>(endpoints.map((e) => [e.path, new Set()]));
  let n = 0;
  for (let tx = 0; tx < 30; tx++) {
    await db.app.query('BEGIN');
    const written: { n: number; tenant: string | null; type: string; target: string | null; id: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const tenant = rand.pick(tenants);
      const type = rand.pick(types);
      const target =
        rand.next() < 0.2 ? endpoints.find((e) => e.tenant === tenant && e.path.endsWith('-target'))! : null;
      const payload = JSON.stringify({ n: ++n, tenant });
      const { rows } =
        rand.next() < 0.5
          ? await db.app.query<{ id: string }>(
              'SELECT webhooks.emit(event_type => $1, payload => $2::jsonb, tenant => $3, endpoint_id => $4)::text AS id',
              [type, payload, tenant, target?.id ?? null],
            )
          : await db.app.query<{ id: string }>(
              'INSERT INTO webhooks.outbox (event_type, payload, tenant, endpoint_id) VALUES ($1, $2, $3, $4) RETURNING id',
              [type, payload, tenant, target?.id ?? null],
            );
      written.push({ n, tenant, type, target: target?.path ?? null, id: rows[0]!.id });
    }
    await db.app.query('COMMIT');
    for (const w of written) {
      for (const e of endpoints) {
        const gets =
          w.target !== null
            ? e.path === w.target
            : e.tenant === w.tenant && (e.types === null || e.types.includes(w.type));
        if (gets) expected.get(e.path)!.add(`msg_${w.id}`);
      }
    }
  }
  const total = [...expected.values()].reduce((sum, s) => sum + s.size, 0);
  await until(() => receiver.requests.length >= total, { what: `${total} deliveries (seed ${seed})` });
  await new Promise((r) => setTimeout(r, 300)); // anything misrouted would arrive with the rest
  for (const e of endpoints) {
    const got = receiver.requests.filter((r) => r.path === e.path);
    const ids = got.map((r) => String(r.headers['webhook-id']));
    expect(new Set(ids), `${e.path} (seed ${seed})`).toEqual(expected.get(e.path));
    expect(ids, `${e.path}: once each (seed ${seed})`).toHaveLength(expected.get(e.path)!.size);
    for (const r of got) {
      const { data } = JSON.parse(r.body) as { data: { tenant: string | null } };
      expect(data.tenant, `${e.path} got another tenant's event (seed ${seed})`).toBe(e.tenant);
    }
  }
  expect(receiver.requests).toHaveLength(total);
});

test('an event targeting an endpoint of another tenant is refused, and an endpoint’s tenant never changes', async ({
  db,
}) => {
  const acme = await addTenantEndpoint(db, 'https://acme.example/hooks', 'acme');
  const untenanted = await addTenantEndpoint(db, 'https://single.example/hooks', null);
  await expect(
    db.app.query(`SELECT webhooks.emit(event_type => 'x', payload => '{}', tenant => 'globex', endpoint_id => $1)`, [
      acme,
    ]),
  ).rejects.toThrow(`endpoint ${acme} belongs to tenant 'acme', the event to tenant 'globex'`);
  await expect(
    db.app.query(`INSERT INTO webhooks.outbox (event_type, payload, endpoint_id) VALUES ('x', '{}', $1)`, [acme]),
  ).rejects.toThrow(`endpoint ${acme} belongs to tenant 'acme', the event to no tenant`);
  await expect(
    db.app.query(
      `INSERT INTO webhooks.outbox (event_type, payload, endpoint_id, tenant) VALUES ('x', '{}', $1, 'acme')`,
      [untenanted],
    ),
  ).rejects.toThrow(`endpoint ${untenanted} belongs to no tenant, the event to tenant 'acme'`);
  // Within the tenant it goes in.
  await db.app.query(`SELECT webhooks.emit(event_type => 'x', payload => '{}', tenant => 'acme', endpoint_id => $1)`, [
    acme,
  ]);
  await expect(db.app.query(`UPDATE webhooks.endpoints SET tenant = 'globex' WHERE id = $1`, [acme])).rejects.toThrow(
    'webhooks.endpoints.tenant cannot change',
  );
  await expect(
    db.app.query(`UPDATE webhooks.endpoints SET tenant = 'acme' WHERE id = $1`, [untenanted]),
  ).rejects.toThrow('webhooks.endpoints.tenant cannot change');
  await expect(
    db.app.query(`INSERT INTO webhooks.endpoints (url, secret, tenant) VALUES ('https://x.example', $1, '')`, [
      newSecret(),
    ]),
  ).rejects.toThrow('endpoint_tenant_1_to_255_chars');
});

test('the 21st endpoint of a tenant is refused with a message naming the cap and how to raise it; no tenant is not capped', async ({
  db,
}) => {
  for (let i = 0; i < 20; i++) await addTenantEndpoint(db, `https://acme.example/${i}`, 'acme');
  await expect(addTenantEndpoint(db, 'https://acme.example/20', 'acme')).rejects.toThrow(CAP_MESSAGE('acme', 20));
  // Other tenants and endpoints without a tenant are not held to acme's count.
  await addTenantEndpoint(db, 'https://globex.example/0', 'globex');
  for (let i = 0; i < 25; i++) await addTenantEndpoint(db, `https://single.example/${i}`, null);
  // Raised as the message says, the insert goes in; a multi-row insert counts its own rows.
  await db.app.query(`UPDATE webhooks.settings SET value = '22' WHERE key = 'max_endpoints_per_tenant'`);
  await addTenantEndpoint(db, 'https://acme.example/20', 'acme');
  await expect(
    db.app.query(
      `INSERT INTO webhooks.endpoints (url, secret, tenant) VALUES ('https://acme.example/21', $1, 'acme'), ('https://acme.example/22', $1, 'acme')`,
      [newSecret()],
    ),
  ).rejects.toThrow(CAP_MESSAGE('acme', 22));
  await expect(
    db.app.query(`UPDATE webhooks.settings SET value = 'many' WHERE key = 'max_endpoints_per_tenant'`),
  ).rejects.toThrow('settings_max_endpoints_per_tenant_whole_number');
});

test('two transactions adding a tenant’s last allowed endpoint at once: one commits, the other is refused', async ({
  db,
}) => {
  await db.app.query(`UPDATE webhooks.settings SET value = '3' WHERE key = 'max_endpoints_per_tenant'`);
  for (let i = 0; i < 2; i++) await addTenantEndpoint(db, `https://acme.example/${i}`, 'acme');
  const other = new pg.Client({ connectionString: db.url });
  await other.connect();
  try {
    await db.app.query('BEGIN');
    await db.app.query(
      `INSERT INTO webhooks.endpoints (url, secret, tenant) VALUES ('https://acme.example/a', $1, 'acme')`,
      [newSecret()],
    );
    await other.query('BEGIN');
    const second = other
      .query(`INSERT INTO webhooks.endpoints (url, secret, tenant) VALUES ('https://acme.example/b', $1, 'acme')`, [
        newSecret(),
      ])
      .then(
        () => 'inserted',
        (err: Error) => err.message,
      );
    await new Promise((r) => setTimeout(r, 200)); // the second waits on the tenant's lock
    await db.app.query('COMMIT');
    expect(await second).toBe(CAP_MESSAGE('acme', 3));
    await other.query('ROLLBACK');
  } finally {
    await other.end();
  }
  expect(
    await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
      SELECT count(*)::int AS n FROM webhooks.endpoints WHERE tenant = 'acme'`),
  ).toBe(3);
});

test('endpoints add --tenant, list --tenant, and the cap reaching the command as one line', async ({
  db,
  receiver,
  startRelay,
}) => {
  await db.app.query(`UPDATE webhooks.settings SET value = '1' WHERE key = 'max_endpoints_per_tenant'`);
  const added = await cli(db, ['endpoints', 'add', '--url', receiver.url, '--tenant', 'acme', '--json']);
  expect(added.code, added.stderr).toBe(0);
  const { endpoint } = added.json<{ endpoint: { id: string; tenant: string } }>();
  expect(endpoint.tenant).toBe('acme');
  await addTenantEndpoint(db, 'https://single.example/hooks', null);

  const refused = await cli(db, ['endpoints', 'add', '--url', receiver.url, '--tenant', 'acme']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toBe(`outbox-relay: ${CAP_MESSAGE('acme', 1)}\n`);
  const empty = await cli(db, ['endpoints', 'add', '--url', receiver.url, '--tenant', '']);
  expect(empty.code).toBe(2);
  expect(empty.stderr).toContain('--tenant: expected a tenant name of 1-255 characters');

  const listed = await cli(db, ['endpoints', 'list', '--tenant', 'acme', '--json']);
  expect(listed.json<{ endpoints: { id: string }[] }>().endpoints.map((e) => e.id)).toEqual([endpoint.id]);
  const all = await cli(db, ['endpoints', 'list']);
  expect(all.stdout.split('\n')[0]).toMatch(/^ID\s+TENANT\s+STATE/);
  expect(all.stdout).toMatch(new RegExp(`${endpoint.id}\\s+acme\\s+ok`));

  await startRelay();
  await db.app.query(`SELECT webhooks.emit(event_type => 'x', payload => '{}', tenant => 'acme', endpoint_id => $1)`, [
    endpoint.id,
  ]);
  await until(() => receiver.requests.length === 1, { what: 'delivered' });
  // Sent from the stream, its row is written with its outcome, a moment after the receiver answered.
  await until(async () => (await countWhere(db, 'delivered')) === 1, { what: 'the delivered row' });
  const deliveries = await cli(db, ['deliveries', 'list', '--tenant', 'acme', '--json']);
  expect(deliveries.json<{ deliveries: { tenant: string }[] }>().deliveries).toMatchObject([{ tenant: 'acme' }]);
  const none = await cli(db, ['deliveries', 'list', '--tenant', 'globex', '--json']);
  expect(none.json<{ deliveries: unknown[] }>().deliveries).toEqual([]);
  const status = await cli(db, ['status', '--json']);
  expect(status.json<{ endpoints: { id: string; tenant: string | null }[] }>().endpoints).toContainEqual(
    expect.objectContaining({ id: endpoint.id, tenant: 'acme' }),
  );
});

test('repair fans out by the same rules: tenants matched, operational events never to their subject', async ({
  db,
}) => {
  const acmeAll = await addTenantEndpoint(db, 'https://acme.example/all', 'acme');
  const acmeOps = await addTenantEndpoint(db, 'https://acme.example/ops', 'acme', ['relay.*']);
  const acmeOps2 = await addTenantEndpoint(db, 'https://acme.example/ops2', 'acme', ['relay.endpoint.disabled']);
  const single = await addTenantEndpoint(db, 'https://single.example/all', null);
  // No relay runs: these rows have no deliveries, as after a lost slot.
  const { rows } = await db.app.query<{ id: string }>(
    `INSERT INTO webhooks.outbox (event_type, payload, tenant) VALUES
       ('invoice.paid', '{}', 'acme'), ('invoice.paid', '{}', NULL),
       ('relay.endpoint.disabled', jsonb_build_object('endpoint_id', $1::text), 'acme')
     RETURNING id`,
    [acmeOps],
  );
  const [acmeEvent, singleEvent, opsEvent] = rows.map((r) => r.id);
  const result = await repair({
    databaseUrl: db.url,
    slotName: db.slotName,
    sinceMs: 3_600_000,
    log: createLogger('silent'),
  });
  expect(result).toMatchObject({ slot: 'kept', fannedOut: 3, deliveries: 3 });
  const pairs = await db.pool.any(sql.type(z.object({ outboxId: z.string(), endpointId: z.string() }))`
    SELECT outbox_id AS "outboxId", endpoint_id AS "endpointId" FROM webhooks.deliveries ORDER BY outbox_id, endpoint_id`);
  expect(new Set(pairs.map((p) => `${p.outboxId}:${p.endpointId}`))).toEqual(
    new Set([`${acmeEvent}:${acmeAll}`, `${singleEvent}:${single}`, `${opsEvent}:${acmeOps2}`]),
  );
});
