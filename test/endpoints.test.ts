import { readFile } from 'node:fs/promises';
import { sql } from 'slonik';
import { Webhook } from 'standardwebhooks';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents, newSecret, type TestDb } from './support/postgres.ts';
import { until } from './support/until.ts';

const Endpoint = z.object({
  enabled: z.boolean(),
  disabledReason: z.string().nullable(),
  disabledAt: z.number().nullable(),
});
const endpointRow = (db: TestDb, id: string) =>
  db.pool.one(sql.type(Endpoint)`
    SELECT enabled, disabled_reason AS "disabledReason", disabled_at AS "disabledAt" FROM webhooks.endpoints WHERE id = ${id}`);
const statuses = (db: TestDb) =>
  db.pool.anyFirst(
    sql.type(z.object({ s: z.string() }))`SELECT status AS s FROM webhooks.deliveries ORDER BY outbox_id`,
  );

test('410 Gone disables the endpoint with a reason and parks its deliveries as pending instead of dropping them', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  receiver.reply(() => ({ status: 410 }));
  await startRelay({ ENDPOINT_CONCURRENCY: '1' });
  await insertEvents(
    db,
    Array.from({ length: 5 }, (_, i) => ({ type: 'x', payload: `{"i":${i}}` })),
  );
  await until(async () => !(await endpointRow(db, endpoint.id)).enabled, { what: 'endpoint disabled' });
  const row = await endpointRow(db, endpoint.id);
  expect(row.disabledReason).toBe('receiver answered 410 Gone');
  expect(row.disabledAt).not.toBeNull();
  // Deliveries sent from the stream get their row when they leave memory (the 410's outcome, the hand-back of
  // the queued ones): wait for all five rows, each parked.
  await until(
    async () => {
      const all = await statuses(db);
      return all.length === 5 && all.every((s) => s === 'pending');
    },
    { what: 'all five parked as pending' },
  );
  const requestsAtDisable = receiver.requests.length;
  expect(requestsAtDisable).toBeLessThan(5); // the queued ones were not sent after the 410
  // Re-enabled (and healthy again), every parked delivery goes out.
  receiver.reply(() => ({ status: 204 }));
  await db.pool.query(sql.unsafe`UPDATE webhooks.endpoints SET enabled = true WHERE id = ${endpoint.id}`);
  await until(async () => (await countWhere(db, 'delivered')) === 5, { what: 'parked deliveries delivered' });
});

test('an endpoint failing with no success for AUTO_DISABLE_AFTER is disabled, with the time it started failing', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  receiver.reply(() => ({ status: 503 }));
  await startRelay({
    AUTO_DISABLE_AFTER: '1s',
    RETRY_SCHEDULE: '300ms,300ms,300ms,300ms,300ms,300ms',
  });
  await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  await until(async () => !(await endpointRow(db, endpoint.id)).enabled, {
    what: 'auto-disabled',
    timeoutMs: 15_000,
  });
  expect((await endpointRow(db, endpoint.id)).disabledReason).toMatch(
    /^every attempt failed since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
  );
  expect(await statuses(db)).toEqual(['pending']); // parked, not dead
});

test('a success ends the failing streak, so an endpoint that recovers is not disabled', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  // Each message fails once, then succeeds on its retry (after the streak is older than AUTO_DISABLE_AFTER).
  const seen = new Set<unknown>();
  receiver.reply((r) =>
    seen.has(r.headers['webhook-id']) ? { status: 204 } : (seen.add(r.headers['webhook-id']), { status: 500 }),
  );
  await startRelay({ AUTO_DISABLE_AFTER: '500ms', RETRY_SCHEDULE: '700ms', RETRY_JITTER: '0' });
  await insertEvents(
    db,
    Array.from({ length: 3 }, (_, i) => ({ type: 'x', payload: `{"i":${i}}` })),
  );
  await until(async () => (await countWhere(db, 'delivered')) === 3, { what: 'all delivered' });
  const failingSince = await db.pool.oneFirst(sql.type(z.object({ f: z.number().nullable() }))`
    SELECT failing_since AS f FROM webhooks.endpoints WHERE id = ${endpoint.id}`);
  expect(failingSince).toBeNull();
  expect((await endpointRow(db, endpoint.id)).enabled).toBe(true);
});

test('during a secret rotation each request carries both signatures and a receiver holding either one verifies', async ({
  db,
  receiver,
  startRelay,
}) => {
  const current = newSecret();
  const previous = newSecret();
  const endpoint = await addEndpoint(db, receiver.url, { secret: current });
  await db.pool.query(sql.unsafe`
    UPDATE webhooks.endpoints SET previous_secret = ${previous}, previous_secret_expires_at = now() + interval '1 hour'
    WHERE id = ${endpoint.id}`);
  await startRelay();
  await insertEvents(db, [{ type: 'rotating', payload: '{"a": 1}' }]);
  await until(() => receiver.requests.length === 1);
  const { body, headers } = receiver.requests[0]!;
  expect(String(headers['webhook-signature']).split(' ')).toHaveLength(2);
  for (const secret of [current, previous]) {
    expect(() => new Webhook(secret).verify(body, headers as Record<string, string>)).not.toThrow();
  }
  // Once the previous secret expires, only the current one signs.
  await db.pool.query(sql.unsafe`
    UPDATE webhooks.endpoints SET previous_secret_expires_at = now() - interval '1 second' WHERE id = ${endpoint.id}`);
  await insertEvents(db, [{ type: 'rotated', payload: '{}' }]);
  await until(() => receiver.requests.length === 2);
  const later = receiver.requests[1]!;
  expect(String(later.headers['webhook-signature']).split(' ')).toHaveLength(1);
  expect(() => new Webhook(previous).verify(later.body, later.headers as Record<string, string>)).toThrow();
});

