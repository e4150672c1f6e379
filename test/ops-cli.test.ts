import { sql } from 'slonik';
import { Webhook } from 'standardwebhooks';
import { expect, inject } from 'vitest';
import { z } from 'zod';
import { parseSecret } from '../src/signing/sign.ts';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents, newSecret, withAdmin, type TestDb } from './support/postgres.ts';
import { cli } from './support/cli.ts';
import { until } from './support/until.ts';

type EndpointOut = { id: string; secret: string };
type StatusOut = {
  oldestDuePendingAgeSeconds: number;
  slot: { lagBytes: number; retainedWalBytes: number; maxSlotWalKeepSize: unknown };
  endpoints: EndpointOut[];
};

const Row = z.object({
  secret: z.string(),
  enabled: z.boolean(),
  disabledReason: z.string().nullable(),
  disabledAt: z.number().nullable(),
  failingSince: z.number().nullable(),
  previousSecret: z.string().nullable(),
  previousKeptSeconds: z.number().nullable(),
  eventTypes: z.array(z.string()).nullable(),
  description: z.string().nullable(),
});
const endpointRow = (db: TestDb, id: string) =>
  db.pool.one(sql.type(Row)`
    SELECT secret, enabled, disabled_reason AS "disabledReason", disabled_at AS "disabledAt",
           failing_since AS "failingSince", previous_secret AS "previousSecret",
           extract(epoch FROM previous_secret_expires_at - now())::float8 AS "previousKeptSeconds",
           event_types AS "eventTypes", description
    FROM webhooks.endpoints WHERE id = ${id}`);

/** A delivery written directly (no relay), created `agoS` seconds ago; outboxId defaults to a fresh outbox row. */
async function seed(
  db: TestDb,
  d: { endpointId: string; status: string; eventType?: string; agoS?: number; dueInS?: number; error?: string },
): Promise<{ id: string; outboxId: string }> {
  const outboxId =
    d.eventType === undefined
      ? String(900_000 + Math.floor(Math.random() * 100_000))
      : await db.pool.oneFirst(sql.type(z.object({ id: z.string() }))`
          INSERT INTO webhooks.outbox (event_type, payload) VALUES (${d.eventType}, '{}') RETURNING id`);
  const id = await db.pool.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, next_attempt_at, created_at,
                                     last_status_code, last_error, delivered_at)
    VALUES (${outboxId}, ${d.endpointId}, ${d.status}, ${d.status === 'pending' ? 0 : 3},
            now() + ${d.dueInS ?? 0}::int * interval '1 second', now() - ${d.agoS ?? 0}::int * interval '1 second',
            ${d.error === undefined ? null : 500}, ${d.error ?? null},
            ${d.status === 'delivered' ? sql.fragment`now()` : null})
    RETURNING id`);
  return { id, outboxId };
}

test('endpoints add generates a whsec secret, prints it once, and --json returns the row with it masked', async ({
  db,
  receiver,
}) => {
  const added = await cli(db, [
    'endpoints',
    'add',
    '--url',
    receiver.url,
    '--event-types',
    'a.b, c',
    '--description',
    'shop',
  ]);
  expect(added.code, added.stderr).toBe(0);
  const secret = /whsec_[A-Za-z0-9+/=]+/.exec(added.stdout)?.[0] ?? '';
  const key = parseSecret(secret);
  expect(Buffer.isBuffer(key) && key.length).toBe(32);
  expect(added.stdout.split(secret)).toHaveLength(2); // exactly once
  expect(added.stdout).toContain('not shown again');
  const wh = new Webhook(secret);
  const at = new Date();
  const headers = {
    'webhook-id': 'msg_1',
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': wh.sign('msg_1', at, '{}'),
  };
  expect(wh.verify('{}', headers)).toEqual({});
  const id = /endpoint\s+([0-9a-f-]{36})/.exec(added.stdout)?.[1] ?? '';
  expect(await endpointRow(db, id)).toMatchObject({
    secret,
    enabled: true,
    eventTypes: ['a.b', 'c'],
    description: 'shop',
  });

  const given = newSecret();
  const json = await cli(db, ['endpoints', 'add', '--url', receiver.url, '--secret', given, '--json']);
  expect(json.code, json.stderr).toBe(0);
  const out = json.json<{ endpoint: EndpointOut; secret: string }>();
  expect(out).toMatchObject({ secret: given, endpoint: { url: receiver.url, enabled: true, eventTypes: null } });
  expect(out.endpoint.secret).toBe(`whsec_…${given.slice(-4)}`);
  expect((await endpointRow(db, out.endpoint.id)).secret).toBe(given);
});

test('endpoints add refuses private and loopback targets, plain http and bad secrets with exit 2 and the reason', async ({
  db,
}) => {
  const strict = { ALLOW_PRIVATE_NETWORKS: 'false', ALLOW_HTTP: 'false' };
  const privateIp = await cli(db, ['endpoints', 'add', '--url', 'https://10.1.2.3/hooks'], strict);
  expect(privateIp.code).toBe(2);
  expect(privateIp.stderr).toContain('blocked destination: 10.1.2.3 is private');
  const loopbackName = await cli(db, ['endpoints', 'add', '--url', 'https://localhost/hooks'], strict);
  expect(loopbackName.code).toBe(2);
  expect(loopbackName.stderr).toContain('is loopback (localhost resolves to it)');
  const http = await cli(db, ['endpoints', 'add', '--url', 'http://example.com/hooks'], strict);
  expect(http.code).toBe(2);
  expect(http.stderr).toContain('URL scheme "http:" is not allowed; use https');
  const badSecret = await cli(db, ['endpoints', 'add', '--url', 'https://example.com/h', '--secret', 'whsec_c2hvcnQ=']);
  expect(badSecret.code).toBe(2);
  expect(badSecret.stderr).toContain('it decodes to 5 bytes');
  const unknownFlag = await cli(db, ['endpoints', 'add', '--url', 'https://example.com/h', '--colour', 'red']);
  expect(unknownFlag.code).toBe(2);
  expect(unknownFlag.stderr).toContain('usage: outbox-relay endpoints add --url URL');
  expect(
    await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM webhooks.endpoints`),
  ).toBe(0);
});

