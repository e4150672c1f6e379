/**
 * A reusable wake-up for a loop that sleeps until there is work: `wait` resolves on the next `wake()`, when
 * `signal` aborts, or after `timeoutMs`. A wake that comes while nobody waits is kept for the next `wait`, which
 * then returns at once: a loop busy when work arrived (a claim in flight when fan-out left rows pending) must
 * not sleep through it. It leaves no listener on `signal` behind: loops wait thousands of times a second on one
 * long-lived signal, and a listener per wait was a leak.
 */
export function createWake() {
  let pending: (() => void) | undefined;
  let missed = false;
  return {
    wake(): void {
      if (pending === undefined) missed = true;
      else pending();
    },
    wait(signal: AbortSignal, timeoutMs?: number): Promise<void> {
      return new Promise<void>((resolve) => {
        if (signal.aborted || missed) {
          missed = false;
          return resolve();
        }
        const timer = timeoutMs === undefined ? undefined : setTimeout(done, timeoutMs);
        function done() {
          if (timer !== undefined) clearTimeout(timer);
          signal.removeEventListener('abort', done);
          if (pending === done) pending = undefined;
          resolve();
        }
        pending = done;
        signal.addEventListener('abort', done, { once: true });
      });
    },
  };
}
