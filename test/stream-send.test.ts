import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents, newSecret, type TestDb } from './support/postgres.ts';
import { until } from './support/until.ts';

const events = (n: number, type = 'order.created') =>
  Array.from({ length: n }, (_, i) => ({ type, payload: JSON.stringify({ n: i }) }));

/** Row writes to webhooks.deliveries so far in this database (stats are flushed when the test asks). */
async function deliveryWrites(db: TestDb) {
  await db.pool.query(sql.unsafe`SELECT pg_stat_force_next_flush()`);
  return db.pool.one(sql.type(z.object({ inserts: z.number(), updates: z.number() }))`
    SELECT coalesce(sum(n_tup_ins), 0)::int AS inserts, coalesce(sum(n_tup_upd), 0)::int AS updates
    FROM pg_stat_user_tables WHERE schemaname = 'webhooks' AND relname = 'deliveries'`);
}

const statuses = (db: TestDb) =>
  db.pool.any(sql.type(z.object({ status: z.string(), attempts: z.number(), n: z.number() }))`
    SELECT status, attempts, count(*)::int AS n FROM webhooks.deliveries GROUP BY 1, 2 ORDER BY 1, 2`);

const confirmedLsn = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ lsn: z.string() }))`
    SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${db.slotName}`);

const walNow = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ lsn: z.string() }))`SELECT pg_current_wal_lsn()::text AS lsn`);

const lsnAtLeast = (a: string, b: string) => {
  const n = (lsn: string) => {
    const [hi, lo] = lsn.split('/');
    return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
  };
  return n(a) >= n(b);
};

