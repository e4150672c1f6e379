// Per-endpoint limits and the circuit breaker hold for the whole cluster: three relays against one Postgres.
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { claimFair, FIRST_ENDPOINT } from '../src/scheduler/queries.ts';
import { cli } from './support/cli.ts';
import { addEndpoint, countWhere, insertEvents, type TestDb } from './support/postgres.ts';
import type { Receiver } from './support/receiver.ts';
import { relayEnv, scrape } from './support/relay.ts';
import { untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

const Count = z.object({ n: z.number() });

/** One transaction of `n` events (the streaming relay fans them out; what it has no room for waits pending). */
async function insertMany(db: TestDb, n: number): Promise<string[]> {
  const { rows } = await db.app.query<{ id: string }>(
    `INSERT INTO webhooks.outbox (event_type, payload) SELECT 'e', jsonb_build_object('i', g) FROM generate_series(1, $1) g
     RETURNING id`,
    [n],
  );
  return rows.map((r) => r.id);
}

const setLimits = (db: TestDb, id: string, maxInFlight: number | null, rate: number | null) =>
  db.pool.query(sql.unsafe`
    UPDATE webhooks.endpoints SET max_in_flight = ${maxInFlight}, rate_limit_per_second = ${rate} WHERE id = ${id}`);

/** Every live relay has polled at least once after its join grace (2 poll intervals): shares are settled. */
const untilSettled = (db: TestDb, relays: number, pollMs: number) =>
  until(
    async () =>
      (await db.pool.oneFirst(sql.type(Count)`
        SELECT count(*)::int AS n FROM webhooks.relays
        WHERE expires_at > now() AND joined_at < now() - ${3 * pollMs + 100}::int * interval '1 millisecond'`)) ===
      relays,
    { what: `${relays} relays settled` },
  );

/** Counts requests open at the receiver when each one arrives; answers 204 after `delayMs`. */
function trackOpen(receiver: Receiver, delayMs: number) {
  const seen = { max: 0 };
  receiver.reply(() => {
    const open = receiver.requests.filter((r) => r.state === 'pending').length;
    seen.max = Math.max(seen.max, open);
    return { status: 204, delayMs };
  });
  return seen;
}

/** The most of `times` (ms) that fall in any window of `ms`. */
function mostInWindow(times: readonly number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[j]! < sorted[i]! - ms + 1) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

const deliveredBy = (port: number) => scrape(port, 'outbox_relay_deliveries_total', { outcome: 'delivered' });

test('max_in_flight = 4 holds across three relays: never more than 4 requests open at the receiver', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  await setLimits(db, endpoint.id, 4, null);
  const env = { CLUSTER_POLL_INTERVAL: '200ms', SCHEDULER_CAPACITY: '40', CLAIM_BATCH: '20' };
  const relays = [await startRelay(env), await startRelay(env, 'standby'), await startRelay(env, 'standby')];
  await untilSettled(db, 3, 200);
  const open = trackOpen(receiver, 40);
  await insertMany(db, 200);
  await until(async () => (await countWhere(db, 'delivered')) === 200, { what: '200 delivered' });
  const perRelay = await Promise.all(relays.map((r) => deliveredBy(r.httpPort)));
  console.info(
    `max_in_flight 4, 3 relays: at most ${open.max} open at once; delivered per relay ${perRelay.join('/')}`,
  );
  expect(open.max).toBeLessThanOrEqual(4);
  expect(open.max).toBe(4); // the shares add up to the whole limit
  expect(perRelay.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2); // shared, not one relay doing it all
  expect(await scrape(relays[0]!.httpPort, 'outbox_relay_cluster_relays')).toBe(3);
  const shares = await Promise.all(
    relays.map((r) =>
      scrape(r.httpPort, 'outbox_relay_endpoint_share', { endpoint_id: endpoint.id, limit: 'max_in_flight' }),
    ),
  );
  expect(shares.reduce((a, b) => a + b, 0)).toBe(4);
});