test('secrets that are not whsec_ + base64 of 24-64 bytes are rejected at insert, naming the rule', async ({ db }) => {
  for (const bad of ['plain-secret', 'whsec_' + Buffer.alloc(16).toString('base64'), 'whsec_not base64!']) {
    await expect(
      db.app.query('INSERT INTO webhooks.endpoints (url, secret) VALUES ($1, $2)', ['https://example.com/h', bad]),
    ).rejects.toThrow('endpoint_secret_must_be_whsec_base64_of_24_to_64_bytes');
  }
});

test('rate_limit_per_second is refused below one request per 1000 s (its timer would overflow) and above 10000, naming the bound', async ({
  db,
}) => {
  const insert = (rate: number) =>
    db.app.query('INSERT INTO webhooks.endpoints (url, secret, rate_limit_per_second) VALUES ($1, $2, $3)', [
      'https://example.com/h',
      newSecret(),
      rate,
    ]);
  for (const bad of [1e-7, 0.0009, 0, -1, 10_001]) {
    await expect(insert(bad)).rejects.toThrow('endpoint_rate_limit_per_second_between_0_001_and_10000');
  }
  for (const good of [0.001, 0.5, 10_000]) await insert(good);
});

test('the hardening migration clamps rates already outside the bounds and is safe to run again', async ({ db }) => {
  const migration = await readFile(new URL('../sql/002_hardening.sql', import.meta.url), 'utf8');
  const slow = await addEndpoint(db, 'https://example.com/slow');
  const fast = await addEndpoint(db, 'https://example.com/fast');
  await db.app.query(`
    ALTER TABLE webhooks.endpoints DROP CONSTRAINT endpoint_rate_limit_per_second_between_0_001_and_10000;
    UPDATE webhooks.endpoints SET rate_limit_per_second = CASE WHEN url LIKE '%slow' THEN 1e-7 ELSE 1e6 END`);
  await db.app.query(migration);
  await db.app.query(migration);
  const rates = await db.pool.anyFirst(sql.type(z.object({ rate: z.number() }))`
    SELECT rate_limit_per_second AS rate FROM webhooks.endpoints
    WHERE id IN (${slow.id}, ${fast.id}) ORDER BY rate_limit_per_second`);
  expect(rates).toEqual([0.001, 10_000]);
});

test("an endpoint's max_in_flight and rate_limit_per_second bound what the relay sends it", async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  await db.pool.query(sql.unsafe`
    UPDATE webhooks.endpoints SET max_in_flight = 2, rate_limit_per_second = 20 WHERE id = ${endpoint.id}`);
  let inFlight = 0;
  let peak = 0;
  receiver.reply(() => {
    peak = Math.max(peak, ++inFlight);
    setTimeout(() => inFlight--, 30);
    return { status: 204, delayMs: 30 };
  });
  await startRelay();
  await insertEvents(
    db,
    Array.from({ length: 30 }, (_, i) => ({ type: 'x', payload: `{"i":${i}}` })),
  );
  await until(async () => (await countWhere(db, 'delivered')) === 30, { what: '30 delivered', timeoutMs: 20_000 });
  expect(peak).toBeLessThanOrEqual(2);
  const times = receiver.requests.map((r) => r.receivedAt);
  const spanMs = Math.max(...times) - Math.min(...times);
  expect(spanMs).toBeGreaterThanOrEqual(((30 - 1) / 20) * 1000 * 0.9); // 20/s: 29 gaps of 50 ms
});

const retryAfterForms: [string, () => string][] = [
  ['delta-seconds', () => '2'],
  ['HTTP-date', () => new Date(Date.now() + 2_500).toUTCString()],
];
test.for(retryAfterForms)(
  '429 with Retry-After (%s) is honoured: the retry waits for it',
  async ([, value], { db, receiver, startRelay }) => {
    await addEndpoint(db, receiver.url);
    receiver.reply((_r, i) => (i === 0 ? { status: 429, headers: { 'retry-after': value() } } : { status: 204 }));
    await startRelay({ RETRY_SCHEDULE: '100ms' });
    await insertEvents(db, [{ type: 'x', payload: '{}' }]);
    await until(() => receiver.requests.length === 2, { what: 'the retry', timeoutMs: 15_000 });
    const waitedMs = receiver.requests[1]!.receivedAt - receiver.requests[0]!.receivedAt;
    expect(waitedMs).toBeGreaterThanOrEqual(1_000); // not the 100 ms of the schedule
  },
);

test('a due delivery of a disabled endpoint that escaped parking is parked by the next claim, never sent', async ({
  db,
  receiver,
  startRelay,
}) => {
  const off = await addEndpoint(db, receiver.url, { enabled: false });
  const [outboxId] = await insertEvents(db, [{ type: 'x', payload: '{}', endpointId: off.id }]);
  await startRelay();
  await until(async () => (await statuses(db)).length === 1, { what: 'the parked delivery' });
  // Simulate a row that raced its endpoint being disabled: pending and due now.
  await db.pool.query(
    sql.unsafe`UPDATE webhooks.deliveries SET next_attempt_at = now() WHERE outbox_id = ${outboxId!}`,
  );
  await until(
    async () =>
      (await db.pool.oneFirst(sql.type(z.object({ parked: z.boolean() }))`
        SELECT next_attempt_at = 'infinity' AS parked FROM webhooks.deliveries WHERE outbox_id = ${outboxId!}`)) ===
      true,
    { what: 'parked again by the claim' },
  );
  expect(receiver.requests).toHaveLength(0);
  expect(await statuses(db)).toEqual(['pending']);
});
