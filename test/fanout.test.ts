import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { createFanOut } from '../src/fanout/fanout.ts';
import { createLogger } from '../src/log.ts';
import { createScheduler } from '../src/scheduler/scheduler.ts';
import type { Attempt } from '../src/domain.ts';
import { test } from './fixtures.ts';
import { addEndpoint, asEvents, insertEvents, type TestDb } from './support/postgres.ts';
import { envelopeOf, startReceiver } from './support/receiver.ts';
import { until } from './support/until.ts';

test('fan-out follows event_types, parks deliveries of disabled endpoints and honours endpoint_id targeting', async ({
  db,
  receiver: paid,
  startRelay,
  onTestFinished,
}) => {
  const [created, all, disabled] = await Promise.all([startReceiver(), startReceiver(), startReceiver()]);
  onTestFinished(async () => {
    await Promise.all([created.close(), all.close(), disabled.close()]);
  });
  await addEndpoint(db, paid.url, { eventTypes: ['invoice.paid'] });
  await addEndpoint(db, created.url, { eventTypes: ['customer.created', 'customer.deleted'] });
  await addEndpoint(db, all.url, { eventTypes: null });
  const off = await addEndpoint(db, disabled.url, { eventTypes: null, enabled: false });
  const onlyPaid = await addEndpoint(db, paid.url.replace('/hooks', '/targeted'), { eventTypes: ['never.sent'] });
  await startRelay();
  await insertEvents(db, [
    { type: 'invoice.paid', payload: '{"n": 1}' },
    { type: 'invoice.paid', payload: '{"n": 2}' },
    { type: 'customer.created', payload: '{"n": 3}' },
    { type: 'other.thing', payload: '{"n": 4}' },
    // Targeted: only that endpoint, whatever its event_types say; nobody else.
    { type: 'invoice.paid', payload: '{"n": 5}', endpointId: onlyPaid.id },
  ]);
  // 2 + 1 + 4 + 1 (targeted, to the paid receiver's /targeted path) = 8 deliveries in all.
  await until(async () => (await delivered(db)) === 8, { what: '8 delivered' });
  expect(paid.requests.map((r) => r.path).sort()).toEqual(['/hooks', '/hooks', '/targeted']);
  expect(created.requests).toHaveLength(1);
  expect(all.requests).toHaveLength(4);
  expect(disabled.requests).toHaveLength(0);
  // The disabled endpoint receives nothing, but its deliveries exist, parked until it is enabled.
  expect(await db.pool.oneFirst(countFor(off.id))).toBe(4);
  const targeted = paid.requests.filter((r) => envelopeOf(r).data.n === 5);
  expect(targeted).toHaveLength(1);
});

test('a row inserted in a rolled-back transaction is never delivered', async ({ db, receiver, startRelay }) => {
  await addEndpoint(db, receiver.url);
  await startRelay();
  await db.app.query('BEGIN');
  await db.app.query(`INSERT INTO webhooks.outbox (event_type, payload) VALUES ('ghost', '{}')`);
  await db.app.query('ROLLBACK');
  const [marker] = await insertEvents(db, [{ type: 'marker', payload: '{}' }]);
  // The stream is ordered: once the later marker is delivered, the rolled-back row had its chance.
  await until(() => receiver.requests.some((r) => r.headers['webhook-id'] === `msg_${marker}`));
  expect(receiver.requests.map((r) => envelopeOf(r).type)).toEqual(['marker']);
});

test('a targeted row for a disabled endpoint waits as pending instead of being dropped', async ({
  db,
  receiver,
  startRelay,
}) => {
  const off = await addEndpoint(db, receiver.url, { enabled: false });
  await startRelay();
  await insertEvents(db, [{ type: 'x', payload: '{}', endpointId: off.id }]);
  await until(async () => (await db.pool.oneFirst(countFor(off.id))) === 1);
  expect(
    await db.pool.oneFirst(sql.type(z.object({ s: z.string() }))`SELECT status AS s FROM webhooks.deliveries`),
  ).toBe('pending');
  await db.pool.query(sql.unsafe`UPDATE webhooks.endpoints SET enabled = true WHERE id = ${off.id}`);
  await until(() => receiver.requests.length === 1, { what: 'delivery after enabling' });
});

// Fan-out against the real scheduler and database, without a stream: `attempt` decides whether places free up.
/** The table's fan-out over a real scheduler of 10 places whose attempts are `attempt`. */
function tableFanOut(db: TestDb, roomWaitMs: number, attempt: () => Promise<Attempt>) {
  const log = createLogger('silent');
  const scheduler = createScheduler({
    capacity: 10,
    concurrency: 2,
    perEndpointConcurrency: 2,
    log,
    attempt,
    finished: (job) => scheduler.written([job.endpointId]), // outcome "written" at once: its place frees
    handBack: async () => {},
  });
  return createFanOut({ pool: db.pool, owner: 'fanout-test', leaseMs: 60_000, roomWaitMs, log, scheduler });
}

