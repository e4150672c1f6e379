import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents, type TestDb } from './support/postgres.ts';
import { relayEnv } from './support/relay.ts';
import { untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

const confirmedLsn = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ lsn: z.string() }))`
    SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${db.slotName}`);
const deliveryRows = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM webhooks.deliveries`);

test('SIGKILL after deliveries were recorded but before the acknowledgement: the replay sends none again, no duplicate rows', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  await addEndpoint(db, receiver.url);
  // A long status interval holds the acknowledgement back long enough to kill the relay in between.
  const env = relayEnv(db, { STATUS_INTERVAL: '60s', LEASE: '3s', HEARTBEAT_INTERVAL: '500ms', REQUEST_TIMEOUT: '1s' });
  const first = spawnRelay(env);
  await untilReady(first);
  const [warmup] = await insertEvents(db, [{ type: 'warmup', payload: '{}' }]);
  await until(() => receiver.requests.some((r) => r.headers['webhook-id'] === `msg_${warmup}`));
  await until(async () => (await deliveryRows(db)) === 1, { what: 'the warmup recorded' });
  // The session's first progress (the endpoint's creation, streamed at start, or the warmup) sent a status at
  // once; the next waits for STATUS_INTERVAL. Once the position holds still, nothing after it is acknowledged.
  let acked = await confirmedLsn(db);
  await until(
    async () => {
      const now = await confirmedLsn(db);
      const still = now === acked;
      acked = now;
      return still;
    },
    { what: 'the confirmed position holding still', intervalMs: 300 },
  );

  await insertEvents(
    db,
    Array.from({ length: 50 }, (_, i) => ({ type: 'after', payload: `{"i": ${i}}` })),
  );
  await until(async () => (await deliveryRows(db)) === 51, { what: 'fan-out of 50 rows committed' });
  expect(await confirmedLsn(db)).toBe(acked); // fanned out, not acknowledged: the window we kill in
  first.kill('SIGKILL');
  expect((await first.exited).signal).toBe('SIGKILL');

  const second = spawnRelay(env);
  await untilReady(second);
  await until(async () => (await countWhere(db, 'delivered')) === 51, { what: '51 delivered', timeoutMs: 30_000 });
  expect(await deliveryRows(db)).toBe(51); // the replayed transactions hit ON CONFLICT DO NOTHING
  const ids = new Set(receiver.requests.map((r) => r.headers['webhook-id']));
  expect(ids.size).toBe(51);
  await until(async () => (await confirmedLsn(db)) !== acked, { what: 'slot position advanced after replay' });
  second.kill('SIGTERM');
  expect((await second.exited).code).toBe(0);
});
