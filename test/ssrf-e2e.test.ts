import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents } from './support/postgres.ts';
import { until } from './support/until.ts';

const outcome = sql.type(z.object({ status: z.string(), attempts: z.number(), lastError: z.string().nullable() }))`
  SELECT status, attempts, last_error AS "lastError" FROM webhooks.deliveries ORDER BY id`;

test('by default the relay refuses loopback destinations (literal and by DNS) before connecting: dead at once, with the reason', async ({
  db,
  receiver,
  startRelay,
}) => {
  const port = new URL(receiver.url).port;
  await addEndpoint(db, receiver.url); // http://127.0.0.1:<port>/hooks
  await addEndpoint(db, `http://localhost:${port}/hooks`);
  await startRelay({ ALLOW_PRIVATE_NETWORKS: 'false', ALLOW_HTTP: 'true' });
  await insertEvents(db, [{ type: 'probe', payload: '{}' }]);
  await until(async () => (await db.pool.any(outcome)).filter((r) => r.status === 'dead').length === 2, {
    what: 'both deliveries dead',
  });
  const rows = await db.pool.any(outcome);
  // Permanent: one attempt each, no retries. The literal is refused before any lookup, the name at connect time.
  expect(rows).toContainEqual({
    status: 'dead',
    attempts: 1,
    lastError: 'blocked destination: 127.0.0.1 is loopback',
  });
  expect(rows.map((r) => r.attempts)).toEqual([1, 1]);
  expect(rows.map((r) => r.lastError)).toContainEqual(
    expect.stringMatching(/^blocked destination: localhost resolves to (127\.0\.0\.1|::1), which is loopback$/),
  );
  expect(receiver.requests).toHaveLength(0);
});

test('https is required unless ALLOW_HTTP=true', async ({ db, receiver, startRelay }) => {
  await addEndpoint(db, receiver.url);
  await startRelay({ ALLOW_HTTP: 'false' });
  await insertEvents(db, [{ type: 'probe', payload: '{}' }]);
  await until(async () => (await db.pool.any(outcome))[0]?.status === 'dead');
  expect((await db.pool.any(outcome))[0]!.lastError).toBe('URL scheme "http:" is not allowed; use https');
  expect(receiver.requests).toHaveLength(0);
});
