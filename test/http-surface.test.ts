// The health/metrics server: where it listens, what /readyz costs and says, and who may read /metrics.
import { Registry } from 'prom-client';
import { expect, onTestFinished } from 'vitest';
import { createLogger } from '../src/log.ts';
import { startHealthServer } from '../src/server/health.ts';
import { test } from './fixtures.ts';
import { untilReady } from './support/relay-process.ts';
import { relayEnv } from './support/relay.ts';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts';
import { until, within } from './support/until.ts';

/**
 * The test database reached through a proxy the test can black-hole. It depends on startRelay only to be set up
 * after it and so torn down before it: a test that fails with the link hung still lets its relays stop.
 */
const withLink = test.extend<{ link: { proxy: TcpProxy; url: string } }>({
  link: async ({ db, startRelay: _startRelay }, use) => {
    const target = new URL(db.url);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
    target.host = `127.0.0.1:${proxy.port}`;
    await use({ proxy, url: target.toString() });
    proxy.heal();
    await within(30_000, 'closing the TCP proxy', () => proxy.close());
  },
});

/** GETs a path, timing the answer; never waits more than 5 s. */
async function timedGet(port: number, path: string, host = '127.0.0.1', headers: Record<string, string> = {}) {
  const startedAt = performance.now();
  const res = await fetch(`http://${host}:${port}${path}`, { headers, signal: AbortSignal.timeout(5_000) });
  const body = await res.text();
  return { status: res.status, body, ms: performance.now() - startedAt };
}

test('HTTP_HOST=127.0.0.1 listens on loopback only', async ({ startRelay }) => {
  const relay = await startRelay({ HTTP_HOST: '127.0.0.1' });
  expect(relay.httpHost).toBe('127.0.0.1');
  expect((await timedGet(relay.httpPort, '/healthz')).status).toBe(200);
  // 127.0.0.2 is this machine too, but not the bound address.
  await expect(fetch(`http://127.0.0.2:${relay.httpPort}/healthz`)).rejects.toThrow();

  // Unset, the server takes every interface (the default the kubelet's probes need).
  const everywhere = await startHealthServer(
    { port: 0 },
    { readiness: () => ({ ready: true, detail: {} }), registry: new Registry(), log: createLogger('silent') },
  );
  onTestFinished(() => everywhere.close());
  expect(['::', '0.0.0.0']).toContain(everywhere.host);
  expect((await timedGet(everywhere.port, '/healthz', '127.0.0.2')).status).toBe(200);
});

withLink(
  '/readyz never waits for the database: a hung link turns it 503 "unreachable" within 1 s answers, with no error text',
  async ({ link: { proxy, url }, startRelay }) => {
    const relay = await startRelay({ DATABASE_URL: url });
    await until(async () => (await timedGet(relay.httpPort, '/readyz')).status === 200, { what: 'ready' });

    proxy.blackhole();
    let slowestMs = 0;
    const unready = await until(
      async () => {
        const answer = await timedGet(relay.httpPort, '/readyz');
        slowestMs = Math.max(slowestMs, answer.ms);
        return answer.status === 503 ? answer : undefined;
      },
      { what: '/readyz 503 while the database link hangs', intervalMs: 200 },
    );
    expect(slowestMs).toBeLessThan(1_000);
    expect(JSON.parse(unready.body)).toEqual({ ready: false, stream: 'streaming', database: 'unreachable' });
    expect((await timedGet(relay.httpPort, '/healthz')).status).toBe(200);

    proxy.heal();
    await until(async () => (await timedGet(relay.httpPort, '/readyz')).status === 200, { what: 'ready again' });
    await relay.stop(); // while the link is still there
  },
);

withLink(
  'a flood of 200 concurrent /readyz requests sends no statement to the database',
  async ({ link: { proxy, url }, startRelay }) => {
    // Slow loops, so the flood's window holds at most a readiness ping of the relay's own.
    const relay = await startRelay({
      DATABASE_URL: url,
      CLAIM_INTERVAL: '1m',
      SWEEP_INTERVAL: '1h',
      CLUSTER_POLL_INTERVAL: '10s',
    });
    await until(async () => (await timedGet(relay.httpPort, '/readyz')).status === 200, { what: 'ready' });
    const before = proxy.statements();
    const answers = await Promise.all(Array.from({ length: 200 }, () => timedGet(relay.httpPort, '/readyz')));
    const sent = proxy.statements() - before;
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(sent).toBeLessThan(5);
    await relay.stop(); // while the link is still there
  },
);

test('METRICS_TOKEN guards /metrics with a bearer token; probes stay open; the token is never logged', async ({
  db,
  spawnRelay,
}) => {
  const token = 'mt_3f9c2a7e51d84b06a1c9e2f4d7b8a6c0';
  const relay = spawnRelay(relayEnv(db, { METRICS_TOKEN: token, LOG_LEVEL: 'debug' }));
  await untilReady(relay);
  const port = relay.httpPort()!;

  const anonymous = await timedGet(port, '/metrics');
  expect(anonymous.status).toBe(401);
  expect(anonymous.body).not.toContain('outbox_relay_');
  for (const authorization of [`Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`, `Basic ${token}`, token, 'Bearer']) {
    expect((await timedGet(port, '/metrics', '127.0.0.1', { authorization })).status, authorization).toBe(401);
  }
  const scraped = await timedGet(port, '/metrics', '127.0.0.1', { authorization: `Bearer ${token}` });
  expect(scraped.status).toBe(200);
  expect(scraped.body).toContain('outbox_relay_slot_holder 1');
  expect((await timedGet(port, '/healthz')).status).toBe(200);
  expect((await timedGet(port, '/readyz')).status).toBe(200);

  relay.kill('SIGTERM');
  expect(await relay.exited).toMatchObject({ code: 0 });
  expect(relay.stdout()).toContain('relay stopped');
  expect(relay.stdout() + relay.stderr()).not.toContain(token);
});
