import { expect, test } from 'vitest';
import { formatLsn, maxLsn, parseLsn } from '../src/replication/lsn.ts';
import { parseIsoTimestamp } from '../src/replication/wal-stream.ts';
import { toOutcome } from '../src/delivery/outcome.ts';
import type { Job } from '../src/domain.ts';

test('LSNs compare as 64-bit numbers, not as strings', () => {
  // As strings "9/0" > "10/0"; as positions it is the other way round.
  expect(parseLsn('9/0') < parseLsn('10/0')).toBe(true);
  expect(parseLsn('0/FFFFFFFF') < parseLsn('1/0')).toBe(true);
  expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) | 0xb374d848n);
  expect(parseLsn('00000016/b374d848')).toBe(parseLsn('16/B374D848'));
  expect(formatLsn(parseLsn('16/B374D848'))).toBe('16/B374D848');
  expect(maxLsn(parseLsn('A/0'), parseLsn('9/FFFFFFFF'))).toBe(parseLsn('A/0'));
  expect(() => parseLsn('16-B3')).toThrow('not an LSN');
});

test('timestamps from the WAL (DateStyle ISO, UTC) keep their milliseconds', () => {
  expect(new Date(parseIsoTimestamp('2026-11-22 06:30:00.123456+00')).toISOString()).toBe('2026-11-22T06:30:00.123Z');
  expect(new Date(parseIsoTimestamp('2026-11-22 06:30:00+00')).toISOString()).toBe('2026-11-22T06:30:00.000Z');
});

const job: Job = {
  deliveryId: '1',
  outboxId: '2',
  endpointId: 'e',
  tenant: null,
  url: 'https://x.test',
  secrets: ['s'],
  maxInFlight: null,
  ratePerSecond: null,
  traceparent: null,
  attempt: 1,
  eventType: 't',
  payload: '{}',
  createdAtMs: 0,
};
const policy = { scheduleMs: [1_000, 60_000], jitter: 0, random: () => 0.5 };

test('a failure waits per the schedule, or longer when the receiver asked with Retry-After', () => {
  expect(toOutcome(job, { kind: 'failed', status: 500, error: 'HTTP 500', durationMs: 3 }, policy)).toMatchObject({
    status: 'pending',
    delayMs: 1_000,
    statusCode: 500,
  });
  const asked = { kind: 'failed', status: 429, error: 'HTTP 429', retryAfterMs: 30_000, durationMs: 3 } as const;
  expect(toOutcome(job, asked, policy).delayMs).toBe(30_000);
  expect(toOutcome({ ...job, attempt: 2 }, { ...asked, retryAfterMs: 10 }, policy).delayMs).toBe(60_000);
});

test('the attempt after the last scheduled wait is final: dead, keeping status and error', () => {
  expect(
    toOutcome({ ...job, attempt: 3 }, { kind: 'failed', status: 503, error: 'HTTP 503', durationMs: 1 }, policy),
  ).toMatchObject({
    status: 'dead',
    statusCode: 503,
    error: 'HTTP 503',
  });
  expect(toOutcome({ ...job, attempt: 3 }, { kind: 'delivered', status: 200, durationMs: 1 }, policy).status).toBe(
    'delivered',
  );
});