test('ENDPOINT_CONCURRENCY = 5 (no max_in_flight) holds across three relays too, split 2/2/1', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  const env = {
    CLUSTER_POLL_INTERVAL: '200ms',
    SCHEDULER_CAPACITY: '40',
    CLAIM_BATCH: '20',
    ENDPOINT_CONCURRENCY: '5',
  };
  const relays = [await startRelay(env), await startRelay(env, 'standby'), await startRelay(env, 'standby')];
  await untilSettled(db, 3, 200);
  const open = trackOpen(receiver, 40);
  await insertMany(db, 150);
  await until(async () => (await countWhere(db, 'delivered')) === 150, { what: '150 delivered' });
  const shares = await Promise.all(
    relays.map((r) =>
      scrape(r.httpPort, 'outbox_relay_endpoint_share', { endpoint_id: endpoint.id, limit: 'max_in_flight' }),
    ),
  );
  console.info(`ENDPOINT_CONCURRENCY 5, 3 relays: at most ${open.max} open at once; shares ${shares.join('/')}`);
  expect(open.max).toBeLessThanOrEqual(5);
  expect(shares.sort()).toEqual([1, 2, 2]);
});

test('rate_limit_per_second = 20 holds across three relays: never more than 22 requests in any second', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  await setLimits(db, endpoint.id, null, 20);
  // Relays in processes of their own, logging at debug: each says when it started each request.
  const env = relayEnv(db, {
    CLUSTER_POLL_INTERVAL: '200ms',
    SCHEDULER_CAPACITY: '40',
    CLAIM_BATCH: '20',
    LOG_LEVEL: 'debug',
  });
  const relays = [spawnRelay(env)];
  await untilReady(relays[0]!, 'streaming');
  relays.push(spawnRelay(env), spawnRelay(env));
  await Promise.all(relays.slice(1).map((r) => untilReady(r, 'standby')));
  await untilSettled(db, 3, 200);
  await insertMany(db, 200);
  await until(async () => (await countWhere(db, 'delivered')) === 200, { what: '200 delivered', timeoutMs: 30_000 });
  // Sent: when each relay started the request (its debug log). Arrived: when the receiver had it; arrivals
  // bunch by the variation of each request's way there (up to ~130 ms on this loaded 2-core machine).
  const sent = relays
    .flatMap((r) => r.logs.filter((l) => l.msg === 'attempt starts' && l.endpointId === endpoint.id))
    .map((l) => Date.parse(String(l.time)));
  const arrived = receiver.requests.map((r) => r.receivedAt);
  const perSecondSent = mostInWindow(sent, 1_000);
  const perSecondArrived = mostInWindow(arrived, 1_000);
  const perTenSeconds = mostInWindow(sent, 10_000);
  const mean = ((sent.length - 1) * 1000) / (Math.max(...sent) - Math.min(...sent));
  const perRelay = await Promise.all(relays.map((r) => deliveredBy(r.httpPort()!)));
  console.info(
    `rate 20/s, 3 relays: at most ${perSecondSent} sent in any 1 s (${perSecondArrived} arrived), ${perTenSeconds} ` +
      `sent in any 10 s; mean ${mean.toFixed(2)}/s; per relay ${perRelay.join('/')}`,
  );
  expect(sent).toHaveLength(200);
  expect(perSecondSent).toBeLessThanOrEqual(22);
  expect(perTenSeconds).toBeLessThanOrEqual(220);
  expect(mean).toBeGreaterThan(14); // the shares add up to the whole rate, less 5 % headroom (less under load)
  expect(perRelay.filter((n) => n > 0).length).toBe(3);
});

