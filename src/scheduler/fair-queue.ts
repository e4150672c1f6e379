import type { Job } from '../domain.ts';
import type { EndpointLimits } from '../limits/cluster-view.ts';

/** What `take` found: a job to start now, or an endpoint whose rate limit holds it until `untilMs`. */
export type Taken = { job: Job } | { throttled: string; untilMs: number };

/**
 * The scheduler's queues, without I/O or timers: one FIFO per endpoint, served round-robin among endpoints
 * under their concurrency cap and rate limit, so one endpoint's backlog or slowness never takes every worker.
 * The caller passes the monotonic time, starts what `take` returns, and reports each attempt's end.
 *
 *   push ─► queued ─► ready (under cap, rate slot free) ─► take ─► active ─► finished
 *                        └─ rate slot ahead ─► throttled until untilMs ─► unthrottle ─► ready
 *
 * `limits`: the endpoint's limits are the cluster's, and this relay takes its share of them (src/limits/); the
 * caller calls `refresh` when shares change. Without it, every limit holds for this relay alone.
 */
export function createFairQueue(defaultCap: number, limits?: EndpointLimits) {
  const queues = new Map<string, Job[]>(); // endpointId → jobs not started
  const ready = new Set<string>(); // endpoints with queued jobs under their cap, in round-robin order
  const activeBy = new Map<string, number>();
  const caps = new Map<string, number>(); // endpointId → its cap, from the newest job (endpoint rows can change)
  const rates = new Map<string, number>(); // endpointId → requests per second, where limited
  const nextSlotAt = new Map<string, number>(); // rate-limited endpoint → earliest next start (monotonic ms)
  const throttled = new Set<string>(); // out of the round-robin until their next slot
  let queued = 0;

  const limitOf = (endpointId: string) => caps.get(endpointId) ?? defaultCap;
  const capOf = (endpointId: string) =>
    limits === undefined ? limitOf(endpointId) : limits.concurrency(endpointId, limitOf(endpointId));
  const rateOf = (endpointId: string) => {
    const rate = rates.get(endpointId);
    if (limits === undefined) return rate;
    return limits.rate(endpointId, rate ?? null, limitOf(endpointId)) ?? undefined;
  };
  const makeReady = (endpointId: string) => {
    if (queues.has(endpointId) && !throttled.has(endpointId) && (activeBy.get(endpointId) ?? 0) < capOf(endpointId)) {
      ready.add(endpointId);
    }
  };

  /** Takes a rate slot for the endpoint; undefined when none is free yet (then: when the next one is). */
  const takeSlot = (endpointId: string, nowMs: number): number | undefined => {
    const rate = rateOf(endpointId);
    if (rate === undefined) return undefined;
    const at = nextSlotAt.get(endpointId) ?? 0;
    if (at > nowMs) return at;
    nextSlotAt.set(endpointId, Math.max(at, nowMs) + 1000 / rate);
    return undefined;
  };

  const removeQueue = (endpointId: string): Job[] => {
    const jobs = queues.get(endpointId) ?? [];
    queues.delete(endpointId);
    ready.delete(endpointId);
    queued -= jobs.length;
    return jobs;
  };

  return {
    push(job: Job): void {
      let queue = queues.get(job.endpointId);
      if (queue === undefined) queues.set(job.endpointId, (queue = []));
      queue.push(job);
      queued++;
      caps.set(job.endpointId, job.maxInFlight ?? defaultCap);
      if (job.ratePerSecond === null) rates.delete(job.endpointId);
      else rates.set(job.endpointId, job.ratePerSecond);
      makeReady(job.endpointId);
    },
    /** The next job to start, round-robin over ready endpoints; undefined when no endpoint is ready. */
    take(nowMs: number): Taken | undefined {
      for (;;) {
        const endpointId = ready.values().next().value;
        if (endpointId === undefined) return undefined;
        ready.delete(endpointId);
        const queue = queues.get(endpointId);
        if (queue === undefined || queue.length === 0) continue;
        // A newer job may have lowered the cap while the endpoint waited its turn.
        if ((activeBy.get(endpointId) ?? 0) >= capOf(endpointId)) continue;
        const untilMs = takeSlot(endpointId, nowMs);
        if (untilMs !== undefined) {
          throttled.add(endpointId);
          return { throttled: endpointId, untilMs };
        }
        const job = queue.shift()!;
        queued--;
        if (queue.length === 0) queues.delete(endpointId);
        activeBy.set(endpointId, (activeBy.get(endpointId) ?? 0) + 1);
        makeReady(endpointId); // back at the end of the round
        return { job };
      }
    },
    /** Shares changed (src/limits/): every endpoint with queued jobs is looked at again. */
    refresh(): void {
      for (const endpointId of queues.keys()) makeReady(endpointId);
    },
    /** The endpoint's rate slot is due: back into the round-robin. */
    unthrottle(endpointId: string): void {
      throttled.delete(endpointId);
      makeReady(endpointId);
    },
    /** An attempt of the endpoint ended: its place under the cap is free again. */
    finished(endpointId: string, nowMs: number): void {
      const active = (activeBy.get(endpointId) ?? 1) - 1;
      if (active === 0) activeBy.delete(endpointId);
      else activeBy.set(endpointId, active);
      if (active === 0 && !queues.has(endpointId)) {
        // Nothing queued or in flight: forget it, except a rate slot still ahead (a burst must not reset it).
        caps.delete(endpointId);
        if ((nextSlotAt.get(endpointId) ?? 0) <= nowMs) {
          nextSlotAt.delete(endpointId);
          rates.delete(endpointId);
        }
      }
      makeReady(endpointId);
    },
    /** Removes the first queued (unstarted) job `which` picks and returns it; undefined when none is queued. */
    remove(which: (job: Job) => boolean): Job | undefined {
      for (const [endpointId, queue] of queues) {
        const index = queue.findIndex(which);
        if (index < 0) continue;
        const [job] = queue.splice(index, 1);
        queued--;
        if (queue.length === 0) removeQueue(endpointId);
        return job;
      }
      return undefined;
    },
    /** Takes back every queued job of one endpoint. */
    removeEndpoint: removeQueue,
    /** Takes back every queued job; throttled endpoints are forgotten (the caller clears their timers). */
    removeAll(): Job[] {
      const all = [...queues.keys()].flatMap(removeQueue);
      throttled.clear();
      return all;
    },
    queued: (): number => queued,
    queuedJobs: (): Job[] => [...queues.values()].flat(),
    active: (endpointId: string): number => activeBy.get(endpointId) ?? 0,
  };
}

export type FairQueue = ReturnType<typeof createFairQueue>;
