import { expect, test } from 'vitest';
import { createDrainRates } from '../src/scheduler/drain.ts';

test('the rate counts places freed over the last one to two windows, per endpoint and in all', () => {
  const d = createDrainRates(1_000);
  for (let t = 0; t < 1_000; t += 10) d.freed('fast', 5, t); // 500/s
  d.freed('slow', 8, 500); // 8 in the first second
  expect(d.rate('fast', 1_000)).toBeCloseTo(500, -1);
  // A window opens at the first place freed, so a young one reads low: the same order of magnitude is the point.
  expect(d.rate('slow', 1_000)).toBeGreaterThan(4);
  expect(d.rate('slow', 1_000)).toBeLessThan(16);
  expect(d.total(1_000)).toBeGreaterThan(480);
  expect(d.rate('never', 1_000)).toBe(0);
});

test('a rate fades once the endpoint stops freeing places, and idle endpoints are forgotten', () => {
  const d = createDrainRates(1_000);
  d.freed('a', 100, 0);
  expect(d.rate('a', 1_500)).toBeGreaterThan(0); // the previous window still counts
  expect(d.rate('a', 2_500)).toBe(0); // two windows on: stale
  d.prune(2_500);
  d.freed('b', 1, 2_500);
  expect(d.rate('a', 2_500)).toBe(0);
  expect(d.rate('b', 2_500)).toBeGreaterThan(0);
});
