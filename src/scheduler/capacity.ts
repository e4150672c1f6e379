/**
 * How many deliveries the scheduler may hold (queued + in flight + awaiting their outcome write), without I/O.
 * Places are reserved before a claim or fan-out statement runs, so concurrent producers never overfill, and
 * freed when outcomes are written. `backlog` remembers that a producer wanted more than there was room for:
 * the table may hold claimable rows, so the claim loop is woken once a quarter of the capacity is free.
 */
export function createCapacity(capacity: number) {
  let held = 0;
  let accepting = true;
  let backlog = false;

  const room = () => (accepting ? Math.max(0, capacity - held) : 0);

  return {
    capacity,
    held: () => held,
    room,
    accepting: () => accepting,
    /** Reserves up to `max` places; what was not granted marks a backlog. */
    reserve: (max: number): number => {
      const granted = Math.min(max, room());
      held += granted;
      if (granted < max) backlog = true;
      return granted;
    },
    /**
     * Frees `count` places. True when the claim loop should look now: a backlog waits and enough room is free
     * for a worthwhile claim.
     */
    release: (count: number): boolean => {
      held -= count;
      return backlog && room() >= Math.max(1, Math.floor(capacity / 4));
    },
    /** Rows may be waiting in the table (fan-out left some pending, a sweep recovered some). */
    markBacklog: (): void => {
      backlog = true;
    },
    /** A claim came back short: the table has nothing more due right now. */
    caughtUp: (): void => {
      backlog = false;
    },
    stopAccepting: (): void => {
      accepting = false;
    },
  };
}

export type Capacity = ReturnType<typeof createCapacity>;
