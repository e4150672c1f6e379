import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents, type TestDb } from './support/postgres.ts';
import { relayEnv, scrape } from './support/relay.ts';
import { untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

const Row = z.object({
  outboxId: z.string(),
  status: z.string(),
  attempts: z.number(),
  leaseOwner: z.string().nullable(),
});
const rows = (db: TestDb) =>
  db.pool.any(sql.type(Row)`
    SELECT outbox_id AS "outboxId", status, attempts, lease_owner AS "leaseOwner"
    FROM webhooks.deliveries ORDER BY outbox_id`);
const failedAttempts = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM webhooks.delivery_attempts`);

test('a relay frozen (SIGSTOP) past its lease: a peer reclaims; resumed, its late writes change nothing and it aborts', async ({
  db,
  receiver,
  startRelay,
  spawnRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply((_req, i) => (i === 0 ? 'hang' : { status: 204 }));
  const env = {
    LEASE: '3s',
    HEARTBEAT_INTERVAL: '500ms',
    REQUEST_TIMEOUT: '1500ms',
    SWEEP_INTERVAL: '200ms',
    PERSIST_AFTER: '200ms',
  };
  const frozen = spawnRelay(relayEnv(db, env));
  await untilReady(frozen);
  await startRelay(env, 'standby');
  const [id] = await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  await until(() => receiver.requests.length === 1, { what: 'the first request in flight' });
  // Sent from the stream, it has a row (leased) once it outlasts PERSIST_AFTER. Frozen before that, the slot
  // would hold it: a peer takes the slot once the server drops the frozen stream (wal_sender_timeout).
  await until(async () => (await rows(db))[0]?.status === 'delivering', { what: 'the slow delivery persisted' });
  frozen.kill('SIGSTOP');
  // The lease runs out on the database clock; the peer's sweep reclaims and delivers.
  await until(async () => (await rows(db))[0]?.status === 'delivered', { what: 'peer delivered', timeoutMs: 15_000 });
  const afterPeer = await rows(db);
  expect(afterPeer).toEqual([{ outboxId: id, status: 'delivered', attempts: 2, leaseOwner: null }]);
  frozen.kill('SIGCONT');
  // Resumed: its request times out or is aborted, its outcome write finds the lease gone and changes nothing.
  await until(() => receiver.requests[0]!.state === 'aborted', { what: 'the frozen relay dropped its request' });
  await until(async () => (await scrape(portOf(frozen), 'outbox_relay_deliveries_total')) === 1, {
    what: 'the frozen relay recorded its attempt as finished',
  });
  expect(await rows(db)).toEqual(afterPeer);
  expect(await failedAttempts(db)).toBe(0); // the late failure was not logged against the peer's delivery
  expect(receiver.requests).toHaveLength(2);
});

test('deliveries waiting behind a slow endpoint keep their leases by heartbeat and are never reclaimed', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply(() => ({ status: 204, delayMs: 1_000 }));
  // One request at a time to this endpoint: the fifth waits ~4 s, longer than the 3 s lease it was claimed with.
  const env = {
    LEASE: '3s',
    HEARTBEAT_INTERVAL: '500ms',
    REQUEST_TIMEOUT: '1500ms',
    ENDPOINT_CONCURRENCY: '1',
    SWEEP_INTERVAL: '100ms',
  };
  const holder = await startRelay(env);
  const peer = await startRelay(env, 'standby');
  await insertEvents(
    db,
    Array.from({ length: 5 }, (_, i) => ({ type: 'slow', payload: `{"i":${i}}` })),
  );
  await until(async () => (await countWhere(db, 'delivered')) === 5, { what: '5 delivered', timeoutMs: 20_000 });
  expect(receiver.requests).toHaveLength(5);
  expect(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size).toBe(5);
  expect((await rows(db)).map((r) => r.attempts)).toEqual([1, 1, 1, 1, 1]);
  expect(await scrape(peer.httpPort, 'outbox_relay_sweep_reclaimed_total')).toBe(0);
  expect(await scrape(holder.httpPort, 'outbox_relay_leases_lost_total')).toBe(0);
});

test('kill -9 mid-request: a restart redelivers everything; duplicates only for the requests that were in flight', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply(() => ({ status: 204, delayMs: 800 }));
  const env = relayEnv(db, {
    LEASE: '3s',
    HEARTBEAT_INTERVAL: '500ms',
    REQUEST_TIMEOUT: '1500ms',
    SWEEP_INTERVAL: '200ms',
  });
  const first = spawnRelay(env);
  await untilReady(first);
  const ids = await insertEvents(
    db,
    Array.from({ length: 50 }, (_, i) => ({ type: 'k', payload: `{"i":${i}}` })),
  );
  await until(() => receiver.requests.length >= 10, { what: 'requests in flight' });
  first.kill('SIGKILL');
  await first.exited;
  const killedAt = performance.now();
  const inFlightAtKill = new Set(
    receiver.requests.filter((r) => r.state !== 'answered').map((r) => r.headers['webhook-id']),
  );
  spawnRelay(env); // the restart
  await until(async () => (await countWhere(db, 'delivered')) === 50, { what: '50 delivered', timeoutMs: 30_000 });
  const recoveredMs = performance.now() - killedAt;
  const counts = new Map<unknown, number>();
  for (const r of receiver.requests)
    counts.set(r.headers['webhook-id'], (counts.get(r.headers['webhook-id']) ?? 0) + 1);
  for (const id of ids) expect(counts.get(`msg_${id}`)).toBeGreaterThanOrEqual(1);
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  for (const id of duplicated) expect(inFlightAtKill).toContain(id);
  console.info(`kill -9 → all redelivered in ${Math.round(recoveredMs)} ms (LEASE 3s, SWEEP_INTERVAL 200ms)`);
});

test('SIGTERM with 20 requests in flight: they finish, unstarted leases are released at once, exit 0 within the grace', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply(() => ({ status: 204, delayMs: 1_000 }));
  const env = relayEnv(db, { DELIVERY_CONCURRENCY: '20', ENDPOINT_CONCURRENCY: '20', SHUTDOWN_GRACE: '5s' });
  const relay = spawnRelay(env);
  await untilReady(relay);
  await insertEvents(
    db,
    Array.from({ length: 40 }, (_, i) => ({ type: 't', payload: `{"i":${i}}` })),
  );
  await until(() => receiver.requests.length === 20, { what: '20 in flight' });
  // Every event fanned out first: one not yet streamed when SIGTERM lands stays in the slot for the next run.
  await until(async () => (await scrape(portOf(relay), 'outbox_relay_events_fanned_out_total')) === 40, {
    what: '40 events fanned out',
  });
  const sentAt = performance.now();
  relay.kill('SIGTERM');
  const { code } = await relay.exited;
  const tookMs = performance.now() - sentAt;
  expect(code).toBe(0);
  expect(tookMs).toBeLessThan(5_000 + 2_000);
  expect(receiver.requests.slice(0, 20).every((r) => r.state === 'answered')).toBe(true);
  const after = await rows(db);
  expect(after.filter((r) => r.status === 'delivered')).toHaveLength(20);
  const released = after.filter((r) => r.status === 'pending');
  expect(released, JSON.stringify(after.filter((r) => r.status !== 'delivered'))).toHaveLength(20);
  // Released, not attempted: no owner, attempts handed back, due now for a peer.
  expect(released.every((r) => r.leaseOwner === null && r.attempts === 0)).toBe(true);
  expect(after.some((r) => r.status === 'delivering')).toBe(false);
});

const portOf = (relay: { httpPort: () => number | undefined }) => relay.httpPort()!;