test('endpoints list and show mask the secret; an unknown id exits 1, a malformed one 2', async ({ db, receiver }) => {
  const a = await addEndpoint(db, receiver.url);
  const b = await addEndpoint(db, `${receiver.url}/b`, { eventTypes: ['x'] });
  await seed(db, { endpointId: a.id, status: 'dead', eventType: 'x' });
  const list = await cli(db, ['endpoints', 'list', '--json']);
  expect(list.code, list.stderr).toBe(0);
  expect(list.json<{ endpoints: EndpointOut[] }>().endpoints.map((e) => [e.id, e.secret])).toEqual([
    [a.id, `whsec_…${a.secret.slice(-4)}`],
    [b.id, `whsec_…${b.secret.slice(-4)}`],
  ]);
  const text = await cli(db, ['endpoints', 'list']);
  expect(text.stdout).toContain(b.id);
  for (const out of [list.stdout, text.stdout]) expect(out).not.toContain(a.secret.slice(6, 20));
  const show = await cli(db, ['endpoints', 'show', a.id, '--json']);
  expect(show.code, show.stderr).toBe(0);
  expect(show.json<{ endpoint: EndpointOut }>().endpoint).toMatchObject({
    id: a.id,
    secret: `whsec_…${a.secret.slice(-4)}`,
    dead: 1,
    pending: 0,
  });
  expect(show.stdout).not.toContain(a.secret);
  const missing = await cli(db, ['endpoints', 'show', '00000000-0000-4000-8000-000000000000']);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain('no endpoint 00000000-0000-4000-8000-000000000000');
  expect((await cli(db, ['endpoints', 'show', 'nope'])).code).toBe(2);
});