test('relays joining and leaving mid-run: max_in_flight = 4 still holds, and the newcomer takes its share', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  await setLimits(db, endpoint.id, 4, null);
  const env = { CLUSTER_POLL_INTERVAL: '200ms', SCHEDULER_CAPACITY: '40', CLAIM_BATCH: '20' };
  const first = await startRelay(env);
  const second = await startRelay(env, 'standby');
  await untilSettled(db, 2, 200);
  const open = trackOpen(receiver, 40);
  await insertMany(db, 400);
  await until(() => receiver.requests.length >= 60, { what: '60 requests' });
  const joiner = await startRelay(env, 'standby');
  await until(async () => (await deliveredBy(joiner.httpPort)) > 0, { what: 'the newcomer delivers' });
  const maxAfterJoin = open.max;
  await second.stop(); // leaves: its row is deleted once its in-flight work is done
  await until(async () => (await countWhere(db, 'delivered')) === 400, { what: '400 delivered', timeoutMs: 30_000 });
  const perRelay = await Promise.all([first, joiner].map((r) => deliveredBy(r.httpPort)));
  console.info(
    `max_in_flight 4, 2 relays + 1 joining + 1 leaving: at most ${maxAfterJoin} open through the join, ` +
      `${open.max} in all; the newcomer delivered ${perRelay[1]}`,
  );
  expect(open.max).toBeLessThanOrEqual(4);
  expect(perRelay[1]).toBeGreaterThan(0);
});

