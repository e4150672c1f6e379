import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, describe, expect, test } from 'vitest';
import { createBreakers, type BreakerState, type BreakersOptions } from '../src/breaker/breakers.ts';
import type { Attempt } from '../src/domain.ts';
import { until } from './support/until.ts';

const RESET_MS = 200;
const delivered = (): Attempt => ({ kind: 'delivered', status: 200, durationMs: 1 });
const failed = (): Attempt => ({ kind: 'failed', status: 500, error: 'HTTP 500', durationMs: 1 });
const permanent = (): Attempt => ({ kind: 'failed', error: 'refused destination', permanent: true, durationMs: 0 });
const leaseLost = (): Attempt => ({ kind: 'lease-lost' });

/** An attempt that stays in flight until the test settles it. */
function pending(): { attempt: () => Promise<Attempt>; settle: (a: Attempt) => void; started: () => boolean } {
  let settle: (a: Attempt) => void = () => {};
  let started = false;
  const promise = new Promise<Attempt>((resolve) => (settle = resolve));
  return { attempt: () => ((started = true), promise), settle: (a) => settle(a), started: () => started };
}

let created: ReturnType<typeof createBreakers>[] = [];
afterEach(() => {
  for (const b of created) b.shutdown();
  created = [];
});

function setup(overrides: Partial<BreakersOptions> = {}) {
  const events: { endpointId: string; state: BreakerState; atMs: number }[] = [];
  const breakers = createBreakers({
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    resetTimeoutMs: RESET_MS,
    rollingWindowMs: RESET_MS, // ≤ reset: counts from before an open are gone when the probe closes it
    onStateChange: (endpointId, state) => events.push({ endpointId, state, atMs: Date.now() }),
    ...overrides,
  });
  created.push(breakers);
  const runAll = async (endpointId: string, make: () => Attempt, times: number) => {
    for (let i = 0; i < times; i++) await breakers.run(endpointId, () => Promise.resolve(make()));
  };
  const open = async (endpointId: string) => {
    await runAll(endpointId, failed, 5);
    expect(breakers.state(endpointId)).toBe('open');
  };
  const halfOpen = (endpointId: string) =>
    until(() => breakers.state(endpointId) === 'half-open', { timeoutMs: 5_000, intervalMs: 5, what: 'half-open' });
  return { breakers, events, runAll, open, halfOpen };
}

