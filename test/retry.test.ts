import { describe, expect, test } from 'vitest';
import { nextDelayMs, parseRetryAfter } from '../src/delivery/retry.ts';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
// The product default: 8 attempts, 7 waits between them.
const DEFAULT_SCHEDULE_MS = [5 * SECOND, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR];

const middle = () => 0.5;
const lowest = () => 0;
const highest = () => 0.999999999;

describe('nextDelayMs', () => {
  test('walks the schedule one entry per failed attempt when random lands in the middle', () => {
    const delays = DEFAULT_SCHEDULE_MS.map((_, i) => nextDelayMs(i + 1, DEFAULT_SCHEDULE_MS, 0.2, middle));
    expect(delays).toEqual(DEFAULT_SCHEDULE_MS);
  });

  test('gives up after the 8th attempt of the default schedule', () => {
    expect(nextDelayMs(7, DEFAULT_SCHEDULE_MS, 0.2, middle)).toBe(10 * HOUR);
    expect(nextDelayMs(8, DEFAULT_SCHEDULE_MS, 0.2, middle)).toBeUndefined();
    expect(nextDelayMs(100, DEFAULT_SCHEDULE_MS, 0.2, middle)).toBeUndefined();
  });

  test('an empty schedule means the first failure is final', () => {
    expect(nextDelayMs(1, [], 0.2, middle)).toBeUndefined();
  });

  test('jitter of 0.2 spans exactly -20% to +20% of the scheduled delay', () => {
    expect(nextDelayMs(1, [5000], 0.2, lowest)).toBe(4000);
    expect(nextDelayMs(1, [5000], 0.2, highest)).toBe(6000);
    expect(nextDelayMs(1, [5000], 0.2, () => 0.25)).toBe(4500);
    expect(nextDelayMs(1, [5000], 0.2, () => 0.75)).toBe(5500);
  });

  test('zero jitter returns the schedule exactly whatever random says', () => {
    expect(nextDelayMs(2, [1000, 300_000], 0, lowest)).toBe(300_000);
    expect(nextDelayMs(2, [1000, 300_000], 0, highest)).toBe(300_000);
  });

  test('rounds to whole milliseconds and never goes negative', () => {
    expect(nextDelayMs(1, [333], 0.1, () => 0.123)).toBe(Math.round(333 * (1 + 0.1 * (2 * 0.123 - 1))));
    expect(Number.isInteger(nextDelayMs(1, [333], 0.1, () => 0.123))).toBe(true);
    expect(nextDelayMs(1, [1000], 1.5, lowest)).toBe(0);
    expect(nextDelayMs(1, [0], 0.2, highest)).toBe(0);
  });

  test('uses Math.random by default and stays inside the jitter band', () => {
    for (let i = 0; i < 200; i++) {
      const delay = nextDelayMs(1, [10_000], 0.2);
      expect(delay).toBeGreaterThanOrEqual(8000);
      expect(delay).toBeLessThanOrEqual(12_000);
    }
  });

  test('rejects an attempt count below 1 as a programming error', () => {
    expect(() => nextDelayMs(0, DEFAULT_SCHEDULE_MS, 0.2, middle)).toThrow(RangeError);
    expect(() => nextDelayMs(1.5, DEFAULT_SCHEDULE_MS, 0.2, middle)).toThrow('attemptsMade');
  });
});

describe('parseRetryAfter', () => {
  const nowMs = Date.UTC(2015, 9, 21, 7, 0, 0); // Wed, 21 Oct 2015 07:00:00 GMT
  const maxMs = HOUR;

  test('reads delta-seconds as milliseconds', () => {
    expect(parseRetryAfter('120', nowMs, maxMs)).toBe(120_000);
    expect(parseRetryAfter('0', nowMs, maxMs)).toBe(0);
    expect(parseRetryAfter(' 7 ', nowMs, maxMs)).toBe(7000);
  });

  test('reads an IMF-fixdate as the time left until then', () => {
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', nowMs, maxMs)).toBe(28 * MINUTE);
  });

  test('reads the obsolete RFC 850 and asctime date forms', () => {
    expect(parseRetryAfter('Wednesday, 21-Oct-15 07:00:30 GMT', nowMs, maxMs)).toBe(30 * SECOND);
    expect(parseRetryAfter('Wed Oct 21 07:01:00 2015', nowMs, maxMs)).toBe(MINUTE);
    const earlyInMonth = Date.UTC(2015, 9, 1, 7, 0, 0);
    expect(parseRetryAfter('Thu Oct  1 07:00:05 2015', earlyInMonth, maxMs)).toBe(5 * SECOND);
  });

  test('an RFC 850 two-digit year more than 50 years ahead is read as last century', () => {
    // 21-Oct-94 from 2015 is 1994, in the past, so "retry now"; read as 2094 it would clamp to maxMs.
    expect(parseRetryAfter('Friday, 21-Oct-94 07:00:00 GMT', nowMs, maxMs)).toBe(0);
  });

  test('clamps to maxMs', () => {
    expect(parseRetryAfter('86400', nowMs, maxMs)).toBe(maxMs);
    expect(parseRetryAfter('99999999999999999999999', nowMs, maxMs)).toBe(maxMs);
    expect(parseRetryAfter('Thu, 22 Oct 2015 07:00:00 GMT', nowMs, maxMs)).toBe(maxMs);
  });

  test('a date in the past means retry now', () => {
    expect(parseRetryAfter('Tue, 20 Oct 2015 07:00:00 GMT', nowMs, maxMs)).toBe(0);
  });

  test.each([
    ['absent', undefined],
    ['empty', ''],
    ['blank', '   '],
    ['negative', '-5'],
    ['fractional', '1.5'],
    ['signed', '+5'],
    ['hex', '0x10'],
    ['exponent', '1e3'],
    ['words', 'soon'],
    ['digits with a unit', '120s'],
    ['a date without GMT', 'Wed, 21 Oct 2015 07:28:00'],
    ['a date in another zone', 'Wed, 21 Oct 2015 07:28:00 PST'],
    ['an ISO timestamp', '2015-10-21T07:28:00Z'],
    ['an impossible date', 'Sat, 31 Feb 2015 07:28:00 GMT'],
    ['an impossible hour', 'Wed, 21 Oct 2015 25:28:00 GMT'],
  ])('returns undefined for %s', (_case, value) => {
    expect(parseRetryAfter(value, nowMs, maxMs)).toBeUndefined();
  });
});
