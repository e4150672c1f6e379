import { readFile } from 'node:fs/promises';
import { sql } from 'slonik';
import { expect } from 'vitest';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere } from './support/postgres.ts';
import { relayEnv, scrape } from './support/relay.ts';
import { untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

const BACKLOG = 100_000;
const CAPACITY = 1_000;

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

test('a backlog of 100k pending deliveries is worked through with at most SCHEDULER_CAPACITY held in memory', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url, { eventTypes: ['never.matches'] });
  // The backlog, written directly: outbox rows no endpoint subscribes to, plus one pending delivery each.
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.outbox (event_type, payload)
    SELECT 'backlog', jsonb_build_object('i', i, 'pad', repeat('x', 200)) FROM generate_series(1, ${BACKLOG}) i`);
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id) SELECT id, ${endpoint.id} FROM webhooks.outbox`);
  const relay = spawnRelay(
    relayEnv(db, {
      SCHEDULER_CAPACITY: String(CAPACITY),
      CLAIM_BATCH: '500',
      DELIVERY_CONCURRENCY: '64',
      ENDPOINT_CONCURRENCY: '64',
    }),
  );
  let peakRssMb = 0;
  let peakHeld = 0;
  await untilReady(relay);
  const pid = relay.child.pid!;
  const started = performance.now();
  await until(
    async () => {
      peakRssMb = Math.max(peakRssMb, await rssMb(pid));
      peakHeld = Math.max(peakHeld, await scrape(relay.httpPort()!, 'outbox_relay_scheduler_held'));
      return (await countWhere(db, 'delivered')) === BACKLOG;
    },
    { what: `${BACKLOG} delivered`, timeoutMs: 150_000, intervalMs: 100 },
  );
  const seconds = (performance.now() - started) / 1000;
  expect(peakHeld).toBeLessThanOrEqual(CAPACITY);
  expect(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size).toBe(BACKLOG);
  console.info(
    `backlog ${BACKLOG}: drained in ${seconds.toFixed(1)} s (${Math.round(BACKLOG / seconds)}/s), ` +
      `peak RSS ${peakRssMb.toFixed(0)} MB, peak held ${peakHeld} (capacity ${CAPACITY})`,
  );
}, 200_000);
