/**
 * A reusable wake-up for a loop that sleeps until there is work: `wait` resolves on the next `wake()`, when
 * `signal` aborts, or after `timeoutMs`. It leaves no listener on `signal` behind: loops wait thousands of
 * times a second on one long-lived signal, and a listener per wait was a leak.
 */
export function createWake() {
  let pending: (() => void) | undefined;
  return {
    wake(): void {
      pending?.();
    },
    wait(signal: AbortSignal, timeoutMs?: number): Promise<void> {
      return new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
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
