// A flaky link between the relay and Postgres (a TCP proxy the test breaks; Postgres itself stays up): results
// lost after their commit, resets in a loop, a blackhole, and a half-open path that never comes back.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents, type TestDb } from './support/postgres.ts';
import type { Received } from './support/receiver.ts';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts';
import { until, within } from './support/until.ts';

/**
 * The test database reached through a proxy the test can break; the test's own connections go direct. It
 * depends on startRelay only to be set up after it and so torn down before it: relays stop with the link whole.
 */
const withLink = test.extend<{ link: { proxy: TcpProxy; url: string } }>({
  link: async ({ db, startRelay: _startRelay }, use) => {
    const target = new URL(db.url);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
    target.host = `127.0.0.1:${proxy.port}`;
    target.searchParams.set('sslmode', 'disable'); // the plain protocol, which the proxy reads
    await use({ proxy, url: target.toString() });
    proxy.latency(0);
    proxy.heal();
    await within(30_000, 'closing the TCP proxy', () => proxy.close());
  },
});

const Delivery = z.object({ status: z.string(), attempts: z.number(), owner: z.string().nullable() });
const deliveryOf = (db: TestDb, outboxId: string) =>
  db.pool.one(sql.type(Delivery)`
    SELECT status, attempts, lease_owner AS owner FROM webhooks.deliveries WHERE outbox_id = ${outboxId}`);
const statusCounts = async (db: TestDb) =>
  Object.fromEntries(
    (
      await db.pool.any(sql.type(z.object({ status: z.string(), n: z.number() }))`
        SELECT status, count(*)::int AS n FROM webhooks.deliveries GROUP BY status`)
    ).map((r) => [r.status, r.n]),
  );

/** GETs /readyz, timing the answer; never waits more than 5 s. */
async function readyz(port: number): Promise<{ status: number; ms: number }> {
  const startedAt = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(5_000) });
  await res.text();
  return { status: res.status, ms: performance.now() - startedAt };
}

/** Requests per webhook-id; every request of one id carries the same body (a duplicate is the same message). */
function byMessage(requests: readonly Received[]): Map<string, Received[]> {
  const seen = new Map<string, Received[]>();
  for (const r of requests) {
    const id = String(r.headers['webhook-id']);
    seen.set(id, [...(seen.get(id) ?? []), r]);
  }
  for (const [id, copies] of seen) expect(new Set(copies.map((c) => c.body)).size, id).toBe(1);
  return seen;
}

withLink(
  'a fan-out whose result is lost after it committed strands nothing: the delivery goes out at once, not after LEASE',
  async ({ db, receiver, link: { proxy, url }, startRelay }) => {
    await addEndpoint(db, receiver.url);
    // The answer names the endpoint's URL only when the statement inserted its delivery.
    const lost = proxy.loseResultOf('INSERT INTO webhooks.deliveries', receiver.url);
    // Fan-out through the table (inserting the delivery claimed), as on an install whose slot is still behind
    // the endpoints publication: the relay then cannot send from the stream.
    await db.pool.query(sql.unsafe`DELETE FROM webhooks.relay_publications`);
    const [id] = await insertEvents(db, [{ type: 'lost.fanout', payload: '{"n":1}' }]);
    await startRelay({ DATABASE_URL: url, LEASE: '30s' });
    await lost;
    const lostAt = Date.now();
    await until(() => receiver.requests.length > 0, { timeoutMs: 10_000, what: 'the delivery fan-out lost' });
    const delayMs = receiver.requests[0]!.receivedAt - lostAt;
    console.log(`fan-out result lost: delivered ${delayMs} ms after the reset`);
    expect(delayMs).toBeLessThan(3_000);
    await until(async () => (await deliveryOf(db, id!)).status === 'delivered', { what: 'recorded' });
    // The attempt the lost insert counted was given back: one request, one attempt.
    expect(await deliveryOf(db, id!)).toEqual({ status: 'delivered', attempts: 1, owner: null });
    expect(receiver.requests).toHaveLength(1);
  },
);

