// Per-key ordering (README "Ordering"): an ordered endpoint gets the events that share a key in commit order, the
// next one never attempted before the previous one is delivered or dead, across retries, a killed relay and two
// relays; keys never hold each other back; unordered endpoints are untouched.
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { createOperations } from '../src/ops/operations.ts';
import { test } from './fixtures.ts';
import { cli } from './support/cli.ts';
import { FULL_TOKEN } from './support/console.ts';
import { addEndpoint, type TestDb } from './support/postgres.ts';
import { envelopeOf, type Received } from './support/receiver.ts';
import { relayEnv, scrape } from './support/relay.ts';
import { untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

type Keyed = { key: string; n: number };

/** Inserts one transaction per round, each with one event per key of the round; returns when each committed. */
async function insertRounds(db: TestDb, rounds: readonly (readonly Keyed[])[]): Promise<Map<string, number>> {
  const committedAt = new Map<string, number>(); // `${key}/${n}` → epoch ms after COMMIT
  for (const round of rounds) {
    await db.app.query('BEGIN');
    for (const { key, n } of round) {
      await db.app.query(
        `INSERT INTO webhooks.outbox (event_type, payload, ordering_key) VALUES ('step.done', $1::jsonb, $2)`,
        [JSON.stringify({ key, n }), key],
      );
    }
    await db.app.query('COMMIT');
    const now = Date.now();
    for (const { key, n } of round) committedAt.set(`${key}/${n}`, now);
  }
  return committedAt;
}

const keyOf = (r: Received): Keyed => envelopeOf(r).data as Keyed;
const ok = (r: Received) => r.state === 'answered' && r.status !== undefined && r.status < 300;

/** The requests for each key, by event number. */
function byKey(requests: readonly Received[]): Map<string, Map<number, Received[]>> {
  const keys = new Map<string, Map<number, Received[]>>();
  for (const r of requests) {
    const { key, n } = keyOf(r);
    let events = keys.get(key);
    if (events === undefined) keys.set(key, (events = new Map<number, Received[]>()));
    events.set(n, [...(events.get(n) ?? []), r]);
  }
  return keys;
}

/**
 * For every key: the first successful receipts are in commit order, and no request for event n+1 arrived before
 * event n was answered 2xx, or, when n went dead, before its last attempt was answered. Returns how many events
 * went dead.
 */
function expectKeysInOrder(keys: Map<string, Map<number, Received[]>>, dead: ReadonlySet<string>): number {
  let deadCount = 0;
  for (const [key, events] of keys) {
    const numbers = [...events.keys()].sort((a, b) => a - b);
    const firstSuccess = (n: number) =>
      Math.min(
        ...events
          .get(n)!
          .filter(ok)
          .map((r) => r.answeredAt!),
      );
    const successes = numbers.filter((n) => !dead.has(`${key}/${n}`));
    const byFirstSuccess = [...successes].sort((a, b) => firstSuccess(a) - firstSuccess(b));
    expect(byFirstSuccess, `key ${key}: first successful receipts in commit order`).toEqual(successes);
    for (const [i, n] of numbers.entries()) {
      const next = numbers[i + 1];
      if (next === undefined) continue;
      const isDead = dead.has(`${key}/${n}`);
      if (isDead) deadCount++;
      const resolvedAt = isDead
        ? Math.max(...events.get(n)!.map((r) => r.answeredAt ?? r.receivedAt))
        : firstSuccess(n);
      const nextStart = Math.min(...events.get(next)!.map((r) => r.receivedAt));
      expect(nextStart, `key ${key}: event ${next} started before ${n} was resolved`).toBeGreaterThanOrEqual(
        resolvedAt,
      );
    }
  }
  return deadCount;
}

const deadEvents = async (db: TestDb): Promise<Set<string>> =>
  new Set(
    await db.pool.anyFirst(sql.type(z.object({ k: z.string() }))`
      SELECT (o.payload->>'key') || '/' || (o.payload->>'n') AS k
      FROM webhooks.deliveries d JOIN webhooks.outbox o ON o.id = d.outbox_id
      WHERE d.status = 'dead'`),
  );

const resolvedCount = (db: TestDb, endpointId: string) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM webhooks.deliveries
    WHERE endpoint_id = ${endpointId} AND status IN ('delivered', 'dead')`);

/** A fixed pseudo-random number in [0, 1) for the i-th request (the same run after run). */
const chance = (i: number) => (((i + 1) * 2654435761) % 2 ** 32) / 2 ** 32;

test('30 keys × 40 events, a receiver failing 20 % and sometimes slow, two relays and the slot holder killed: every key in commit order, one event at a time', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  const { id: endpointId } = await addEndpoint(db, receiver.url, { ordered: true });
  receiver.reply((_r, i) => {
    const p = chance(i);
    if (p < 0.2) return { status: 500 };
    return p < 0.3 ? { status: 204, delayMs: 150 } : { status: 204 };
  });
  const env = relayEnv(db, {
    REQUEST_TIMEOUT: '2s',
    LEASE: '5s',
    SWEEP_INTERVAL: '300ms',
    RETRY_SCHEDULE: '50ms,100ms,200ms,400ms,800ms',
  });
  const holder = spawnRelay(env);
  await untilReady(holder, 'streaming');
  const standby = spawnRelay(env);
  await untilReady(standby, 'standby');

  const keys = Array.from({ length: 30 }, (_, k) => `acct-${k}`);
  // Interleaved: each round one transaction with the next event of every key, in a different key order.
  const round = (n: number) =>
    keys
      .map((key, k) => ({ key, n, rank: chance(n * 31 + k) }))
      .sort((a, b) => a.rank - b.rank)
      .map(({ key }) => ({ key, n }));
  await insertRounds(
    db,
    Array.from({ length: 20 }, (_, n) => round(n)),
  );
  await until(() => receiver.requests.filter(ok).length >= 200, { what: '200 successes', timeoutMs: 30_000 });
  holder.kill('SIGKILL');
  await holder.exited;
  const atKill = receiver.requests.filter(ok).length;
  await insertRounds(
    db,
    Array.from({ length: 20 }, (_, n) => round(n + 20)),
  );
  await until(async () => (await resolvedCount(db, endpointId)) === 1_200, {
    what: '1,200 deliveries delivered or dead',
    timeoutMs: 90_000,
  });

  const dead = await deadEvents(db);
  const grouped = byKey(receiver.requests);
  expect(grouped.size).toBe(30);
  for (const events of grouped.values()) expect(events.size).toBe(40);
  const deadCount = expectKeysInOrder(grouped, dead);
  expect(atKill).toBeLessThan(1_000); // killed mid-run, with most of the work still ahead
  expect(receiver.requests.filter((r) => r.status === 500).length).toBeGreaterThan(100); // retries did happen
  console.info(
    `ordering: 1,200 events over 30 keys, ${receiver.requests.length} requests, ${deadCount} dead, killed at ${atKill} successes`,
  );
});

test('a key rejected for 12 s holds back only itself: other keys and an unordered endpoint keep their latency; status and the metric show the blocked key', async ({
  db,
  receiver,
  startRelay,
}) => {
  const ordered = await addEndpoint(db, `${receiver.url}?o=1`, { ordered: true });
  const unordered = await addEndpoint(db, `${receiver.url}?u=1`);
  const started = Date.now();
  const blockMs = 12_000;
  receiver.reply((r) =>
    r.path.endsWith('?o=1') && keyOf(r).key === 'stuck' && Date.now() - started < blockMs
      ? { status: 503 }
      : { status: 204 },
  );
  // Retries that outlast the 12 s: the stuck head stays pending (blocked), never dead.
  const relay = await startRelay({ RETRY_SCHEDULE: '1s,2s,4s,8s,16s', STATS_INTERVAL: '200ms' });
  const ops = createOperations(db.pool, { slotName: db.slotName });

  const keys = ['stuck', ...Array.from({ length: 29 }, (_, k) => `key-${k}`)];
  const committedAt = new Map<string, number>();
  let firstStuckId: string | undefined;
  let n = 0;
  let sawBlocked = false;
  while (Date.now() - started < blockMs + 1_000) {
    for (const [k, v] of await insertRounds(db, [keys.map((key) => ({ key, n }))])) committedAt.set(k, v);
    if (n === 0) {
      firstStuckId = await db.pool.oneFirst(sql.type(z.object({ id: z.string() }))`
        SELECT id::text FROM webhooks.outbox WHERE ordering_key = 'stuck' ORDER BY id LIMIT 1`);
    }
    n++;
    if (!sawBlocked && Date.now() - started > 4_000) {
      // Blocked: shown by status (with its oldest blocked head) and by the metric.
      await until(
        async () => {
          const report = await ops.status();
          const entry = report.ordered.find((o) => o.endpointId === ordered.id);
          return entry?.blockedKeys === 1 && entry.oldestBlockedHead?.orderingKey === 'stuck' ? entry : undefined;
        },
        { what: 'status showing the stuck key blocked' },
      ).then((entry) => expect(entry.oldestBlockedHead?.outboxId).toBe(firstStuckId));
      await until(async () => (await scrape(relay.httpPort, 'outbox_relay_ordered_blocked_keys')) === 1, {
        what: 'the blocked-keys metric at 1',
      });
      // Only heads are ever due: the stuck key's later events wait outside the claim's range, so no claim walks
      // them (one due row per key at most).
      const rows = await db.pool.one(sql.type(z.object({ due: z.number(), waiting: z.number() }))`
        SELECT count(*) FILTER (WHERE next_attempt_at <= now())::int AS due,
               count(*) FILTER (WHERE next_attempt_at = 'infinity')::int AS waiting
        FROM webhooks.deliveries
        WHERE endpoint_id = ${ordered.id} AND status = 'pending' AND ordering_key IS NOT NULL`);
      expect(rows.due).toBeLessThanOrEqual(keys.length);
      expect(rows.waiting).toBeGreaterThan(5);
      sawBlocked = true;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const total = n * keys.length;
  await until(
    async () => (await resolvedCount(db, ordered.id)) === total && (await resolvedCount(db, unordered.id)) === total,
    { what: 'every delivery of both endpoints resolved', timeoutMs: 60_000 },
  );

  const latencies = (endpointQuery: string, skip: (key: string) => boolean) => {
    const first = new Map<string, number>();
    for (const r of receiver.requests) {
      if (!r.path.endsWith(endpointQuery) || !ok(r)) continue;
      const { key, n: i } = keyOf(r);
      if (skip(key)) continue;
      const id = `${key}/${i}`;
      first.set(id, Math.min(first.get(id) ?? Infinity, r.answeredAt!));
    }
    return [...first].map(([id, at]) => at - committedAt.get(id)!).sort((a, b) => a - b);
  };
  const p99 = (xs: number[]) => xs[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;
  const others = latencies('?o=1', (key) => key === 'stuck');
  const everyKeyUnordered = latencies('?u=1', () => false);
  expect(others).toHaveLength(total - n);
  expect(everyKeyUnordered).toHaveLength(total);
  console.info(
    `ordering independence: other keys p99 ${p99(others)} ms, unordered endpoint p99 ${p99(everyKeyUnordered)} ms`,
  );
  expect(p99(others)).toBeLessThan(3_000);
  expect(p99(everyKeyUnordered)).toBeLessThan(3_000);

  // The stuck key went out in order once accepted, and nothing is blocked any more.
  expectKeysInOrder(byKey(receiver.requests.filter((r) => r.path.endsWith('?o=1'))), new Set());
  expect(await scrape(relay.httpPort, 'outbox_relay_ordered_blocked_keys')).toBeLessThanOrEqual(1);
  await until(async () => (await scrape(relay.httpPort, 'outbox_relay_ordered_blocked_keys')) === 0, {
    what: 'the blocked-keys metric back at 0',
  });
  expect((await ops.status()).ordered.find((o) => o.endpointId === ordered.id)?.blockedKeys).toBe(0);

  // The unordered endpoint behaved as ever: sent from the stream, one row each, written once, no key.
  const unorderedRows = await db.pool.one(sql.type(z.object({ rows: z.number(), plain: z.number() }))`
    SELECT count(*)::int AS rows,
           count(*) FILTER (WHERE ordering_key IS NULL AND status = 'delivered' AND attempts = 1)::int AS plain
    FROM webhooks.deliveries WHERE endpoint_id = ${unordered.id}`);
  expect(unorderedRows).toEqual({ rows: total, plain: total });
});

test('a dead head lets its key move on; its replay goes out as a replay and holds none of the newer events back', async ({
  db,
  receiver,
  startRelay,
}) => {
  const { id: endpointId } = await addEndpoint(db, receiver.url, { ordered: true });
  let rejectFirst = true;
  receiver.reply((r) => (keyOf(r).n === 1 && rejectFirst ? { status: 500 } : { status: 204 }));
  await startRelay({ RETRY_SCHEDULE: '100ms,3s' }); // three attempts, then dead; the last one 3 s later
  const ops = createOperations(db.pool, { slotName: db.slotName });
  for (const n of [1, 2, 3]) await insertRounds(db, [[{ key: 'inv-42', n }]]);
  await until(async () => (await resolvedCount(db, endpointId)) === 3, { what: 'event 1 dead, 2 and 3 delivered' });
  expect(await deadEvents(db)).toEqual(new Set(['inv-42/1']));
  expectKeysInOrder(byKey(receiver.requests), new Set(['inv-42/1']));
  expect(receiver.requests.filter((r) => keyOf(r).n === 1)).toHaveLength(3);

  // Replayed while the receiver still rejects it: it waits 3 s for its last retry, and the key's newer events
  // pass it meanwhile (kept in the key's order, they would wait for it).
  const replay = await ops.replay({ filter: { endpointId }, dryRun: false });
  expect(replay.moved).toBe(1);
  for (const n of [4, 5]) await insertRounds(db, [[{ key: 'inv-42', n }]]);
  await until(() => receiver.requests.filter((r) => keyOf(r).n === 5 && ok(r)).length === 1, {
    what: 'event 5 delivered while the replay of 1 keeps failing',
  });
  // Between its attempts (one may be in flight, or its outcome not yet written: then it reads delivering).
  const replayed = await until(
    async () => {
      const row = await db.pool.one(sql.type(z.object({ status: z.string(), orderingKey: z.string().nullable() }))`
        SELECT d.status, d.ordering_key AS "orderingKey"
        FROM webhooks.deliveries d JOIN webhooks.outbox o ON o.id = d.outbox_id
        WHERE o.payload->>'n' = '1'`);
      return row.status === 'delivering' ? undefined : row;
    },
    { what: 'the replay of 1 between attempts' },
  );
  expect(replayed.orderingKey).toBeNull(); // out of the key's order
  expect(replayed.status).toBe('pending'); // still retrying: it held nothing back
  expect(receiver.requests.filter((r) => keyOf(r).n === 1).length).toBeGreaterThan(3); // attempted again
  rejectFirst = false;
  await until(async () => (await resolvedCount(db, endpointId)) === 5, {
    what: 'the replay delivered at its last retry',
  });
  expect(await deadEvents(db)).toEqual(new Set());
});

test('endpoints add --ordered makes an ordered endpoint; status --json lists it with its blocked keys', async ({
  db,
  receiver,
}) => {
  const added = await cli(db, ['endpoints', 'add', '--url', receiver.url, '--ordered', '--json']);
  expect(added.code).toBe(0);
  const { endpoint } = added.json<{ endpoint: { id: string; ordered: boolean } }>();
  expect(endpoint.ordered).toBe(true);
  const plain = await cli(db, ['endpoints', 'add', '--url', receiver.url, '--json']);
  expect(plain.json<{ endpoint: { ordered: boolean } }>().endpoint.ordered).toBe(false);
  const status = await cli(db, ['status', '--json']);
  expect(status.json<{ ordered: unknown[] }>().ordered).toEqual([
    { endpointId: endpoint.id, tenant: null, url: receiver.url, blockedKeys: 0, oldestBlockedHead: null },
  ]);
  const text = await cli(db, ['status']);
  expect(text.stdout).toMatch(new RegExp(`ordered +1 endpoint .*\\n.*\\n${endpoint.id} .* 0 +-`));
});

test('the console shows a blocked key: the overview tile and table, the status API, and the endpoint page', async ({
  db,
  receiver,
  startConsole,
}) => {
  const { id } = await addEndpoint(db, receiver.url, { ordered: true });
  // A head that failed twice (waiting for its retry) with two later events of its key behind it, and another key
  // whose head is merely queued (not blocked).
  const [head] = await insertRounds(db, [
    [{ key: 'inv-7', n: 0 }],
    [{ key: 'inv-7', n: 1 }],
    [{ key: 'inv-7', n: 2 }],
  ]).then(() =>
    db.pool.anyFirst(sql.type(z.object({ id: z.string() }))`
      SELECT id::text FROM webhooks.outbox ORDER BY id`),
  );
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, next_attempt_at, last_status_code,
                                     ordering_key, order_lsn)
    SELECT o.id, ${id}::uuid, 'pending', CASE WHEN o.id = ${head!}::int8 THEN 2 ELSE 0 END,
           now() + interval '1 hour', CASE WHEN o.id = ${head!}::int8 THEN 503 END, o.ordering_key, '0/1'
    FROM webhooks.outbox o`);
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.outbox (event_type, payload, ordering_key) VALUES ('step.done', '{}', 'other')`);

  const c = await startConsole();
  const status = await c.api<{ ordered: unknown[] }>('GET', '/api/v1/status');
  expect(status.body.ordered).toMatchObject([
    {
      endpointId: id,
      blockedKeys: 1,
      oldestBlockedHead: {
        outboxId: head,
        webhookId: `msg_${head}`,
        orderingKey: 'inv-7',
        attempts: 2,
        lastStatusCode: 503,
      },
    },
  ]);
  const page = (path: string) =>
    fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${FULL_TOKEN}` } }).then((r) => r.text());
  const overview = await page('/');
  expect(overview).toMatch(/Ordered keys blocked<\/span\s*><span class="value">1</);
  expect(overview).toContain(`href="/deliveries?webhook_id=msg_${head}"`);
  expect(await page(`/endpoints/${id}`)).toContain('ordered: events that share an ordering key go one at a time');
});

