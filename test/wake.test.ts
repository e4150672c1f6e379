import { expect, test } from 'vitest';
import { createWake } from '../src/util/wake.ts';

test('a wake that comes while nobody waits is kept: the next wait returns at once', async () => {
  const wake = createWake();
  const signal = new AbortController().signal;
  wake.wake(); // the loop was busy (a claim in flight) when work arrived
  const started = performance.now();
  await wake.wait(signal, 10_000);
  expect(performance.now() - started).toBeLessThan(1_000);
  // Kept once, not forever: the wait after it sleeps until its timeout.
  const again = performance.now();
  await wake.wait(signal, 50);
  expect(performance.now() - again).toBeGreaterThanOrEqual(45);
});