test('endpoints disable records who and why; enable clears the reason, the time and the failing streak', async ({
  db,
  receiver,
}) => {
  const { id } = await addEndpoint(db, receiver.url);
  const disabled = await cli(db, ['endpoints', 'disable', id, '--reason', 'receiver migrating']);
  expect(disabled.code, disabled.stderr).toBe(0);
  expect(await endpointRow(db, id)).toMatchObject({ enabled: false, disabledReason: 'receiver migrating' });
  expect((await endpointRow(db, id)).disabledAt).not.toBeNull();
  await seed(db, { endpointId: id, status: 'pending', eventType: 'x', dueInS: 0 }); // parked
  await db.pool.query(sql.unsafe`UPDATE webhooks.endpoints SET failing_since = now() WHERE id = ${id}`);
  const enabled = await cli(db, ['endpoints', 'enable', id, '--json']);
  expect(enabled.code, enabled.stderr).toBe(0);
  expect(enabled.json()).toMatchObject({ endpoint: { id, enabled: true }, pending: 1 });
  expect(await endpointRow(db, id)).toMatchObject({
    enabled: true,
    disabledReason: null,
    disabledAt: null,
    failingSince: null,
  });
  expect((await cli(db, ['endpoints', 'disable', id])).code).toBe(0);
  expect((await endpointRow(db, id)).disabledReason).toBe('disabled by operator');
  expect((await cli(db, ['endpoints', 'enable', '00000000-0000-4000-8000-000000000000'])).code).toBe(1);
  expect((await cli(db, ['endpoints', 'disable', id, '--why', 'x'])).code).toBe(2);
});

test('endpoints rotate-secret keeps the previous secret until its expiry and prints the new one once', async ({
  db,
  receiver,
}) => {
  const { id, secret: first } = await addEndpoint(db, receiver.url);
  const rotated = await cli(db, ['endpoints', 'rotate-secret', id, '--json']);
  expect(rotated.code, rotated.stderr).toBe(0);
  const second = rotated.json<{ secret: string }>().secret;
  expect(Buffer.isBuffer(parseSecret(second))).toBe(true);
  const row = await endpointRow(db, id);
  expect(row).toMatchObject({ secret: second, previousSecret: first });
  expect(row.previousKeptSeconds).toBeGreaterThan(86_400 - 60);
  expect(row.previousKeptSeconds).toBeLessThanOrEqual(86_400);

  const third = newSecret();
  const again = await cli(db, ['endpoints', 'rotate-secret', id, '--secret', third, '--keep-previous', '2h', '--json']);
  expect(again.json()).toMatchObject({ secret: third, droppedLivePrevious: true });
  expect(await endpointRow(db, id)).toMatchObject({ secret: third, previousSecret: second });
  expect((await endpointRow(db, id)).previousKeptSeconds).toBeLessThanOrEqual(7_200);

  const dropped = await cli(db, ['endpoints', 'rotate-secret', id, '--keep-previous', '0']);
  expect(dropped.code, dropped.stderr).toBe(0);
  const fourth = (await endpointRow(db, id)).secret;
  expect(dropped.stdout.split(fourth)).toHaveLength(2);
  expect(dropped.stdout).toContain('not shown again');
  expect(await endpointRow(db, id)).toMatchObject({ previousSecret: null, previousKeptSeconds: null });
  expect((await cli(db, ['endpoints', 'rotate-secret', id, '--secret', 'whsec_nope'])).code).toBe(2);
  expect((await endpointRow(db, id)).secret).toBe(fourth);
});

