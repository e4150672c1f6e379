/**
 * Which deliveries sent from the stream are not recorded yet, grouped by the batch of WAL rows they came from.
 * A batch is resolved (its commit may be confirmed to the slot) once each of its deliveries is recorded:
 * delivered and written, or written for a retry, a hand-back or because it outlasted PERSIST_AFTER. If one is
 * dropped unrecorded, its batch fails: the session ends and the slot replays the batch, which the table's
 * idempotent fan-out then handles. No I/O.
 */
export function createLedger() {
  type Group = { left: number; resolve: () => void; reject: (err: Error) => void };
  const groups = new Map<string, Group>(); // key (event × endpoint) → its batch's group

  return {
    /** Resolves once every key is recorded; rejects when one is dropped. No keys: resolved at once. */
    track(keys: readonly string[]): Promise<void> {
      if (keys.length === 0) return Promise.resolve();
      const { promise, resolve, reject } = Promise.withResolvers<void>();
      const group: Group = { left: keys.length, resolve, reject };
      for (const key of keys) groups.set(key, group);
      return promise;
    },
    /** These deliveries are recorded; keys not tracked (rows claimed from the table) are ignored. */
    recorded(keys: Iterable<string>): void {
      for (const key of keys) {
        const group = groups.get(key);
        if (group === undefined) continue;
        groups.delete(key);
        if (--group.left === 0) group.resolve();
      }
    },
    /** These deliveries were dropped unrecorded: their batches fail (each once). */
    dropped(keys: Iterable<string>, reason: Error): void {
      for (const key of keys) {
        const group = groups.get(key);
        if (group === undefined) continue;
        for (const [other, g] of groups) if (g === group) groups.delete(other);
        group.reject(reason);
      }
    },
    /** Deliveries sent from the stream and not recorded yet. */
    size: (): number => groups.size,
  };
}

export type Ledger = ReturnType<typeof createLedger>;
