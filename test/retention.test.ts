import { pino } from 'pino';
import { expect } from 'vitest';
import { createDatabasePool } from '../src/db/pool.ts';
import { clearSecrets, retentionPass, runRetention, type RetentionDeps } from '../src/retention/retention.ts';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents, newSecret, type TestDb } from './support/postgres.ts';
import { until } from './support/until.ts';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** Deps with a logger that keeps its lines, and a tally of everything onDeleted reported. */
function retention(db: TestDb, overrides: Partial<RetentionDeps> = {}) {
  const lines: { level: number; msg: string }[] = [];
  const tally = { deliveries: 0, outbox: 0, batches: [] as number[] };
  const log = pino(
    { level: 'info' },
    { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) },
  );
  const deps: RetentionDeps = {
    pool: db.pool,
    log,
    intervalMs: 10,
    deliveredMaxAgeMs: HOUR_MS,
    deadMaxAgeMs: 7 * DAY_MS,
    batch: 100,
    onDeleted: (c) => {
      tally.deliveries += c.deliveries;
      tally.outbox += c.outbox;
      tally.batches.push(c.deliveries + c.outbox);
    },
    ...overrides,
  };
  return { deps, lines, tally, errors: () => lines.filter((l) => l.level >= 50) };
}

/**
 * An event created `age` ago (a Postgres interval) with one delivery per spec, each last updated `updated` ago
 * and carrying two failed-attempt rows. delivered_at is `updated` ago whatever the status: only the status
 * may protect pending and delivering rows. 'legacy.event' matches no live endpoint.
 */
async function event(db: TestDb, age: string, deliveries: { endpointId: string; status: string; updated: string }[]) {
  const { rows: outbox } = await db.app.query<{ id: string }>(
    `INSERT INTO webhooks.outbox (event_type, payload, created_at)
     VALUES ('legacy.event', '{}', now() - $1::interval) RETURNING id`,
    [age],
  );
  const outboxId = outbox[0]!.id;
  const ids = [];
  for (const d of deliveries) {
    const { rows } = await db.app.query<{ id: string }>(
      `WITH d AS (
         INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, created_at, updated_at, delivered_at,
                                          lease_owner, lease_until)
         VALUES ($1, $2, $3, 2, now() - $4::interval, now() - $5::interval, now() - $5::interval,
                 CASE WHEN $3 = 'delivering' THEN 'gone-relay' END, CASE WHEN $3 = 'delivering' THEN now() END)
         RETURNING id
       ), a AS (
         INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, error, created_at)
         SELECT d.id, n, 'HTTP 500', now() - $5::interval FROM d, generate_series(1, 2) n
       )
       SELECT id FROM d`,
      [outboxId, d.endpointId, d.status, age, d.updated],
    );
    ids.push(rows[0]!.id);
  }
  return { outboxId, ids };
}

/** Delivered two hours ago, one hour past the delivered age the tests use. */
const deliveredLongAgo = (endpointId: string) => [{ endpointId, status: 'delivered', updated: '2 hours' }];

const ids = async (db: TestDb, query: string) => (await db.app.query<{ id: string }>(query)).rows.map((r) => r.id);
const remaining = async (db: TestDb) => ({
  deliveries: await ids(db, 'SELECT id FROM webhooks.deliveries ORDER BY id'),
  attemptsOf: await ids(db, 'SELECT DISTINCT delivery_id AS id FROM webhooks.delivery_attempts ORDER BY 1'),
  outbox: await ids(db, 'SELECT id FROM webhooks.outbox ORDER BY id'),
});

