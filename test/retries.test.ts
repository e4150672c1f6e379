import { sql } from 'slonik';
import { Webhook } from 'standardwebhooks';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents } from './support/postgres.ts';
import { until } from './support/until.ts';

const Delivery = z.object({
  status: z.string(),
  attempts: z.number(),
  lastStatusCode: z.number().nullable(),
  lastError: z.string().nullable(),
  leaseOwner: z.string().nullable(),
});
const deliveryOf = (outboxId: string) => sql.type(Delivery)`
  SELECT status, attempts, last_status_code AS "lastStatusCode", last_error AS "lastError", lease_owner AS "leaseOwner"
  FROM webhooks.deliveries WHERE outbox_id = ${outboxId}`;
const attemptsOf = (outboxId: string) => sql.type(
  z.object({
    attempt: z.number(),
    statusCode: z.number().nullable(),
    error: z.string(),
    snippet: z.string().nullable(),
  }),
)`
  SELECT a.attempt, a.status_code AS "statusCode", a.error, a.response_snippet AS snippet
  FROM webhooks.delivery_attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
  WHERE d.outbox_id = ${outboxId} ORDER BY a.attempt`;

test('500 twice then 200: delivered on the third attempt, same webhook-id, fresh timestamp and signature each time', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  receiver.reply((_req, i) => (i < 2 ? { status: 500, body: 'try later' } : { status: 200 }));
  // No jitter and a wait just over a second, so each attempt lands in a later unix second.
  await startRelay({ RETRY_SCHEDULE: '1100ms,1100ms,1100ms', RETRY_JITTER: '0' });
  const [id] = await insertEvents(db, [{ type: 'order.shipped', payload: '{"order": 7}' }]);
  await until(async () => (await db.pool.one(deliveryOf(id!))).status === 'delivered', { what: 'delivered' });
  expect(await db.pool.one(deliveryOf(id!))).toEqual({
    status: 'delivered',
    attempts: 3,
    lastStatusCode: 200,
    lastError: null,
    leaseOwner: null,
  });
  expect(await db.pool.any(attemptsOf(id!))).toEqual([
    { attempt: 1, statusCode: 500, error: 'HTTP 500', snippet: 'try later' },
    { attempt: 2, statusCode: 500, error: 'HTTP 500', snippet: 'try later' },
  ]);
  expect(receiver.requests).toHaveLength(3);
  const headers = receiver.requests.map((r) => r.headers as Record<string, string>);
  expect(new Set(headers.map((h) => h['webhook-id']))).toEqual(new Set([`msg_${id}`]));
  expect(new Set(headers.map((h) => h['webhook-timestamp'])).size).toBe(3);
  expect(new Set(headers.map((h) => h['webhook-signature'])).size).toBe(3);
  for (const r of receiver.requests) {
    expect(() => new Webhook(endpoint.secret).verify(r.body, r.headers as Record<string, string>)).not.toThrow();
  }
  expect(new Set(receiver.requests.map((r) => r.body)).size).toBe(1); // the body itself never changes
});

test('when the last retry fails the delivery is dead, keeping the last status, error and every attempt', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply(() => ({ status: 502, body: 'bad gateway' }));
  await startRelay({ RETRY_SCHEDULE: '100ms,100ms' });
  const [id] = await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  await until(async () => (await db.pool.one(deliveryOf(id!))).status === 'dead', { what: 'dead' });
  expect(await db.pool.one(deliveryOf(id!))).toEqual({
    status: 'dead',
    attempts: 3,
    lastStatusCode: 502,
    lastError: 'HTTP 502',
    leaseOwner: null,
  });
  expect((await db.pool.any(attemptsOf(id!))).map((a) => [a.attempt, a.statusCode, a.snippet])).toEqual([
    [1, 502, 'bad gateway'],
    [2, 502, 'bad gateway'],
    [3, 502, 'bad gateway'],
  ]);
  expect(receiver.requests).toHaveLength(3);
});

test('a redirect is a failed attempt and is never followed', async ({ db, receiver, startRelay }) => {
  await addEndpoint(db, receiver.url);
  receiver.reply((req) =>
    req.path === '/hooks' ? { status: 307, headers: { location: '/elsewhere' } } : { status: 200 },
  );
  await startRelay({ RETRY_SCHEDULE: '100ms' });
  const [id] = await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  await until(async () => (await db.pool.one(deliveryOf(id!))).status === 'dead', { what: 'dead' });
  expect((await db.pool.one(deliveryOf(id!))).lastError).toBe('redirect 307 not followed');
  expect(receiver.requests.map((r) => r.path)).toEqual(['/hooks', '/hooks']);
});
