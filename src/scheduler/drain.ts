/**
 * How fast each endpoint frees scheduler places lately (places per second over the last one to two seconds), so
 * fan-out can tell an endpoint worth waiting for (a burst to a fast receiver: its places free in milliseconds)
 * from one that is not (a slow receiver's backlog: write it pending at once, and let the stream go on). No I/O:
 * the caller passes monotonic milliseconds.
 */
export function createDrainRates(windowMs = 1_000) {
  type Window = { startMs: number; current: number; previous: number };
  const windows = new Map<string, Window>();
  let all: Window = { startMs: 0, current: 0, previous: 0 };

  const roll = (w: Window, nowMs: number): Window => {
    const elapsed = nowMs - w.startMs;
    if (elapsed < windowMs) return w;
    // One window on: this one becomes the previous; more than one on: both are stale.
    return { startMs: nowMs, current: 0, previous: elapsed < 2 * windowMs ? w.current : 0 };
  };
  const rateOf = (w: Window | undefined, nowMs: number): number => {
    if (w === undefined) return 0;
    const rolled = roll(w, nowMs);
    const spanMs = windowMs + (nowMs - rolled.startMs);
    return ((rolled.current + rolled.previous) * 1_000) / spanMs;
  };

  return {
    /** `n` places of `endpointId` were freed at `nowMs`. */
    freed(endpointId: string, n: number, nowMs: number): void {
      const w = roll(windows.get(endpointId) ?? { startMs: nowMs, current: 0, previous: 0 }, nowMs);
      w.current += n;
      windows.set(endpointId, w);
      all = roll(all, nowMs);
      all.current += n;
    },
    /** Places per second `endpointId` freed lately (0: none, or unknown). */
    rate: (endpointId: string, nowMs: number): number => rateOf(windows.get(endpointId), nowMs),
    /** Places per second freed lately, every endpoint together. */
    total: (nowMs: number): number => rateOf(all, nowMs),
    /** Forgets endpoints idle for two windows (bounded memory with many endpoints). */
    prune(nowMs: number): void {
      for (const [id, w] of windows) if (nowMs - w.startMs >= 2 * windowMs) windows.delete(id);
    },
  };
}

export type DrainRates = ReturnType<typeof createDrainRates>;