test('a pass deletes old delivered and old dead deliveries with their attempts and outbox rows left with none; it keeps young ones and every pending or delivering row', async ({
  db,
}) => {
  const a = (await addEndpoint(db, 'https://a.example/hooks')).id;
  const b = (await addEndpoint(db, 'https://b.example/hooks')).id;
  // Seeded oldest first, as ids grow with time.
  const pending = await event(db, '30 days', [{ endpointId: a, status: 'pending', updated: '30 days' }]);
  const delivering = await event(db, '30 days', [{ endpointId: a, status: 'delivering', updated: '30 days' }]);
  await event(db, '10 days', [{ endpointId: a, status: 'dead', updated: '8 days' }]); // goes, with its event
  const youngDead = await event(db, '3 days', [{ endpointId: a, status: 'dead', updated: '2 days' }]);
  await event(db, '3 hours', deliveredLongAgo(a)); // goes, with its event
  const deliveredLate = await event(db, '3 hours', [{ endpointId: a, status: 'delivered', updated: '10 minutes' }]);
  const withPending = await event(db, '3 hours', [
    { endpointId: a, status: 'delivered', updated: '2 hours' },
    { endpointId: b, status: 'pending', updated: '2 hours' },
  ]);
  const withDead = await event(db, '3 hours', [
    { endpointId: a, status: 'delivered', updated: '2 hours' },
    { endpointId: b, status: 'dead', updated: '2 hours' },
  ]);
  await event(db, '2 hours', []); // no subscriber: goes
  const young = await event(db, '5 minutes', [{ endpointId: a, status: 'delivered', updated: '4 minutes' }]);
  const notFannedOutYet = await event(db, '1 second', []);

  const { deps, lines, tally } = retention(db, { batch: 3 });
  const counts = await retentionPass(deps);

  const kept = [pending, delivering, youngDead, deliveredLate, withPending, withDead, young];
  const keptDeliveries = kept.map((e) => e.ids.at(-1)!); // of withPending and withDead, the second stays
  expect(await remaining(db)).toEqual({
    deliveries: keptDeliveries,
    attemptsOf: keptDeliveries,
    outbox: [...kept, notFannedOutYet].map((e) => e.outboxId),
  });
  expect(counts).toEqual({ deliveries: 4, outbox: 3 });
  expect(tally).toMatchObject({ deliveries: 4, outbox: 3 });
  expect(lines.filter((l) => l.msg === 'retention deleted old rows')).toMatchObject([{ deliveries: 4, outbox: 3 }]);

  // A second pass finds nothing and says nothing.
  expect(await retentionPass(deps)).toEqual({ deliveries: 0, outbox: 0 });
  expect(lines).toHaveLength(1);
});

test('one pass deletes every old row in batches of at most `batch`, and stops reading at the young rows', async ({
  db,
}) => {
  const a = (await addEndpoint(db, 'https://a.example/hooks')).id;
  for (let i = 0; i < 50; i++) await event(db, '3 hours', deliveredLongAgo(a));
  const young = [];
  for (let i = 0; i < 60; i++)
    young.push(await event(db, '1 minute', [{ endpointId: a, status: 'delivered', updated: '1 minute' }]));
  let statements = 0;
  const pool = new Proxy(db.pool, {
    get: (target, key) =>
      key === 'one' ? (statements++, target.one.bind(target)) : (Reflect.get(target, key) as unknown),
  });

  const { deps, tally } = retention(db, { batch: 7, pool });
  expect(await retentionPass(deps)).toEqual({ deliveries: 50, outbox: 50 });

  const youngIds = young.flatMap((e) => e.ids);
  expect(await remaining(db)).toEqual({
    deliveries: youngIds,
    attemptsOf: youngIds,
    outbox: young.map((e) => e.outboxId),
  });
  expect(Math.max(...tally.batches)).toBeLessThanOrEqual(7);
  expect(tally.batches.length).toBeGreaterThanOrEqual(16); // 50 / 7, for each table
  // Delivered and outbox: 8 windows holding old rows, 1 young one; dead: 1 (nothing is 7 days old).
  // Reading on through the 60 young rows would take 16 windows per step.
  expect(statements).toBe(19);
});

