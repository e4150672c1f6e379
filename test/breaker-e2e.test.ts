import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents, type TestDb } from './support/postgres.ts';
import { startReceiver } from './support/receiver.ts';
import { scrape } from './support/relay.ts';
import { until } from './support/until.ts';

const attemptsSpent = (db: TestDb, endpointId: string) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT coalesce(sum(attempts), 0)::int AS n FROM webhooks.deliveries WHERE endpoint_id = ${endpointId}`);

test('500s open the endpoint’s breaker; while open nothing is sent and no attempt is spent; a probe closes it', async ({
  db,
  receiver: failing,
  startRelay,
  onTestFinished,
}) => {
  const healthy = await startReceiver();
  onTestFinished(() => healthy.close());
  const bad = await addEndpoint(db, failing.url, { eventTypes: ['x'] });
  await addEndpoint(db, healthy.url, { eventTypes: ['x'] });
  failing.reply(() => ({ status: 500 }));
  const relay = await startRelay({
    BREAKER_VOLUME_THRESHOLD: '5',
    BREAKER_ERROR_THRESHOLD: '50',
    BREAKER_RESET_TIMEOUT: '1500ms',
    BREAKER_WINDOW: '1500ms',
    RETRY_SCHEDULE: Array.from({ length: 20 }, () => '100ms').join(','),
    ENDPOINT_CONCURRENCY: '1',
  });
  await insertEvents(
    db,
    Array.from({ length: 20 }, (_, i) => ({ type: 'x', payload: `{"i":${i}}` })),
  );
  await until(async () => (await scrape(relay.httpPort, 'outbox_relay_breakers_open')) === 1, {
    what: 'breaker open',
  });
  expect(await scrape(relay.httpPort, 'outbox_relay_breaker_open', { endpoint_id: bad.id })).toBe(1);
  // Deferrals hand their attempt back: every attempt counted in the table is a request the receiver saw.
  // (Settle first: outcome writes trail the requests by a moment.)
  await until(async () => (await attemptsSpent(db, bad.id)) === failing.requests.length, {
    what: 'attempts = requests received',
  });
  const sentWhileOpen = failing.requests.length;
  expect(sentWhileOpen).toBeLessThan(20 * 2); // far fewer than the retries 500s alone would cause
  // The healthy endpoint is unaffected.
  await until(() => healthy.requests.length === 20, { what: 'healthy endpoint got all 20' });
  // The receiver recovers: the next half-open probe succeeds, the breaker closes, the backlog drains.
  failing.reply(() => ({ status: 204 }));
  await until(async () => (await countWhere(db, 'delivered')) === 40, {
    what: 'all 40 delivered',
    timeoutMs: 30_000,
  });
  expect(await scrape(relay.httpPort, 'outbox_relay_breakers_open')).toBe(0);
  expect(await attemptsSpent(db, bad.id)).toBe(failing.requests.length);
});
