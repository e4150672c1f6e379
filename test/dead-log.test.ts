import { once } from 'node:events';
import { pino } from 'pino';
import { expect, test as unit } from 'vitest';
import { createDeadLog, perKeyThrottle } from '../src/delivery/dead-log.ts';
import type { Job, Outcome } from '../src/domain.ts';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents } from './support/postgres.ts';
import { relayEnv } from './support/relay.ts';
import { untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

unit('the throttle admits one line per key per interval and reports how many it held back', () => {
  const throttle = perKeyThrottle(60_000);
  expect(throttle.admit('a', 0)).toEqual({ suppressed: 0 });
  expect(throttle.admit('a', 1_000)).toBeUndefined();
  expect(throttle.admit('a', 59_999)).toBeUndefined();
  expect(throttle.admit('b', 30_000)).toEqual({ suppressed: 0 }); // keys are independent
  expect(throttle.admit('a', 60_000)).toEqual({ suppressed: 2 });
  expect(throttle.admit('a', 60_001)).toBeUndefined();
  expect(throttle.admit('a', 500_000)).toEqual({ suppressed: 1 }); // held back long ago: still reported
  expect(throttle.admit('a', 500_001)).toBeUndefined();
});

unit('the throttle forgets keys that were quiet for an interval with nothing held back', () => {
  const throttle = perKeyThrottle(1_000);
  for (let i = 0; i < 100; i++) throttle.admit(`k${i}`, i);
  throttle.admit('k0', 50); // held back: k0 must be remembered until it is reported
  expect(throttle.admit('later', 5_000)).toEqual({ suppressed: 0 });
  expect(throttle.size()).toBe(2); // k0 (one held back) and later
  expect(throttle.admit('k0', 5_001)).toEqual({ suppressed: 1 });
});

const job: Job = {
  deliveryId: '7',
  outboxId: '42',
  endpointId: 'ep-1',
  tenant: null,
  url: 'http://user:hunter2@hooks.example.com:8080/path?token=abc',
  secrets: ['whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0'],
  maxInFlight: null,
  ratePerSecond: null,
  traceparent: null,
  attempt: 1,
  eventType: 'invoice.paid',
  payload: '{"card":"4242"}',
  createdAtMs: 0,
};
const outcome = (status: Outcome['status'], error: string | null): Outcome => ({
  deliveryId: job.deliveryId,
  outboxId: job.outboxId,
  endpointId: job.endpointId,
  attempt: 1,
  refund: false,
  gone: false,
  status,
  delayMs: 0,
  statusCode: null,
  error,
  snippet: 'response body',
  durationMs: 0,
});

unit('a dead outcome is logged at warn with endpoint, delivery, reason and origin; nothing else is logged', () => {
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  let nowMs = 0;
  const logDead = createDeadLog(log, { now: () => nowMs });
  logDead(job, outcome('pending', 'HTTP 500'));
  logDead(job, outcome('delivered', null));
  logDead(job, outcome('dead', 'URL scheme "http:" is not allowed'));
  nowMs = 1_000;
  logDead(job, outcome('dead', 'URL scheme "http:" is not allowed'));
  expect(lines).toHaveLength(1);
  expect(JSON.parse(lines[0]!)).toMatchObject({
    level: 40,
    msg: 'delivery dead',
    endpointId: 'ep-1',
    deliveryId: '7',
    outboxId: '42',
    reason: 'URL scheme "http:" is not allowed',
    origin: 'http://hooks.example.com:8080',
    suppressed: 0,
  });
  for (const secretish of ['hunter2', 'token', '/path', '4242', 'whsec_', 'response body']) {
    expect(lines[0]).not.toContain(secretish);
  }
});

test('a relay logs deliveries refused by policy at warn, at most one line per endpoint per minute', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  const refused = await addEndpoint(db, receiver.url); // plain http, which ALLOW_HTTP=false refuses
  // Default log level (info): spawnRelay turns LOG_LEVEL=silent into info.
  const relay = spawnRelay(relayEnv(db, { ALLOW_HTTP: 'false', LOG_LEVEL: 'silent' }));
  await untilReady(relay);
  await insertEvents(
    db,
    Array.from({ length: 20 }, (_, i) => ({ type: 'x', payload: `{"n":${i}}` })),
  );
  await until(async () => (await countWhere(db, 'dead')) === 20, { what: '20 deliveries dead' });
  relay.kill('SIGTERM'); // every line is written and read once its output closes
  await once(relay.child, 'close');
  const dead = () => relay.logs.filter((l) => l.msg === 'delivery dead');
  expect(dead()[0]).toMatchObject({
    level: 40,
    endpointId: refused.id,
    reason: expect.stringContaining('URL scheme "http:" is not allowed') as unknown,
    origin: new URL(receiver.url).origin,
  });
  expect(dead().length).toBeLessThanOrEqual(2);
  expect(receiver.requests).toHaveLength(0);
  expect(JSON.stringify(relay.logs)).not.toContain(refused.secret.slice(6));
});
