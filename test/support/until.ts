import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `check` until it returns truthy (then returns that) or `timeoutMs` passes (then throws with `what`). */
export async function until<T>(
  check: () => T | Promise<T>,
  {
    timeoutMs = 20_000,
    intervalMs = 25,
    what = 'condition',
  }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      // A check that never settles (a query on a connection that hangs) must not outlive the deadline either.
      const leftMs = Math.max(deadline - performance.now(), intervalMs);
      const value = await within(leftMs, `a check of ${what}`, async () => check());
      if (value) return value;
      last = value;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline)
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what} (last: ${String(last)})`);
    await sleep(intervalMs);
  }
}

/**
 * Awaits `work`, failing after `timeoutMs` with `what` (and `detail()`, read at that moment) instead of waiting
 * forever. Vitest bounds tests and hooks but not fixture teardown: one teardown that never settles stalls the
 * whole run with no output, so every teardown goes through this.
 */
export async function within<T>(
  timeoutMs: number,
  what: string,
  work: () => Promise<T>,
  detail: () => string = () => '',
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const more = detail();
      reject(new Error(`${what} did not finish within ${timeoutMs} ms${more === '' ? '' : ` (${more})`}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([work(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `count` until it reaches `target`, failing only when it stops moving for `stallMs` (or after `timeoutMs`
 * in all): a large drain on a slow, shared machine takes what it takes, but a stuck one still fails, saying where
 * it stopped.
 */
export async function untilCount(
  count: () => Promise<number>,
  target: number,
  { what, stallMs = 15_000, timeoutMs = 120_000 }: { what: string; stallMs?: number; timeoutMs?: number },
): Promise<void> {
  const started = performance.now();
  let last = -1;
  let movedAt = started;
  for (;;) {
    const now = await within(stallMs, `a count of ${what}`, count);
    if (now >= target) return;
    if (now !== last) [last, movedAt] = [now, performance.now()];
    if (performance.now() - movedAt > stallMs)
      throw new Error(`${what}: stuck at ${now} of ${target} for ${stallMs} ms`);
    if (performance.now() - started > timeoutMs)
      throw new Error(`${what}: ${now} of ${target} after ${timeoutMs} ms, still moving`);
    await sleep(100);
  }
}