test('blocked keys and ordered endpoints are counted over every endpoint, not only the 20 the overview lists', async ({
  db,
  receiver,
  startConsole,
}) => {
  const ids: string[] = [];
  for (let i = 0; i < 21; i++) ids.push((await addEndpoint(db, `${receiver.url}/${i}`, { ordered: true })).id);
  // Per endpoint, one key whose head failed twice with one later event behind it: 21 blocked keys in all.
  await db.pool.query(sql.unsafe`
    WITH o AS (
      INSERT INTO webhooks.outbox (event_type, payload, ordering_key)
      SELECT 'step.done', '{}', 'k-' || ep FROM generate_series(1, 21) ep CROSS JOIN generate_series(1, 2) n
      RETURNING id, ordering_key)
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, next_attempt_at, ordering_key, order_lsn)
    SELECT o.id, (${sql.array(ids, 'uuid')})[substr(o.ordering_key, 3)::int], 'pending',
           CASE WHEN o.id = min(o.id) OVER (PARTITION BY o.ordering_key) THEN 2 ELSE 0 END,
           now() + interval '1 hour', o.ordering_key, '0/1'
    FROM o`);

  const c = await startConsole();
  const status = await c.api<{ ordered: unknown[]; endpointTotals: unknown }>('GET', '/api/v1/status');
  expect(status.body.endpointTotals).toMatchObject({ total: 21, ordered: 21, blockedKeys: 21 });
  const overview = await fetch(`${c.url}/`, { headers: { authorization: `Bearer ${FULL_TOKEN}` } }).then((r) =>
    r.text(),
  );
  expect(overview).toMatch(
    /Ordered keys blocked<\/span\s*><span class="value">21<\/span\s*><span class="sub">on 21 ordered/,
  );
  const text = await cli(db, ['status', '--limit', '20']);
  expect(text.stdout).toMatch(
    /ordered +21 endpoints \(events sharing a key go one at a time\), 21 keys blocked, showing 20/,
  );
});