describe('createBreakers', () => {
  test('fewer failures than volumeThreshold never open it; reaching it does', async () => {
    const { breakers, runAll } = setup();
    await runAll('a', failed, 4);
    expect(breakers.state('a')).toBe('closed');
    await runAll('a', failed, 1);
    expect(breakers.state('a')).toBe('open');
    expect(breakers.openEndpoints()).toEqual(['a']);
  });

  test('while open the attempt is never called and untilMs is open time + resetTimeout', async () => {
    const { breakers, events, open } = setup();
    await open('a');
    const openedAtMs = events.find((e) => e.state === 'open')?.atMs ?? 0;
    let calls = 0;
    for (let i = 0; i < 10; i++) {
      const result = await breakers.run('a', () => (calls++, Promise.resolve(delivered())));
      expect(result.kind).toBe('deferred');
      if (result.kind !== 'deferred') throw new Error('unreachable');
      expect(result.untilMs).toBeGreaterThanOrEqual(openedAtMs + RESET_MS - 5);
      expect(result.untilMs).toBeLessThanOrEqual(openedAtMs + RESET_MS + 5);
    }
    expect(calls).toBe(0);
  });

  test('half-open runs exactly one probe; a concurrent call is deferred; success closes', async () => {
    const { breakers, open, halfOpen } = setup();
    await open('a');
    await halfOpen('a');
    const probe = pending();
    const second = pending();
    const first = breakers.run('a', probe.attempt);
    const beforeMs = Date.now();
    const secondRun = breakers.run('a', second.attempt);
    expect(probe.started()).toBe(true);
    expect(second.started()).toBe(false);
    second.settle(delivered()); // had it run, it would end now rather than hang the test
    const deferred = await secondRun;
    expect(deferred).toMatchObject({ kind: 'deferred' });
    if (deferred.kind === 'deferred') expect(deferred.untilMs).toBeGreaterThanOrEqual(beforeMs + RESET_MS);
    const outcome = delivered();
    probe.settle(outcome);
    expect(await first).toBe(outcome);
    expect(breakers.state('a')).toBe('closed');
    expect(await breakers.run('a', () => Promise.resolve(delivered()))).toMatchObject({ kind: 'delivered' });
  });

  test('a failed probe re-opens it with a later untilMs', async () => {
    const { breakers, open, halfOpen } = setup();
    await open('a');
    const firstUntil = await breakers.run('a', () => Promise.resolve(delivered()));
    await halfOpen('a');
    const before = Date.now();
    await breakers.run('a', () => Promise.resolve(failed()));
    expect(breakers.state('a')).toBe('open');
    const secondUntil = await breakers.run('a', () => Promise.resolve(delivered()));
    if (firstUntil.kind !== 'deferred' || secondUntil.kind !== 'deferred') throw new Error('expected deferrals');
    expect(secondUntil.untilMs).toBeGreaterThan(firstUntil.untilMs);
    expect(secondUntil.untilMs).toBeGreaterThanOrEqual(before + RESET_MS);
  });

  test('permanent failures and lost leases never open it, nor dilute the error rate', async () => {
    const { breakers, runAll } = setup({ volumeThreshold: 1 });
    await runAll('a', permanent, 100);
    await runAll('a', leaseLost, 100);
    expect(breakers.state('a')).toBe('closed');
    await runAll('a', failed, 1); // had they counted as successes, 1 failure in 201 would stay closed
    expect(breakers.state('a')).toBe('open');
  });

  test('an uncounted probe leaves it half-open and the next call probes', async () => {
    const { breakers, open, halfOpen } = setup();
    await open('a');
    await halfOpen('a');
    await breakers.run('a', () => Promise.resolve(permanent()));
    await breakers.run('a', () => Promise.resolve(leaseLost()));
    expect(breakers.state('a')).toBe('half-open');
    let calls = 0;
    await breakers.run('a', () => (calls++, Promise.resolve(delivered())));
    expect(calls).toBe(1);
    expect(breakers.state('a')).toBe('closed');
  });

  test('a thrown attempt becomes a counted relay-error failure, not a deferral', async () => {
    const { breakers } = setup({ volumeThreshold: 1 });
    const result = await breakers.run('a', () => Promise.reject(new Error('bug')));
    expect(result).toEqual({ kind: 'failed', error: 'relay error: Error: bug', durationMs: 0 });
    expect(breakers.state('a')).toBe('open');
  });

  test("one endpoint's failures do not affect another", async () => {
    const { breakers, open } = setup();
    await open('a');
    const result = await breakers.run('b', () => Promise.resolve(delivered()));
    expect(result.kind).toBe('delivered');
    expect(breakers.state('b')).toBe('closed');
    expect(breakers.openEndpoints()).toEqual(['a']);
  });

  test('eviction drops the least recently used closed breaker and keeps open ones', async () => {
    const { breakers, open, runAll } = setup({ maxBreakers: 3, resetTimeoutMs: 60_000, rollingWindowMs: 60_000 });
    await open('a');
    await runAll('b', delivered, 1);
    await runAll('c', delivered, 1);
    await runAll('b', delivered, 1); // c is now the least recently used closed one
    await runAll('d', delivered, 1);
    expect(breakers.size()).toBe(3);
    expect(breakers.state('a')).toBe('open');
    expect((await breakers.run('a', () => Promise.resolve(delivered()))).kind).toBe('deferred');
    await open('b');
    await open('d');
    await runAll('e', delivered, 1); // all open: the least recently used (a) goes anyway
    expect(breakers.size()).toBe(3);
    expect(breakers.openEndpoints().sort()).toEqual(['b', 'd']);
  });

  test('onStateChange reports open, half-open and closed in order', async () => {
    const { breakers, events, open, halfOpen } = setup();
    await open('a');
    await halfOpen('a');
    await breakers.run('a', () => Promise.resolve(delivered()));
    expect(events.map((e) => [e.endpointId, e.state])).toEqual([
      ['a', 'open'],
      ['a', 'half-open'],
      ['a', 'closed'],
    ]);
  });

  test('returns the very object the attempt produced', async () => {
    const { breakers } = setup({ volumeThreshold: 1 });
    for (const make of [delivered, permanent, leaseLost, failed]) {
      const attempt = make();
      expect(await breakers.run('a', () => Promise.resolve(attempt))).toBe(attempt);
    }
  });

  test('its timers never keep the process alive, even with an open breaker and no shutdown', async () => {
    const url = new URL('../src/breaker/breakers.ts', import.meta.url).href;
    const script = `import { createBreakers } from ${JSON.stringify(url)};
      const b = createBreakers({ errorThresholdPercentage: 50, volumeThreshold: 1, resetTimeoutMs: 600000, rollingWindowMs: 600000 });
      await b.run('a', async () => ({ kind: 'failed', error: 'x', durationMs: 0 }));
      if (b.state('a') !== 'open') process.exit(3);`;
    // A timer keeping it alive shows as the kill signal instead of exit code 0.
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit', timeout: 10_000 });
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    expect({ code, signal }).toEqual({ code: 0, signal: null });
  }, 15_000);
});