test('deliveries list filters by status, endpoint, event type and age, newest first, bounded by --limit', async ({
  db,
  receiver,
}) => {
  const a = await addEndpoint(db, receiver.url);
  const b = await addEndpoint(db, `${receiver.url}/b`);
  const old = await seed(db, {
    endpointId: a.id,
    status: 'pending',
    eventType: 'order.created',
    agoS: 7200,
    dueInS: 60,
  });
  const dead = await seed(db, {
    endpointId: a.id,
    status: 'dead',
    eventType: 'order.paid',
    agoS: 1800,
    error: `HTTP 500: ${'x'.repeat(200)}`,
  });
  const done = await seed(db, { endpointId: b.id, status: 'delivered', eventType: 'order.paid', agoS: 300 });
  const fresh = await seed(db, { endpointId: b.id, status: 'pending', eventType: 'order.created' });
  const ids = async (...args: string[]) => {
    const r = await cli(db, ['deliveries', 'list', '--json', ...args]);
    expect(r.code, r.stderr).toBe(0);
    return r.json<{ deliveries: { id: string }[] }>().deliveries.map((d) => d.id);
  };
  expect(await ids()).toEqual([fresh.id, done.id, dead.id, old.id]);
  expect(await ids('--status', 'dead')).toEqual([dead.id]);
  expect(await ids('--endpoint', b.id)).toEqual([fresh.id, done.id]);
  expect(await ids('--event-type', 'order.paid')).toEqual([done.id, dead.id]);
  expect(await ids('--since', '1h')).toEqual([fresh.id, done.id, dead.id]);
  expect(await ids('--until', '10m')).toEqual([dead.id, old.id]);
  expect(await ids('--endpoint', a.id, '--status', 'pending', '--event-type', 'order.created')).toEqual([old.id]);
  const limited = await cli(db, ['deliveries', 'list', '--limit', '2', '--json']);
  expect(limited.json()).toMatchObject({ truncated: true, deliveries: [{ id: fresh.id }, { id: done.id }] });
  const one = (await cli(db, ['deliveries', 'list', '--status', 'dead', '--json'])).json<{ deliveries: unknown[] }>()
    .deliveries[0];
  expect(one).toMatchObject({
    outboxId: dead.outboxId,
    webhookId: `msg_${dead.outboxId}`,
    endpointId: a.id,
    eventType: 'order.paid',
    status: 'dead',
    attempts: 3,
    lastStatusCode: 500,
    lastError: `HTTP 500: ${'x'.repeat(200)}`,
  });
  const text = await cli(db, ['deliveries', 'list', '--status', 'dead']);
  expect(text.stdout).toContain(`msg_${dead.outboxId}`);
  expect(text.stdout).toContain('…');
  expect(text.stdout).not.toContain('x'.repeat(100));
  expect((await cli(db, ['deliveries', 'list', '--status', 'lost'])).code).toBe(2);
  expect((await cli(db, ['deliveries', 'list', '--limit', '1001'])).code).toBe(2);
});