withLink(
  'a claim whose result is lost after it committed strands nothing: the retry goes out at once, not after LEASE',
  async ({ db, receiver, link: { proxy, url }, startRelay }) => {
    await addEndpoint(db, receiver.url);
    receiver.reply((_req, i) => (i === 0 ? { status: 500 } : { status: 204 }));
    await startRelay({ DATABASE_URL: url, LEASE: '30s' });
    // The claim's answer names the endpoint's URL only when it claimed the delivery (the retry).
    const lost = proxy.loseResultOf('attempts = d.attempts + 1', receiver.url);
    const [id] = await insertEvents(db, [{ type: 'lost.claim', payload: '{"n":1}' }]);
    await lost;
    const lostAt = Date.now();
    await until(() => receiver.requests.length > 1, { timeoutMs: 10_000, what: 'the retry the claim lost' });
    const delayMs = receiver.requests[1]!.receivedAt - lostAt;
    console.log(`claim result lost: retried ${delayMs} ms after the reset`);
    expect(delayMs).toBeLessThan(3_000);
    await until(async () => (await deliveryOf(db, id!)).status === 'delivered', { what: 'recorded' });
    // Two requests, two attempts: the one the lost claim counted was given back.
    expect(await deliveryOf(db, id!)).toEqual({ status: 'delivered', attempts: 2, owner: null });
    expect(receiver.requests).toHaveLength(2);
  },
);