async function fanOutThroughScheduler(db: TestDb, events: number, roomWaitMs: number, attempt: () => Promise<Attempt>) {
  const ids = await insertEvents(
    db,
    Array.from({ length: events }, (_, n) => ({ type: 'burst', payload: `{"n": ${n}}` })),
  );
  await tableFanOut(db, roomWaitMs, attempt)(asEvents(ids, 'burst'));
  return db.pool.any(sql.type(z.object({ status: z.string(), owner: z.string().nullable(), n: z.number() }))`
    SELECT status, lease_owner AS owner, count(*)::int AS n FROM webhooks.deliveries GROUP BY 1, 2 ORDER BY 1`);
}

const sent: Attempt = { kind: 'delivered', status: 204, durationMs: 1 };

test('FANOUT_ROOM_WAIT: a batch bigger than the room goes in chunks as places free up, more of it claimed', async ({
  db,
  receiver,
}) => {
  await addEndpoint(db, receiver.url);
  // 50 events through 10 places. Without the wait 5 go in claimed (next test); with it, later chunks are claimed
  // as places free up, each within the endpoint's fair share (half the places while it holds some), the rest
  // pending. The wait is a bound for the whole batch; a long one keeps a slow machine from running out of it.
  const rows = await fanOutThroughScheduler(db, 50, 10_000, () => Promise.resolve(sent));
  const claimed = rows.find((r) => r.status === 'delivering')?.n ?? 0;
  const pending = rows.find((r) => r.status === 'pending')?.n ?? 0;
  expect(claimed + pending).toBe(50);
  expect(claimed).toBeGreaterThan(5);
});

test('by default the overflow beyond the room is inserted pending at once, for any replica to claim', async ({
  db,
  receiver,
}) => {
  await addEndpoint(db, receiver.url);
  // Alone, an endpoint may take half the places: the other half stays free for other endpoints' first rows.
  expect(await fanOutThroughScheduler(db, 50, 0, () => Promise.resolve(sent))).toEqual([
    { status: 'delivering', owner: 'fanout-test', n: 5 },
    { status: 'pending', owner: null, n: 45 },
  ]);
});

test('FANOUT_ROOM_WAIT: when no place frees up, fan-out stops waiting and leaves the overflow pending', async ({
  db,
  receiver,
}) => {
  await addEndpoint(db, receiver.url);
  const started = performance.now();
  // Every attempt hangs: the 10 places never free up.
  const rows = await fanOutThroughScheduler(db, 50, 250, () => new Promise<Attempt>(() => {}));
  expect(rows).toEqual([
    { status: 'delivering', owner: 'fanout-test', n: 5 },
    { status: 'pending', owner: null, n: 45 },
  ]);
  expect(performance.now() - started).toBeLessThan(10_000); // one bounded wait, not one per event
});

const delivered = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM webhooks.deliveries WHERE status = 'delivered'`);
const countFor = (endpointId: string) => sql.type(z.object({ n: z.number() }))`
  SELECT count(*)::int AS n FROM webhooks.deliveries WHERE endpoint_id = ${endpointId}`;

test('through the table, an ordered endpoint’s keyed deliveries go in pending with key and commit LSN, never claimed', async ({
  db,
  receiver,
}) => {
  const ordered = await addEndpoint(db, `${receiver.url}?o`, { ordered: true });
  await addEndpoint(db, `${receiver.url}?p`);
  const ids = await insertEvents(db, [
    { type: 'e', payload: '{}' },
    { type: 'e', payload: '{}' },
  ]);
  // Requests held forever: only what the statement claimed matters here.
  await tableFanOut(
    db,
    0,
    () => new Promise<Attempt>(() => {}),
  )(asEvents(ids, 'e', (i) => ({ orderingKey: i === 0 ? 'inv-42' : null, commitLsn: '0/16B3748' })));
  const rows = await db.pool.any(sql.type(
    z.object({
      endpoint: z.string(),
      keyed: z.boolean(),
      status: z.string(),
      key: z.string().nullable(),
      lsn: z.string().nullable(),
    }),
  )`
    SELECT CASE endpoint_id WHEN ${ordered.id}::uuid THEN 'ordered' ELSE 'plain' END AS endpoint,
           outbox_id = ${ids[0]!}::int8 AS keyed, status, ordering_key AS key, order_lsn::text AS lsn
    FROM webhooks.deliveries ORDER BY 1, 2 DESC`);
  expect(rows).toEqual([
    { endpoint: 'ordered', keyed: true, status: 'pending', key: 'inv-42', lsn: '0/16B3748' },
    { endpoint: 'ordered', keyed: false, status: 'delivering', key: null, lsn: null },
    { endpoint: 'plain', keyed: true, status: 'delivering', key: null, lsn: null },
    { endpoint: 'plain', keyed: false, status: 'delivering', key: null, lsn: null },
  ]);
});