test('sent from the stream: each delivered delivery costs one row write, recorded delivered with one attempt', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  await startRelay();
  const before = await deliveryWrites(db);
  await insertEvents(db, events(200));
  await until(() => receiver.requests.length >= 200, { what: '200 arrivals' });
  await until(async () => (await statuses(db)).some((s) => s.status === 'delivered' && s.n === 200), {
    what: '200 delivered rows',
  });
  // The relay's sessions report their row counts about once a second.
  const after = await until(
    async () => {
      const now = await deliveryWrites(db);
      return now.inserts - before.inserts >= 200 ? now : undefined;
    },
    { what: 'the inserts in pg_stat_user_tables' },
  );
  expect(await statuses(db)).toEqual([{ status: 'delivered', attempts: 1, n: 200 }]);
  expect({ inserts: after.inserts - before.inserts, updates: after.updates - before.updates }).toEqual({
    inserts: 200,
    updates: 0,
  });
  expect(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size).toBe(200);
  // The row written once carries the attempt's duration too (a success has no delivery_attempts row).
  const unmeasured = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM webhooks.deliveries WHERE last_duration_ms IS NULL OR last_duration_ms < 0`);
  expect(unmeasured).toBe(0);
  expect(endpoint.id).toBeTruthy();
});

test('an endpoint created in the same transaction as an event receives it, even when created after the event', async ({
  db,
  receiver,
  startRelay,
}) => {
  await startRelay();
  await db.app.query('BEGIN');
  await db.app.query(`INSERT INTO webhooks.outbox (event_type, payload) VALUES ('same.tx', '{"n":1}')`);
  await db.app.query(`INSERT INTO webhooks.endpoints (url, secret) VALUES ($1, $2)`, [receiver.url, newSecret()]);
  await db.app.query('COMMIT');
  await until(() => receiver.requests.length >= 1, { what: 'the event at the endpoint created with it' });
  expect(receiver.requests[0]!.body).toContain('same.tx');
});

test('an endpoint disabled before an event commits does not get it sent: the row is parked until enabled', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  const other = await addEndpoint(db, receiver.url, { eventTypes: ['other'] });
  await startRelay();
  await db.pool.query(sql.unsafe`UPDATE webhooks.endpoints SET enabled = false WHERE id = ${endpoint.id}`);
  await insertEvents(db, events(3));
  await db.app.query(`INSERT INTO webhooks.outbox (event_type, payload) VALUES ('other', '{}')`); // a marker after them
  await until(() => receiver.requests.length >= 1, { what: 'the marker event' });
  expect(receiver.requests.map((r) => r.body)).toEqual([expect.stringContaining('"other"')]);
  // The three, and the marker (every event type): parked for the disabled endpoint.
  await until(async () => (await statuses(db)).some((s) => s.status === 'pending' && s.n === 4), {
    what: 'four parked rows',
    timeoutMs: 3_000,
  }).catch(async (err: unknown) => {
    throw new Error(`${String(err)}; rows: ${JSON.stringify(await statuses(db))}`);
  });
  await db.pool.query(sql.unsafe`UPDATE webhooks.endpoints SET enabled = true WHERE id = ${endpoint.id}`);
  await until(() => receiver.requests.length >= 5, { what: 'the parked events once enabled' });
  expect(other.id).toBeTruthy();
});

test('a hanging endpoint holds the slot back by PERSIST_AFTER at most: its deliveries get rows and the slot moves on', async ({
  db,
  receiver,
  startRelay,
}) => {
  receiver.reply(() => 'hang');
  await addEndpoint(db, receiver.url);
  await startRelay({ PERSIST_AFTER: '500ms', REQUEST_TIMEOUT: '20s', LEASE: '60s' });
  await insertEvents(db, events(5));
  const written = await walNow(db);
  await insertEvents(db, events(1)); // its commit ends past `written`: confirming it means confirming all six
  await until(() => receiver.requests.length >= 6, { what: 'six hanging requests' });
  const start = Date.now();
  await until(async () => lsnAtLeast(await confirmedLsn(db), written), {
    what: 'the slot confirmed past the hanging deliveries',
    timeoutMs: 10_000,
  });
  const heldMs = Date.now() - start;
  expect(await statuses(db)).toEqual([{ status: 'delivering', attempts: 1, n: 6 }]);
  expect(heldMs).toBeLessThan(5_000);
});

test('a receiver that fails: the first attempt is recorded pending for its retry in one insert, then delivered', async ({
  db,
  receiver,
  startRelay,
}) => {
  receiver.reply((_r, i) => (i < 3 ? { status: 500, body: 'nope' } : { status: 200 }));
  await addEndpoint(db, receiver.url);
  await startRelay();
  await insertEvents(db, events(3));
  await until(async () => (await statuses(db)).some((s) => s.status === 'delivered' && s.n === 3), {
    what: 'three delivered after one retry each',
  });
  expect(await statuses(db)).toEqual([{ status: 'delivered', attempts: 2, n: 3 }]);
  const attempts = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM webhooks.delivery_attempts WHERE status_code = 500`);
  expect(attempts).toBe(3);
});

test('an endpoint deleted while a delivery sent from the stream hangs: the request is aborted, nothing is kept or resent', async ({
  db,
  receiver,
  startRelay,
}) => {
  receiver.reply(() => 'hang');
  const endpoint = await addEndpoint(db, receiver.url);
  await startRelay({ PERSIST_AFTER: '30s', REQUEST_TIMEOUT: '20s', LEASE: '60s' });
  await insertEvents(db, events(1));
  await until(() => receiver.requests.length === 1, { what: 'the hanging request' });
  const mark = await walNow(db);
  await db.pool.query(sql.unsafe`DELETE FROM webhooks.endpoints WHERE id = ${endpoint.id}`);
  await until(() => receiver.aborted === 1, { what: 'the request aborted' });
  // Resolved without a row: the slot moves on (nothing waits for PERSIST_AFTER), and nothing is sent again.
  await insertEvents(db, events(1, 'after'));
  await until(async () => lsnAtLeast(await confirmedLsn(db), mark), { what: 'the slot past the delete' });
  expect(await statuses(db)).toEqual([]);
  expect(receiver.requests).toHaveLength(1);
});