test('a pass skips rows another transaction holds instead of waiting for them', async ({ db }) => {
  const a = (await addEndpoint(db, 'https://a.example/hooks')).id;
  const held = await event(db, '3 hours', deliveredLongAgo(a));
  await event(db, '3 hours', deliveredLongAgo(a));
  const { deps } = retention(db);

  await db.app.query('BEGIN');
  await db.app.query('SELECT 1 FROM webhooks.deliveries WHERE id = $1 FOR UPDATE', [held.ids[0]]);
  const pass = retentionPass(deps);
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('pass waited')), 5_000).unref());
  expect(await Promise.race([pass, timeout])).toEqual({ deliveries: 1, outbox: 1 });
  await db.app.query('COMMIT');
  expect(await remaining(db)).toMatchObject({ deliveries: held.ids, outbox: [held.outboxId] });

  expect(await retentionPass(deps)).toEqual({ deliveries: 1, outbox: 1 });
  expect(await remaining(db)).toEqual({ deliveries: [], attemptsOf: [], outbox: [] });
});

test('two replicas running retention at once delete each old row once, and neither errors', async ({ db }) => {
  const a = (await addEndpoint(db, 'https://a.example/hooks')).id;
  for (let i = 0; i < 120; i++) await event(db, '3 hours', deliveredLongAgo(a));
  for (let i = 0; i < 30; i++) await event(db, '9 days', [{ endpointId: a, status: 'dead', updated: '8 days' }]);
  await db.app.query(
    `INSERT INTO webhooks.outbox (event_type, payload, created_at)
     SELECT 'legacy.event', '{}', now() - interval '2 hours' FROM generate_series(1, 40)`,
  );
  const young = await event(db, '1 minute', [{ endpointId: a, status: 'delivered', updated: '1 minute' }]);

  const pools = [await createDatabasePool(db.url), await createDatabasePool(db.url)];
  const replicas = pools.map((pool) => retention(db, { pool, batch: 5, intervalMs: 1 }));
  const stop = new AbortController();
  const loops = replicas.map((r) => runRetention(r.deps, stop.signal));
  try {
    await until(async () => (await remaining(db)).outbox.length === 1, { what: 'old rows gone' });
  } finally {
    stop.abort();
    await Promise.all(loops);
    await Promise.all(pools.map((p) => p.end()));
  }

  expect(await remaining(db)).toEqual({ deliveries: young.ids, attemptsOf: young.ids, outbox: [young.outboxId] });
  const total = (k: 'deliveries' | 'outbox') => replicas.reduce((sum, r) => sum + r.tally[k], 0);
  expect({ deliveries: total('deliveries'), outbox: total('outbox') }).toEqual({ deliveries: 150, outbox: 190 });
  expect(replicas.flatMap((r) => r.errors())).toEqual([]);
});

