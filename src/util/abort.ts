/**
 * Resolves once `signal` aborts, at once if it already has: a listener added to an aborted signal never fires,
 * and a stop that came earlier would be waited for again for ever.
 */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
