import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents, type TestDb } from './support/postgres.ts';
import { startReceiver } from './support/receiver.ts';
import { until } from './support/until.ts';

const firstAttempt = (db: TestDb) =>
  db.pool.maybeOne(sql.type(z.object({ error: z.string(), durationMs: z.number() }))`
    SELECT error, duration_ms AS "durationMs" FROM webhooks.delivery_attempts ORDER BY id LIMIT 1`);
const lastStatus = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ s: z.string() }))`SELECT status AS s FROM webhooks.deliveries LIMIT 1`);

test('a receiver that never answers is cut off at REQUEST_TIMEOUT and retried', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply(() => 'hang');
  await startRelay({ REQUEST_TIMEOUT: '500ms', RETRY_SCHEDULE: '1h' });
  await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  const attempt = await until(() => firstAttempt(db), { what: 'the timed-out attempt logged' });
  expect(attempt.error).toBe('timed out after 500ms');
  expect(attempt.durationMs).toBeGreaterThanOrEqual(450);
  expect(attempt.durationMs).toBeLessThan(2_000);
  expect(await lastStatus(db)).toBe('pending');
});

test('a receiver that sends 200 headers and then dribbles a byte at a time is cut off at the deadline', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply(() => ({
    raw: (res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const timer = setInterval(() => res.write('.'), 100);
      res.on('close', () => clearInterval(timer));
    },
  }));
  await startRelay({ REQUEST_TIMEOUT: '600ms', RETRY_SCHEDULE: '1h' });
  await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  const attempt = await until(() => firstAttempt(db), { what: 'the cut-off attempt logged' });
  expect(attempt.error).toBe('timed out after 600ms');
  expect(await lastStatus(db)).toBe('pending'); // an unfinished answer is no answer
});

test('a huge response body is not read past MAX_RESPONSE_BYTES: the 2xx counts and the relay moves on', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  let written = 0;
  receiver.reply(() => ({
    raw: (res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 120);
      // Up to 200 MB, as fast as the client reads; the relay must stop reading long before.
      const pump = () => {
        while (written < 200 * 1024 * 1024 && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    },
  }));
  await startRelay({ MAX_RESPONSE_BYTES: '65536', REQUEST_TIMEOUT: '5s' });
  await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  await until(async () => (await lastStatus(db)) === 'delivered', { what: 'delivered' });
  expect(written).toBeLessThan(50 * 1024 * 1024);
});

test('a binary error body with NUL bytes is logged without them and never blocks outcome writes', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply((_r, i) =>
    i === 0
      ? {
          raw: (res) =>
            res.writeHead(500, { 'content-type': 'application/gzip' }).end(Buffer.from([0x1f, 0x8b, 0, 0, 65])),
        }
      : { status: 204 },
  );
  await startRelay({ RETRY_SCHEDULE: '100ms' });
  await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  await until(async () => (await lastStatus(db)) === 'delivered', { what: 'delivered on the retry' });
  const snippet = await db.pool.oneFirst(sql.type(z.object({ s: z.string() }))`
    SELECT response_snippet AS s FROM webhooks.delivery_attempts LIMIT 1`);
  expect(snippet).not.toContain('\0');
  expect(snippet.endsWith('A')).toBe(true);
});

test('a connection reset after 200 headers counts as delivered (the status line is the receiver’s answer)', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply(() => ({
    raw: (res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
      res.write('partial', () => res.socket?.resetAndDestroy());
    },
  }));
  await startRelay();
  await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  await until(async () => (await lastStatus(db)) === 'delivered', { what: 'delivered' });
  expect(receiver.requests).toHaveLength(1);
});

test('one endpoint that hangs does not hold back the others (per-endpoint concurrency)', async ({
  db,
  receiver: slow,
  startRelay,
  onTestFinished,
}) => {
  const fast = await startReceiver();
  onTestFinished(() => fast.close());
  await addEndpoint(db, slow.url);
  await addEndpoint(db, fast.url);
  slow.reply(() => 'hang');
  await startRelay({
    DELIVERY_CONCURRENCY: '8',
    ENDPOINT_CONCURRENCY: '4',
    REQUEST_TIMEOUT: '4s',
    LEASE: '20s',
    RETRY_SCHEDULE: '1h',
  });
  const started = performance.now();
  await insertEvents(
    db,
    Array.from({ length: 200 }, (_, i) => ({ type: 'x', payload: `{"i":${i}}` })),
  );
  await until(() => fast.requests.length === 200, { what: 'the healthy endpoint got all 200', timeoutMs: 30_000 });
  const tookMs = performance.now() - started;
  // All 200 reached the healthy endpoint before the hanging one's first request had even timed out.
  expect(tookMs).toBeLessThan(4_000);
  expect(slow.requests.length).toBeLessThanOrEqual(4);
  await until(async () => (await countWhere(db, 'delivered')) === 200);
});