test('status --json reports slot, counts, oldest due and parked deliveries, endpoint health; exit 1 without the slot', async ({
  db,
  receiver,
}) => {
  const a = await addEndpoint(db, receiver.url);
  const off = await addEndpoint(db, `${receiver.url}/off`, { enabled: false });
  await seed(db, { endpointId: a.id, status: 'pending', eventType: 'x', agoS: 90, dueInS: -45 });
  await seed(db, { endpointId: a.id, status: 'pending', eventType: 'x', dueInS: 600 }); // not due yet
  await seed(db, { endpointId: off.id, status: 'pending', eventType: 'x', dueInS: -3600 }); // parked
  await seed(db, { endpointId: a.id, status: 'delivered', eventType: 'x' });
  const dead = await seed(db, { endpointId: a.id, status: 'dead', eventType: 'x', error: 'HTTP 500' });
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, status_code, error)
    VALUES (${dead.id}, 1, 500, 'HTTP 500'), (${dead.id}, 2, 500, 'HTTP 500')`);

  const status = await cli(db, ['status', '--json']);
  expect(status.code, status.stderr).toBe(0);
  const s = status.json<StatusOut>();
  expect(s).toMatchObject({
    ok: true,
    problems: [],
    slot: { name: db.slotName, exists: true, active: false, activePid: null, holder: null, walStatus: 'reserved' },
    deliveries: { pending: 3, delivering: 0, delivered: 1, dead: 1 },
    duePending: 1,
    parked: 1,
    endpointTotals: { total: 2, disabled: 1, failing: 0, breakersOpen: 0, shown: 2 },
  });
  expect(s.oldestDuePendingAgeSeconds).toBeGreaterThanOrEqual(45);
  expect(s.oldestDuePendingAgeSeconds).toBeLessThan(600);
  expect(s.slot.lagBytes).toBeGreaterThanOrEqual(0);
  expect(s.slot.retainedWalBytes).toBeGreaterThanOrEqual(s.slot.lagBytes);
  expect(typeof s.slot.maxSlotWalKeepSize).toBe('string');
  expect(s.endpoints.map((e: { id: string }) => e.id)).toEqual([off.id, a.id]); // disabled first
  expect(s.endpoints[1]).toMatchObject({
    deliveredLastHour: 1,
    failedAttemptsLastHour: 2,
    successRateLastHour: 0.3333,
    pending: 2,
    dead: 1,
  });
  expect(s.endpoints[0]).toMatchObject({ enabled: false, pending: 1, successRateLastHour: null });

  const text = await cli(db, ['status']);
  expect(text.code).toBe(0);
  expect(text.stdout).toContain(db.slotName);
  expect(text.stdout).toContain('endpoints   2 (1 disabled, 0 failing, 0 breakers open)');

  await withAdmin(inject('pgAdminUrl'), (c) => c.query('SELECT pg_drop_replication_slot($1)', [db.slotName]));
  const missing = await cli(db, ['status', '--json']);
  expect(missing.code).toBe(1);
  expect(missing.json()).toMatchObject({ ok: false, slot: { exists: false }, deliveries: { dead: 1 } });
  expect(missing.stderr).toContain(`replication slot "${db.slotName}" does not exist`);
  expect(missing.stderr).toContain('outbox-relay repair --since');
});

test('replay moves dead deliveries back to pending and the fixed receiver gets them; dry run moves nothing', async ({
  db,
  receiver,
  startRelay,
}) => {
  const { id } = await addEndpoint(db, receiver.url, { eventTypes: ['order.paid'] });
  const other = await addEndpoint(db, `${receiver.url}/other`, { eventTypes: ['never'] });
  const untouched = await seed(db, { endpointId: other.id, status: 'dead' });
  let fixed = false;
  receiver.reply(() => ({ status: fixed ? 204 : 500 }));
  await startRelay({ RETRY_SCHEDULE: '100ms' });
  const events = await insertEvents(
    db,
    [1, 2, 3].map((i) => ({ type: 'order.paid', payload: `{"i":${i}}` })),
  );
  await until(async () => (await countWhere(db, 'dead')) === 4, { what: '3 deliveries dead' });
  expect(receiver.requests).toHaveLength(6); // two attempts each
  fixed = true;

  const refused = await cli(db, ['replay']);
  expect(refused.code).toBe(2);
  expect(refused.stderr).toContain('--all');
  const dry = await cli(db, ['replay', '--endpoint', id, '--dry-run', '--json']);
  expect(dry.code, dry.stderr).toBe(0);
  expect(dry.json()).toEqual({ dryRun: true, matched: 3, parked: 0, moved: 0, ofDeletedEndpoints: 0 });
  expect(await countWhere(db, 'dead')).toBe(4);

  const replay = await cli(db, ['replay', '--endpoint', id, '--batch', '2', '--json']);
  expect(replay.code, replay.stderr).toBe(0);
  expect(replay.json()).toEqual({ dryRun: false, moved: 3, parked: 0, batches: 2, ofDeletedEndpoints: 0 });
  await until(async () => (await countWhere(db, 'delivered')) === 3, { what: 'replayed deliveries delivered' });
  const after = receiver.requests.slice(6).map((r) => r.headers['webhook-id']);
  expect(after.sort()).toEqual(events.map((e) => `msg_${e}`).sort());
  const attempts = await db.pool.anyFirst(sql.type(z.object({ n: z.number() }))`
    SELECT attempts AS n FROM webhooks.deliveries WHERE endpoint_id = ${id}`);
  expect(attempts).toEqual([1, 1, 1]); // a fresh budget
  expect(await countWhere(db, 'dead')).toBe(1); // the other endpoint's was not matched
  const status = await db.pool.oneFirst(sql.type(z.object({ s: z.string() }))`
    SELECT status AS s FROM webhooks.deliveries WHERE id = ${untouched.id}`);
  expect(status).toBe('dead');
  const none = await cli(db, ['replay', '--endpoint', id, '--json']);
  expect(none.json()).toEqual({ dryRun: false, moved: 0, parked: 0, batches: 1, ofDeletedEndpoints: 0 });
});

test('human output shows control and bidi characters from the database as escapes; --json keeps them exact', async ({
  db,
}) => {
  const hostile = {
    url: 'https://example.com/\x1b]0;owned\x07hooks',
    description: 'shop\x1b[2J\nFAKE: all endpoints ok\u202e\u2066',
    reason: 'moved\x9b31m\x7f',
    error: 'HTTP 500 \x1b[8m',
    eventType: 'order.\x07paid',
  };
  const { rows } = await db.app.query<{ id: string }>(
    `INSERT INTO webhooks.endpoints (url, secret, description, enabled, disabled_reason, disabled_at)
     VALUES ($1, $2, $3, false, $4, now()) RETURNING id`,
    [hostile.url, newSecret(), hostile.description, hostile.reason],
  );
  const id = rows[0]!.id;
  await seed(db, { endpointId: id, status: 'dead', eventType: hostile.eventType, error: hostile.error });
  // Anything a terminal acts on, except the newlines between lines.
  const unsafe = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;
  const outputs = [
    await cli(db, ['endpoints', 'list']),
    await cli(db, ['endpoints', 'show', id]),
    await cli(db, ['status']),
    await cli(db, ['deliveries', 'list']),
    await cli(db, ['endpoints', 'disable', id, '--reason', 'again\x1b[5m']),
  ];
  for (const out of outputs) {
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).not.toMatch(unsafe);
    expect(out.stdout).not.toMatch(/^FAKE/m);
  }
  const [list, show, status, deliveries, disable] = outputs.map((o) => o.stdout);
  expect(list).toContain('https://example.com/\\x1b]0;owned\\x07hooks');
  expect(show).toContain('shop\\x1b[2J\\x0aFAKE: all endpoints ok\\u202e\\u2066');
  expect(show).toContain('moved\\x9b31m\\x7f');
  expect(status).toContain('moved\\x9b31m\\x7f');
  expect(deliveries).toContain('HTTP 500 \\x1b[8m');
  expect(deliveries).toContain('order.\\x07paid');
  expect(disable).toContain('again\\x1b[5m');

  const json = await cli(db, ['endpoints', 'show', id, '--json']);
  expect(json.json()).toMatchObject({
    endpoint: { url: hostile.url, description: hostile.description, disabledReason: 'again\x1b[5m' },
  });
  const listed = await cli(db, ['deliveries', 'list', '--json']);
  expect(listed.json()).toMatchObject({ deliveries: [{ eventType: hostile.eventType, lastError: hostile.error }] });
});

test('--since, --until, --keep-previous and repair --since beyond their maximum are usage errors naming it', async ({
  db,
  receiver,
}) => {
  const { id } = await addEndpoint(db, receiver.url);
  const huge = '99999999999999999999d';
  const infinite = `${'9'.repeat(400)}d`; // parses to Infinity
  const cases: [string[], string][] = [
    [['deliveries', 'list', '--since', huge], '--since: at most 36500d, got "99999999999999999999d"'],
    [['deliveries', 'list', '--until', infinite], '--until: at most 36500d'],
    [['replay', '--since', huge], '--since: at most 36500d'],
    [['replay', '--until', infinite, '--dry-run'], '--until: at most 36500d'],
    [['endpoints', 'rotate-secret', id, '--keep-previous', huge], '--keep-previous: at most 365d'],
    [['endpoints', 'rotate-secret', id, '--keep-previous', '366d'], '--keep-previous: at most 365d, got "366d"'],
    [['repair', '--since', infinite], '--since: at most 36500d'],
  ];
  for (const [args, message] of cases) {
    const out = await cli(db, args);
    expect(out.code, `${args.join(' ')}: ${out.stderr}`).toBe(2);
    expect(out.stderr).toContain(message);
    expect(out.stderr).toContain('usage: outbox-relay');
    expect(out.stderr).not.toContain('    at '); // no stack trace
  }
  expect((await cli(db, ['deliveries', 'list', '--since', '36500d'])).code).toBe(0);
  expect((await cli(db, ['endpoints', 'rotate-secret', id, '--keep-previous', '365d'])).code).toBe(0);
});
