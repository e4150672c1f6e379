import { expect } from 'vitest';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents } from './support/postgres.ts';
import { relayEnv, scrape } from './support/relay.ts';
import { untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

test('two relays, no faults, 1,000 events: each delivered exactly once and both relays did work', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply(() => ({ status: 204, delayMs: 5 }));
  // Small capacities so the streaming relay cannot take everything at fan-out: the rest waits as pending and
  // both relays claim it.
  const env = { SCHEDULER_CAPACITY: '20', DELIVERY_CONCURRENCY: '10', ENDPOINT_CONCURRENCY: '10', CLAIM_BATCH: '10' };
  const streamer = await startRelay(env);
  const standby = await startRelay(env, 'standby');
  const ids = await insertEvents(
    db,
    Array.from({ length: 1_000 }, (_, i) => ({ type: 'e', payload: `{"i":${i}}` })),
  );
  await until(async () => (await countWhere(db, 'delivered')) === 1_000, {
    what: '1,000 delivered',
    timeoutMs: 60_000,
  });
  expect(receiver.requests).toHaveLength(1_000);
  expect(new Set(receiver.requests.map((r) => r.headers['webhook-id']))).toEqual(new Set(ids.map((i) => `msg_${i}`)));
  const byStreamer = await scrape(streamer.httpPort, 'outbox_relay_deliveries_total', { outcome: 'delivered' });
  const byStandby = await scrape(standby.httpPort, 'outbox_relay_deliveries_total', { outcome: 'delivered' });
  expect(byStreamer + byStandby).toBe(1_000);
  expect(byStreamer).toBeGreaterThan(0);
  expect(byStandby).toBeGreaterThan(0);
  expect(standby.streamState()).toBe('standby');
});

test('the slot holder is killed: the standby takes the slot over and delivers everything inserted afterwards', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  await addEndpoint(db, receiver.url);
  const env = relayEnv(db);
  const holder = spawnRelay(env);
  await untilReady(holder, 'streaming');
  const standby = spawnRelay(env);
  await untilReady(standby, 'standby');
  holder.kill('SIGKILL');
  await holder.exited;
  const killedAt = performance.now();
  const ids = await insertEvents(
    db,
    Array.from({ length: 100 }, (_, i) => ({ type: 'after', payload: `{"i":${i}}` })),
  );
  await untilReady(standby, 'streaming');
  const takeoverMs = performance.now() - killedAt;
  await until(async () => (await countWhere(db, 'delivered')) === 100, { what: '100 delivered' });
  const received = new Set(receiver.requests.map((r) => r.headers['webhook-id']));
  for (const id of ids) expect(received).toContain(`msg_${id}`);
  console.info(`slot takeover after SIGKILL of the holder: ${Math.round(takeoverMs)} ms`);
  standby.kill('SIGTERM');
  expect((await standby.exited).code).toBe(0);
});