test('enabling a disabled ordered endpoint releases only each key’s head; the rest follow in order', async ({
  db,
  receiver,
  startRelay,
}) => {
  const { id } = await addEndpoint(db, receiver.url, { ordered: true, enabled: false });
  await startRelay();
  await insertRounds(db, [
    [
      { key: 'a', n: 0 },
      { key: 'b', n: 0 },
    ],
    [{ key: 'a', n: 1 }],
    [{ key: 'a', n: 2 }],
  ]);
  const parked = () =>
    db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
      SELECT count(*)::int AS n FROM webhooks.deliveries
      WHERE endpoint_id = ${id} AND status = 'pending' AND next_attempt_at = 'infinity'`);
  await until(async () => (await parked()) === 4, { what: 'four deliveries parked' });
  // Released inside the enabling transaction: look before the relay can claim anything.
  const released = await db.pool.transaction(async (tx) => {
    await tx.query(sql.unsafe`UPDATE webhooks.endpoints SET enabled = true WHERE id = ${id}`);
    return tx.one(sql.type(z.object({ parked: z.number(), due: z.number() }))`
      SELECT count(*) FILTER (WHERE next_attempt_at = 'infinity')::int AS parked,
             count(*) FILTER (WHERE next_attempt_at <= now())::int AS due
      FROM webhooks.deliveries WHERE endpoint_id = ${id} AND status = 'pending'`);
  });
  expect(released).toEqual({ parked: 2, due: 2 }); // a/0 and b/0 due; a/1 and a/2 wait their turn
  await until(async () => (await resolvedCount(db, id)) === 4, { what: 'all four delivered' });
  expectKeysInOrder(byKey(receiver.requests), new Set());
});
