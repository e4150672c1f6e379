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
