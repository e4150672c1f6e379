import { sql } from 'slonik';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, type TestDb } from './support/postgres.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { until } from './support/until.ts';

const SLOW_MS = 1_000;
const BACKLOG = 3_000;

/** A customer's bulk import: `n` events for one endpoint in one transaction. */
const bulk = (db: TestDb, endpointId: string, n: number) =>
  db.app.query(
    `INSERT INTO webhooks.outbox (event_type, payload, endpoint_id)
     SELECT 'bulk.imported', jsonb_build_object('n', g), $1 FROM generate_series(1, $2) g`,
    [endpointId, n],
  );

const undelivered = (db: TestDb, endpointId: string) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM webhooks.deliveries WHERE endpoint_id = ${endpointId} AND status <> 'delivered'`);

/** The slow endpoint answers after SLOW_MS (on the fixture's receiver); a second receiver answers at once. */
async function slowAndHealthy(db: TestDb, slow: Receiver, onTestFinished: (fn: () => Promise<void>) => void) {
  const healthy = await startReceiver();
  onTestFinished(() => healthy.close());
  slow.reply(() => ({ status: 200, delayMs: SLOW_MS }));
  return { healthy, a: await addEndpoint(db, slow.url), b: await addEndpoint(db, healthy.url) };
}

/** Sends `count` events to an endpoint at `perSecond`; resolves with each one's commit-to-receipt latency (ms). */
async function trickle(db: TestDb, endpointId: string, receiver: Receiver, count: number, perSecond: number) {
  const committedAt = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const { rows } = await db.app.query<{ id: string }>(
      `INSERT INTO webhooks.outbox (event_type, payload, endpoint_id) VALUES ('ping', '{}', $1) RETURNING id`,
      [endpointId],
    );
    committedAt.set(`msg_${rows[0]!.id}`, Date.now());
    await sleep(1000 / perSecond);
  }
  await until(() => receiver.requests.length >= count, { what: `${count} arrivals`, timeoutMs: 30_000 });
  return receiver.requests.map((r) => r.receivedAt - committedAt.get(String(r.headers['webhook-id']))!);
}

test('a slow endpoint with a bulk backlog delays nobody else: a healthy endpoint keeps its latency', async ({
  db,
  receiver: slow,
  startRelay,
  onTestFinished,
}) => {
  const { healthy, a, b } = await slowAndHealthy(db, slow, onTestFinished);
  await startRelay({ REQUEST_TIMEOUT: '5s' });

  await bulk(db, a.id, BACKLOG);
  await until(() => slow.requests.length >= 16, { what: 'the slow endpoint saturated' });
  const latencies = await trickle(db, b.id, healthy, 40, 20);

  // Before fair shares the slow endpoint's jobs filled every place and the healthy endpoint's events waited
  // behind its whole backlog (minutes with oldest-first claims; over a second even with fair claims alone).
  // Measured here: 51-55 ms worst, 2-3 ms median; one sample of 40 reached 506 ms once on a machine running
  // three suites at a time, so the bound is on the 90th percentile, and the worst only has to stay far under.
  const sorted = [...latencies].sort((x, y) => x - y);
  expect(sorted[Math.floor(sorted.length * 0.9)]).toBeLessThan(500);
  expect(sorted.at(-1)).toBeLessThan(1_500);
  expect(slow.requests.length).toBeLessThan(500); // the backlog was really there throughout
});

test('persisted work is claimed endpoint by endpoint: an old backlog never hides another endpoint’s due rows', async ({
  db,
  receiver: slow,
  startRelay,
  onTestFinished,
}) => {
  const { healthy, a, b } = await slowAndHealthy(db, slow, onTestFinished);
  // Both endpoints' rows are already in the table, pending (a restart, or what a standby inherits): the slow
  // endpoint's thousands due an hour ago, the healthy one's 20 due now. Oldest-first claims would take the
  // slow endpoint's rows until every place was full.
  await bulk(db, a.id, BACKLOG);
  await db.app.query(
    `INSERT INTO webhooks.outbox (event_type, payload, endpoint_id) SELECT 'ping', '{}', $1 FROM generate_series(1, 20)`,
    [b.id],
  );
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, next_attempt_at)
    SELECT id, endpoint_id, CASE WHEN endpoint_id = ${a.id} THEN now() - interval '1 hour' ELSE now() END
    FROM webhooks.outbox`);
  const startedAt = Date.now();
  await startRelay({ REQUEST_TIMEOUT: '5s' });
  await until(() => healthy.requests.length === 20, { what: 'the healthy endpoint’s 20 rows', timeoutMs: 10_000 });
  expect(Date.now() - startedAt).toBeLessThan(3_000);
  expect(await undelivered(db, a.id)).toBeGreaterThan(BACKLOG - 500);
});