test('a receiver down for 15 s: one relay opens the shared breaker, all stop within a second, one probe per period, no churn, nothing lost', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  // Counts every row write to the deliveries table, per row, with the time it happened.
  await db.app.query(`
    CREATE TABLE public.delivery_writes (at timestamptz NOT NULL DEFAULT clock_timestamp(), op text, id bigint);
    CREATE FUNCTION public.count_delivery_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.delivery_writes (op, id) VALUES (TG_OP, NEW.id); RETURN NULL; END $$;
    CREATE TRIGGER count_delivery_writes AFTER INSERT OR UPDATE ON webhooks.deliveries
      FOR EACH ROW EXECUTE FUNCTION public.count_delivery_write()`);
  const env = {
    CLUSTER_POLL_INTERVAL: '1s',
    SCHEDULER_CAPACITY: '60',
    CLAIM_BATCH: '20',
    ENDPOINT_CONCURRENCY: '4',
    BREAKER_VOLUME_THRESHOLD: '5',
    BREAKER_ERROR_THRESHOLD: '50',
    BREAKER_RESET_TIMEOUT: '2s',
    BREAKER_WINDOW: '2s',
    // Defaults: leases held unsent are renewed every 10 s (one write each), and rows that failed before the
    // breaker opened are not due again (5 s) while it opens.
    HEARTBEAT_INTERVAL: '10s',
    LEASE: '30s',
    RETRY_SCHEDULE: Array.from({ length: 10 }, () => '5s').join(','),
  };
  const relays = [await startRelay(env), await startRelay(env, 'standby'), await startRelay(env, 'standby')];
  await untilSettled(db, 3, 1_000);
  // Slow failures, so every relay is sending (each within its share of 4) before one of them trips.
  receiver.reply(() => ({ status: 500, delayMs: 300 }));
  const outageStart = Date.now();
  const N = 150;
  const ids = await insertMany(db, N);
  const opened = await until(
    () =>
      db.pool.maybeOne(sql.type(z.object({ openedBy: z.string(), openedAtMs: z.number() }))`
        SELECT opened_by AS "openedBy", opened_at AS "openedAtMs" FROM webhooks.endpoint_breakers
        WHERE endpoint_id = ${endpoint.id} AND state <> 'closed'`),
    { what: 'shared breaker open' },
  );
  expect(relays.map((r) => r.owner)).toContain(opened.openedBy);
  // Every relay's /metrics and `outbox-relay status` show the cluster's breaker and relays.
  await until(
    async () =>
      (
        await Promise.all(
          relays.map((r) => scrape(r.httpPort, 'outbox_relay_breaker_open', { endpoint_id: endpoint.id })),
        )
      ).every((v) => v > 0),
    { what: 'every relay reports the breaker' },
  );
  const status = await cli(db, ['status', '--json']);
  const report = status.json<{
    relays: { owner: string }[];
    endpoints: { id: string; breaker: { state: string }; limits: { maxInFlight: number | null } }[];
  }>();
  expect(report.relays.map((r) => r.owner).sort()).toEqual(relays.map((r) => r.owner).sort());
  expect(['open', 'half-open']).toContain(report.endpoints.find((e) => e.id === endpoint.id)?.breaker.state);
  expect((await cli(db, ['status'])).stdout).toMatch(/relays +3 live/);
  await until(() => Date.now() >= outageStart + 15_000, { what: 'end of the outage', intervalMs: 100 });
  receiver.reply(() => ({ status: 204 }));
  const recoveredAt = Date.now();
  await until(async () => (await countWhere(db, 'delivered')) === N, { what: `${N} delivered`, timeoutMs: 20_000 });

  // Within about a second every relay stopped: after that only probes, one per half-open period.
  const stopBy = opened.openedAtMs + 1_200;
  const whileOpen = receiver.requests.filter((r) => r.receivedAt > stopBy && r.receivedAt < recoveredAt);
  const gaps = whileOpen.slice(1).map((r, i) => r.receivedAt - whileOpen[i]!.receivedAt);
  const beforeStop = receiver.requests.filter((r) => r.receivedAt <= stopBy).length;
  // Row writes: all of them during the outage, and those while the breaker was open (after every relay stopped).
  const writes = await db.pool.one(sql.type(
    z.object({ inserts: z.number(), updates: z.number(), updatesWhileOpen: z.number() }),
  )`
    SELECT count(*) FILTER (WHERE op = 'INSERT')::int AS inserts,
           count(*) FILTER (WHERE op = 'UPDATE')::int AS updates,
           count(*) FILTER (WHERE op = 'UPDATE' AND at > to_timestamp(${stopBy / 1000}))::int AS "updatesWhileOpen"
    FROM public.delivery_writes WHERE at < to_timestamp(${recoveredAt / 1000})`);
  const failedBy = await Promise.all(
    relays.map((r) => scrape(r.httpPort, 'outbox_relay_deliveries_total', { outcome: 'retry' })),
  );
  console.info(
    `outage 15 s, ${N} deliveries, 3 relays: breaker opened ${opened.openedAtMs - outageStart} ms in by one relay; ` +
      `${beforeStop} requests before every relay stopped, then ${whileOpen.length} probes (gaps ${gaps.join(', ')} ms); ` +
      `row writes during the outage: ${writes.inserts} inserts + ${writes.updates} updates ` +
      `(${(writes.updates / N).toFixed(2)} updates per delivery), ${writes.updatesWhileOpen} updates while open`,
    `; failed attempts per relay ${failedBy.join('/')}`,
  );
  expect(failedBy.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2); // not only the relay that opened it
  expect(whileOpen.length).toBeGreaterThan(0);
  expect(whileOpen.length).toBeLessThanOrEqual(8); // ≈ 15 s / (2 s reset + up to 1 s poll)
  for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(1_900); // one probe per half-open period
  // Besides the insert that creates it, a delivery is written at most twice: claimed into a relay's memory and
  // then failed or handed back when the breaker opened; or one probe's claim and outcome.
  expect(writes.inserts).toBe(N);
  expect(writes.updates).toBeLessThanOrEqual(2 * N);
  // While open, writes follow the probes (a claim and an outcome each), not the backlog.
  expect(writes.updatesWhileOpen).toBeLessThanOrEqual(2 * whileOpen.length + 2);
  const breaker = await db.pool.one(sql.type(z.object({ state: z.string(), opens: z.number() }))`
    SELECT state, opens FROM webhooks.endpoint_breakers WHERE endpoint_id = ${endpoint.id}`);
  expect(breaker).toEqual({ state: 'closed', opens: 1 });
  const received = new Set(
    receiver.requests
      .filter((r) => r.state === 'answered' && r.receivedAt >= recoveredAt)
      .map((r) => r.headers['webhook-id']),
  );
  for (const id of ids) expect(received).toContain(`msg_${id}`);
});