test('retention runs while deliveries flow: every event arrives, young rows stay, old rows go', async ({
  db,
  receiver,
  startRelay,
}) => {
  // Old history on an endpoint that no longer receives anything (disabled: the claim loop leaves it alone).
  // (Subscribed to a retired event type: disabled endpoints still get parked deliveries of events they match.)
  const gone = (await addEndpoint(db, 'https://gone.example/hooks', { enabled: false, eventTypes: ['retired.event'] }))
    .id;
  for (let i = 0; i < 20; i++) await event(db, '3 hours', deliveredLongAgo(gone));
  for (let i = 0; i < 5; i++) await event(db, '9 days', [{ endpointId: gone, status: 'dead', updated: '8 days' }]);
  const stuck = await event(db, '30 days', [{ endpointId: gone, status: 'pending', updated: '30 days' }]);
  await addEndpoint(db, receiver.url, { eventTypes: ['live.event'] });
  await startRelay();
  const { deps, errors, tally } = retention(db, { batch: 7, intervalMs: 5 });
  const stop = new AbortController();
  const loop = runRetention(deps, stop.signal);
  const events = (from: number) =>
    Array.from({ length: 100 }, (_, i) => ({ type: 'live.event', payload: `{"n": ${from + i}}` }));
  const deliveredOf = async (outboxIds: string[]) =>
    (
      await db.app.query(`SELECT 1 FROM webhooks.deliveries WHERE status = 'delivered' AND outbox_id = ANY ($1)`, [
        outboxIds,
      ])
    ).rowCount;
  let liveIds: string[] = [];
  try {
    const first = await insertEvents(db, events(0));
    const aged = first.slice(0, 50);
    await until(async () => (await deliveredOf(aged)) === 50, { what: 'first 50 delivered' });
    // The second hundred flows while the first fifty age by an hour and retention deletes them.
    const second = insertEvents(db, events(100));
    await db.app.query(
      `WITH o AS (UPDATE webhooks.outbox SET created_at = created_at - interval '3 hours' WHERE id = ANY ($1))
       UPDATE webhooks.deliveries SET created_at = created_at - interval '3 hours',
              delivered_at = delivered_at - interval '2 hours' WHERE outbox_id = ANY ($1)`,
      [aged],
    );
    liveIds = [...first.slice(50), ...(await second)];
    await until(async () => (await deliveredOf(liveIds)) === 150, { what: 'the other 150 delivered' });
    await until(() => tally.deliveries === 75 && tally.outbox === 75, { what: 'old rows deleted' });
  } finally {
    stop.abort();
    await loop;
  }

  expect(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size).toBe(200);
  const left = await remaining(db);
  expect(left.outbox).toEqual([stuck.outboxId, ...liveIds]);
  expect(left.deliveries).toHaveLength(151);
  expect(left.deliveries).toContain(stuck.ids[0]);
  expect(errors()).toEqual([]);
});

test('a relay clears previous secrets whose rotation window ended, even with RETENTION_DELIVERED=0; live ones stay', async ({
  db,
  startRelay,
}) => {
  const expired = await addEndpoint(db, 'https://example.com/expired', { eventTypes: ['never'] });
  const live = await addEndpoint(db, 'https://example.com/live', { eventTypes: ['never'] });
  const previous = newSecret();
  await db.app.query(
    `UPDATE webhooks.endpoints SET previous_secret = $1,
            previous_secret_expires_at = now() + CASE WHEN id = $2 THEN interval '-1 second' ELSE interval '1 hour' END`,
    [previous, expired.id],
  );
  const old = await event(db, '30 days', deliveredLongAgo(live.id));
  await startRelay({ RETENTION_DELIVERED: '0', RETENTION_INTERVAL: '1s' });
  const previousOf = async (id: string) =>
    (
      await db.app.query<{ previous: string | null; expires: Date | null }>(
        `SELECT previous_secret AS previous, previous_secret_expires_at AS expires FROM webhooks.endpoints WHERE id = $1`,
        [id],
      )
    ).rows[0];
  await until(async () => (await previousOf(expired.id))?.previous === null, { what: 'the expired secret cleared' });
  expect(await previousOf(expired.id)).toEqual({ previous: null, expires: null });
  expect((await previousOf(live.id))?.previous).toBe(previous);
  expect((await remaining(db)).deliveries).toEqual(old.ids); // deletion stays off
});

test('clearSecrets clears only expired previous secrets and reports how many', async ({ db }) => {
  const a = await addEndpoint(db, 'https://example.com/a');
  await addEndpoint(db, 'https://example.com/b');
  await db.app.query(
    `UPDATE webhooks.endpoints SET previous_secret = $1, previous_secret_expires_at = now() - interval '1 minute'
     WHERE id = $2`,
    [newSecret(), a.id],
  );
  const { deps, lines } = retention(db);
  expect(await clearSecrets(deps)).toBe(1);
  expect(await clearSecrets(deps)).toBe(0);
  expect(lines.map((l) => l.msg)).toEqual(['expired previous secrets cleared']);
  const left = await db.app.query(`SELECT id FROM webhooks.endpoints WHERE previous_secret IS NOT NULL`);
  expect(left.rowCount).toBe(0);
});