withLink(
  'an outcome write whose result is lost after it committed is retried harmlessly: one request, recorded once',
  async ({ db, receiver, link: { proxy, url }, startRelay }) => {
    await addEndpoint(db, receiver.url);
    receiver.reply((_req, i) => (i === 0 ? { status: 500 } : { status: 204 }));
    await startRelay({ DATABASE_URL: url, LEASE: '30s' });
    const lost = proxy.loseResultOf('INSERT INTO webhooks.delivery_attempts');
    const [id] = await insertEvents(db, [{ type: 'lost.outcome', payload: '{"n":1}' }]);
    await lost; // the failed first attempt was recorded, and the writer never heard so
    await until(async () => (await deliveryOf(db, id!)).status === 'delivered', {
      timeoutMs: 10_000,
      what: 'delivered on the retry',
    });
    expect(await deliveryOf(db, id!)).toEqual({ status: 'delivered', attempts: 2, owner: null });
    expect(receiver.requests).toHaveLength(2);
    // The writer's retry of the lost write matched no row (the lease guard): the failure is logged once.
    const attempts = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
      SELECT count(*)::int AS n FROM webhooks.delivery_attempts`);
    expect(attempts).toBe(1);
  },
);

withLink(
  'connections reset in a loop while events flow: every event arrives once, none later than a few seconds',
  async ({ db, receiver, link: { proxy, url }, startRelay }) => {
    await addEndpoint(db, receiver.url);
    const relay = await startRelay({ DATABASE_URL: url, LEASE: '30s', STATEMENT_TIMEOUT: '3s' });
    // Answers spend 20 ms in the proxy, so resets often land between a commit and its answer.
    proxy.latency(20);
    const committedAt = new Map<string, number>();
    const producing = (async () => {
      for (let i = 0; i < 240; i++) {
        const [id] = await insertEvents(db, [{ type: 'flaky.reset', payload: `{"i":${i}}` }]);
        committedAt.set(`msg_${id}`, Date.now());
        await sleep(40);
      }
    })();
    const resets = 8;
    for (let i = 0; i < resets; i++) {
      await sleep(1_000 + Math.random() * 600);
      proxy.reset();
    }
    await producing;
    await until(async () => (await statusCounts(db)).delivered === committedAt.size, {
      timeoutMs: 30_000,
      what: `all ${committedAt.size} events delivered`,
    });
    expect(await statusCounts(db)).toEqual({ delivered: committedAt.size });
    const messages = byMessage(receiver.requests);
    expect([...messages.keys()].sort()).toEqual([...committedAt.keys()].sort());
    const delays = [...messages].map(([id, copies]) => copies[0]!.receivedAt - committedAt.get(id)!);
    const worstMs = Math.max(...delays);
    const duplicates = receiver.requests.length - messages.size;
    console.log(
      `${resets} resets, ${committedAt.size} events: worst commit-to-receipt ${worstMs} ms, ` +
        `duplicates (same webhook-id) ${duplicates}`,
    );
    expect(worstMs).toBeLessThan(8_000);
    await until(() => relay.streamState() === 'streaming', { what: 'streaming again' });
  },
);

withLink(
  'a 10 s blackhole: /readyz answers within 1 s throughout, says 503 within 3 s, and nothing is lost',
  async ({ db, receiver, link: { proxy, url }, startRelay }) => {
    await addEndpoint(db, receiver.url);
    const relay = await startRelay({ DATABASE_URL: url });
    await until(async () => (await readyz(relay.httpPort)).status === 200, { what: 'ready' });
    proxy.blackhole();
    const startedAt = performance.now();
    const ids = await insertEvents(
      db,
      Array.from({ length: 5 }, (_, i) => ({ type: 'flaky.blackhole', payload: `{"i":${i}}` })),
    );
    const answers: { atMs: number; status: number; ms: number }[] = [];
    while (performance.now() - startedAt < 10_000) {
      answers.push({ atMs: performance.now() - startedAt, ...(await readyz(relay.httpPort)) });
      await sleep(250);
    }
    proxy.heal();
    const healedAt = Date.now();
    expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(1_000);
    const firstUnready = answers.find((a) => a.status === 503);
    expect(firstUnready?.atMs).toBeLessThan(4_000); // 3 s, seen by a probe every 250 ms
    expect(answers.filter((a) => a.atMs > firstUnready!.atMs).every((a) => a.status === 503)).toBe(true);
    await until(async () => (await readyz(relay.httpPort)).status === 200, { what: 'ready again' });
    await until(async () => (await statusCounts(db)).delivered === ids.length, { what: 'all delivered' });
    const messages = byMessage(receiver.requests);
    expect(messages.size).toBe(ids.length);
    const lastMs = Math.max(...receiver.requests.map((r) => r.receivedAt)) - healedAt;
    console.log(`10 s blackhole: 503 after ${Math.round(firstUnready!.atMs)} ms; delivered ${lastMs} ms after healing`);
    expect(lastMs).toBeLessThan(5_000);
  },
);

withLink(
  'a path black-holed forever is abandoned within STREAM_IDLE_TIMEOUT / STATEMENT_TIMEOUT + 2 s, and delivery resumes',
  async ({ db, receiver, link: { proxy, url }, startRelay }) => {
    await addEndpoint(db, receiver.url);
    const env = { DATABASE_URL: url, STATEMENT_TIMEOUT: '1s', STREAM_IDLE_TIMEOUT: '3s' };
    const relay = await startRelay(env);
    await insertEvents(db, [{ type: 'flaky.before', payload: '{}' }]);
    await until(() => receiver.requests.length === 1, { what: 'delivered before' });
    await until(async () => (await readyz(relay.httpPort)).status === 200, { what: 'ready' });

    const hung = proxy.open().all;
    proxy.blackholeForever(); // the stream and every pooled connection now hang; new connections go through
    const startedAt = performance.now();
    const [id] = await insertEvents(db, [{ type: 'flaky.after', payload: '{}' }]);
    await until(() => proxy.open().hung === 0, { timeoutMs: 15_000, what: 'every hung connection abandoned' });
    const abandonedMs = performance.now() - startedAt;
    await until(() => receiver.requests.some((r) => r.headers['webhook-id'] === `msg_${id}`), {
      timeoutMs: 15_000,
      what: 'the event committed after the path died',
    });
    const deliveredMs = performance.now() - startedAt;
    console.log(
      `black-holed forever: ${hung} connections abandoned within ${Math.round(abandonedMs)} ms; ` +
        `the next event delivered after ${Math.round(deliveredMs)} ms`,
    );
    // Bounds: the stream's watchdog (3 s, checked every second) and a statement's deadline (1 s + 2 s), plus
    // the time for each pooled connection's next statement to start and the stream's rebuild backoff.
    expect(abandonedMs).toBeLessThan(6_000);
    expect(deliveredMs).toBeLessThan(8_000);
    expect(relay.streamState()).toBe('streaming');
    await until(async () => (await readyz(relay.httpPort)).status === 200, { what: 'ready again' });
    await until(async () => (await deliveryOf(db, id!)).status === 'delivered', { what: 'recorded' });
  },
);

withLink(
  'TCP keepalive is on for every connection the relay opens to the database',
  async ({ db, link: { proxy, url }, startRelay }) => {
    await startRelay({ DATABASE_URL: url });
    await insertEvents(db, [{ type: 'flaky.keepalive', payload: '{}' }]);
    // /proc/net/tcp's timer column reads 02 while a socket's keepalive timer is armed (01: a retransmission
    // is pending, which hides it for a moment; 00: no timer, so keepalive is off).
    const timers = () => relaySocketTimers(proxy.port);
    await until(() => timers().length >= 2 && timers().every((t) => t === '02'), {
      what: `keepalive armed on the relay's sockets (timers: ${timers().join(' ')})`,
    });
  },
);

/** The timer column of each established TCP socket of this network namespace connected to `port`. */
function relaySocketTimers(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((cols) => cols[2]?.endsWith(`:${hexPort}`) && cols[3] === '01') // remote port; ESTABLISHED
      .map((cols) => cols[5]!.split(':')[0]!),
  );
}