test('three relays leave a backlog of 3,000 due rows of an endpoint with an open breaker, and a disabled endpoint’s, unwritten while others flow', async ({
  db,
  receiver,
  startRelay,
}) => {
  const down = await addEndpoint(db, `${receiver.url}/down`, { eventTypes: ['down'] });
  const off = await addEndpoint(db, `${receiver.url}/off`, { eventTypes: ['off'], enabled: false });
  await addEndpoint(db, `${receiver.url}/ok`, { eventTypes: ['ok'] });
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.endpoint_breakers (endpoint_id, state, open_until, opened_by, opened_at, opens)
    VALUES (${down.id}, 'open', now() + interval '10 minutes', 'a peer', now(), 1)`);
  // The backlogs, as earlier failures left them: due now (the open breaker's), parked (the disabled endpoint's).
  await db.app.query(
    `WITH o AS (INSERT INTO webhooks.outbox (event_type, payload)
                SELECT CASE WHEN g <= 3000 THEN 'down' ELSE 'off' END, '{}' FROM generate_series(1, 3300) g
                RETURNING id, event_type)
     INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, attempts, next_attempt_at)
     SELECT o.id, CASE WHEN o.event_type = 'down' THEN $1::uuid ELSE $2::uuid END, 1,
            CASE WHEN o.event_type = 'down' THEN now() - interval '1 minute' ELSE 'infinity' END
     FROM o`,
    [down.id, off.id],
  );
  await db.app.query(`
    CREATE TABLE public.delivery_writes (op text, endpoint_id uuid);
    CREATE FUNCTION public.count_delivery_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.delivery_writes VALUES (TG_OP, NEW.endpoint_id); RETURN NULL; END $$;
    CREATE TRIGGER count_delivery_writes AFTER INSERT OR UPDATE ON webhooks.deliveries
      FOR EACH ROW EXECUTE FUNCTION public.count_delivery_write()`);
  const pollMs = 200;
  const env = { CLUSTER_POLL_INTERVAL: `${pollMs}ms`, CLAIM_INTERVAL: '100ms', SCHEDULER_CAPACITY: '100' };
  await startRelay(env);
  await startRelay(env, 'standby');
  await startRelay(env, 'standby');
  await untilSettled(db, 3, pollMs);
  // Meanwhile new events arrive for all three endpoints; the healthy one's go out.
  await insertEvents(db, [
    ...Array.from({ length: 50 }, () => ({ type: 'down', payload: '{}' })),
    ...Array.from({ length: 50 }, () => ({ type: 'off', payload: '{}' })),
    ...Array.from({ length: 100 }, () => ({ type: 'ok', payload: '{}' })),
  ]);
  await until(() => receiver.requests.filter((r) => r.path === '/hooks/ok').length === 100, { what: '100 to /ok' });
  // Ten more polls of every relay, with their claims: long enough for any relay to have touched the backlog.
  const since = await db.pool.oneFirst(sql.type(z.object({ at: z.number() }))`
    SELECT extract(epoch FROM now())::float8 AS at`);
  await until(
    async () =>
      (await db.pool.oneFirst(sql.type(Count)`
        SELECT count(*)::int AS n FROM webhooks.relays
        WHERE seen_at > to_timestamp(${since}) + ${10 * pollMs}::int * interval '1 millisecond'`)) === 3,
    { what: 'ten more polls of each relay' },
  );
  const writes = await db.pool.any(sql.type(z.object({ op: z.string(), endpointId: z.string(), n: z.number() }))`
    SELECT op, endpoint_id AS "endpointId", count(*)::int AS n FROM public.delivery_writes
    WHERE endpoint_id IN (${down.id}, ${off.id}) GROUP BY 1, 2 ORDER BY 1, 2`);
  console.info(
    `open breaker with 3,000 due rows, disabled endpoint with 300 parked, 3 relays: ` +
      `${writes.map((w) => `${w.n} ${w.op} ${w.endpointId === down.id ? 'down' : 'off'}`).join(', ') || 'no writes'}`,
  );
  // The only writes: the rows of the 50 + 50 new events, inserted pending once (the stream sends neither).
  expect(writes.filter((w) => w.op !== 'INSERT')).toEqual([]);
  expect(writes.map((w) => w.n)).toEqual([50, 50]);
  expect(receiver.requests.filter((r) => r.path !== '/hooks/ok').map((r) => r.path)).toEqual([]);
});

test('killing the relay that holds an endpoint’s only slot blocks it no longer than the membership lease', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  await setLimits(db, endpoint.id, 1, null);
  const pollMs = 300; // membership lease: 5 × 300 ms
  const env = relayEnv(db, {
    CLUSTER_POLL_INTERVAL: `${pollMs}ms`,
    LEASE: '4s',
    REQUEST_TIMEOUT: '1s',
    SCHEDULER_CAPACITY: '20',
    CLAIM_BATCH: '10',
  });
  const relays = [spawnRelay(env)];
  await untilReady(relays[0]!, 'streaming');
  relays.push(spawnRelay(env), spawnRelay(env));
  await Promise.all(relays.slice(1).map((r) => untilReady(r, 'standby')));
  await untilSettled(db, 3, pollMs);
  const open = trackOpen(receiver, 50);
  const ids = await insertMany(db, 60);
  await until(() => receiver.requests.length >= 10, { what: '10 requests' });
  const shareOf = (port: number) =>
    scrape(port, 'outbox_relay_endpoint_share', { endpoint_id: endpoint.id, limit: 'max_in_flight' });
  const shares = await Promise.all(relays.map((r) => shareOf(r.httpPort()!)));
  expect(shares.sort()).toEqual([0, 0, 1]);
  const holder = relays[(await Promise.all(relays.map((r) => shareOf(r.httpPort()!)))).indexOf(1)]!;
  holder.kill('SIGKILL');
  await holder.exited;
  const killedAt = Date.now();
  await until(() => receiver.requests.some((r) => r.receivedAt > killedAt), { what: 'a request after the kill' });
  const blockedMs = Math.min(...receiver.requests.map((r) => r.receivedAt).filter((t) => t > killedAt)) - killedAt;
  await until(async () => (await countWhere(db, 'delivered')) === 60, { what: '60 delivered', timeoutMs: 20_000 });
  console.info(`max_in_flight 1: the slot holder killed; next request ${blockedMs} ms later; at most ${open.max} open`);
  expect(blockedMs).toBeLessThan(5 * pollMs + 2 * pollMs + 1_000);
  expect(open.max).toBeLessThanOrEqual(1);
  const received = new Set(receiver.requests.map((r) => r.headers['webhook-id']));
  for (const id of ids) expect(received).toContain(`msg_${id}`);
});

test('the claim leaves an endpoint whose shared breaker is open or half-open untouched, whatever the relay’s quotas say', async ({
  db,
  receiver,
}) => {
  const open = await addEndpoint(db, `${receiver.url}/open`);
  const probing = await addEndpoint(db, `${receiver.url}/probing`);
  const healthy = await addEndpoint(db, `${receiver.url}/healthy`);
  await db.app.query(`
    WITH o AS (INSERT INTO webhooks.outbox (event_type, payload) SELECT 'e', '{}' FROM generate_series(1, 3) RETURNING id)
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, next_attempt_at)
    SELECT o.id, ep.id, 'pending', 0, now() - interval '1 second' FROM o CROSS JOIN webhooks.endpoints ep`);
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.endpoint_breakers (endpoint_id, state, open_until, probe_owner, probe_until)
    VALUES (${open.id}, 'open', now() - interval '1 second', NULL, NULL),
           (${probing.id}, 'half-open', NULL, 'someone', now() + interval '1 minute')`);
  const rows = await db.pool.any(
    claimFair('claimer', 60_000, 100, { endpointIds: [], quotas: [], fresh: 100 }, FIRST_ENDPOINT, 256),
  );
  expect(new Set(rows.map((r) => r.endpointId))).toEqual(new Set([healthy.id]));
  expect(rows).toHaveLength(3);
  expect(rows[0]!.more).toEqual([]); // nothing "left" to come back for either
  const written = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM webhooks.deliveries WHERE endpoint_id <> ${healthy.id} AND status <> 'pending'`);
  expect(written).toBe(0);
});
