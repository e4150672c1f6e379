/** Per-endpoint limits for one claim or fan-out statement: the listed endpoints get their quota, any other `fresh`. */
export type Quotas = { endpointIds: string[]; quotas: number[]; fresh: number };

/**
 * How many deliveries the scheduler may hold (queued + in flight + awaiting their outcome write), in all and
 * per endpoint, without I/O. Places are reserved before a claim or fan-out statement runs, so concurrent
 * producers never overfill, and freed when outcomes are written.
 *
 * Fair shares: with n endpoints holding places, each may hold at most capacity / (n + 1), and an endpoint that
 * holds none may take capacity / (n + 2). The extra one keeps room for an endpoint that is not holding anything
 * yet, so a slow endpoint with a backlog never takes every place (at most half, alone): a newcomer's first
 * deliveries are admitted at once. An endpoint over its share (because others arrived after it filled up) gets
 * nothing new until it drains below it; nothing is taken back.
 *
 * `backlog` remembers that rows may be waiting in the table (a producer wanted more than there was room for,
 * fan-out left rows pending, a sweep recovered some); `waiting` names the endpoints a claim had to leave due
 * rows for because of their quota. The claim loop is woken when there is room worth a statement for either.
 */
export function createCapacity(capacity: number, maxBytes = Number.POSITIVE_INFINITY) {
  let held = 0;
  let heldBytes = 0; // payloads of deliveries queued or in flight
  let avgBytes = 1_024; // a moving average of payload sizes: how many places the free bytes are worth
  let accepting = true;
  let backlog = false;
  let marks = 0; // how many times a backlog was marked
  const heldBy = new Map<string, number>();
  const waiting = new Set<string>();

  /**
   * Free places, by count and by bytes: with large payloads the byte budget binds first. While nothing is
   * held at least one place is free, so a payload larger than the whole budget still goes out, alone.
   */
  const room = () => {
    if (!accepting) return 0;
    const byCount = Math.max(0, capacity - held);
    const byBytes = Math.floor(Math.max(0, maxBytes - heldBytes) / avgBytes);
    return Math.min(byCount, held === 0 ? Math.max(1, byBytes) : byBytes);
  };
  const share = () => Math.max(1, Math.floor(capacity / (heldBy.size + 1)));
  const quotaOf = (endpointId: string) => Math.max(0, share() - (heldBy.get(endpointId) ?? 0));

  return {
    capacity,
    held: () => held,
    heldBy: (endpointId: string): number => heldBy.get(endpointId) ?? 0,
    room,
    accepting: () => accepting,
    share,
    quotaOf,
    /** The quota of every endpoint holding places, and what an endpoint holding none may take. */
    quotas: (): Quotas => {
      const endpointIds = [...heldBy.keys()];
      return {
        endpointIds,
        quotas: endpointIds.map(quotaOf),
        fresh: Math.max(1, Math.floor(capacity / (heldBy.size + 2))),
      };
    },
    /** Reserves up to `max` places; what was not granted marks a backlog. */
    reserve: (max: number): number => {
      const granted = Math.min(max, room());
      held += granted;
      if (granted < max) backlog = true;
      return granted;
    },
    /** Turns reserved places into places held by these endpoints (one entry per delivery); frees the rest. */
    admit: (reserved: number, endpointIds: readonly string[]): void => {
      held -= reserved - endpointIds.length;
      for (const id of endpointIds) heldBy.set(id, (heldBy.get(id) ?? 0) + 1);
    },
    /**
     * Frees `count` places of an endpoint. True when the claim loop should look now: a backlog waits and a
     * quarter of the capacity is free, or this endpoint has rows waiting and a quarter of its share is free.
     */
    release: (endpointId: string, count: number): boolean => {
      held -= count;
      const left = (heldBy.get(endpointId) ?? 0) - count;
      if (left > 0) heldBy.set(endpointId, left);
      else heldBy.delete(endpointId);
      if (!accepting) return false;
      if (backlog && room() >= Math.max(1, Math.floor(capacity / 4))) return true;
      return waiting.has(endpointId) && room() > 0 && quotaOf(endpointId) >= Math.max(1, Math.floor(share() / 4));
    },
    heldBytes: () => heldBytes,
    /** A job's payload entered memory. */
    holdBytes: (bytes: number): void => {
      heldBytes += bytes;
      avgBytes = Math.max(64, avgBytes * 0.95 + bytes * 0.05);
    },
    /** A job's payload left memory (its attempt ended, or it was handed back or dropped). */
    dropBytes: (bytes: number): void => {
      heldBytes -= bytes;
    },
    /** Rows may be waiting in the table (fan-out left some pending, a sweep recovered some). */
    markBacklog: (): void => {
      backlog = true;
      marks++;
    },
    /** Taken before a claim: a backlog marked while the claim ran is not cleared by its result. */
    marks: (): number => marks,
    /**
     * What a claim found. `more`: endpoints that still have due rows. `limited`: the claim stopped at its total
     * (or did not reach every endpoint with pending rows), so more may be claimable now. Endpoints left with
     * rows only because of their quota wait for their own places to free (`release`), not for the next claim:
     * otherwise every completion of an endpoint over its share would cost a claim statement.
     */
    claimed: (more: readonly string[], limited: boolean, marksBefore = marks): void => {
      waiting.clear();
      for (const id of more) waiting.add(id);
      backlog = limited || marks !== marksBefore;
    },
    stopAccepting: (): void => {
      accepting = false;
    },
  };
}

export type Capacity = ReturnType<typeof createCapacity>;
