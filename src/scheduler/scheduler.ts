import { setTimeout as sleep } from 'node:timers/promises';
import { jobKey, type Attempt, type Job } from '../domain.ts';
import type { EndpointLimits } from '../limits/cluster-view.ts';
import type { Logger } from '../log.ts';
import { createWake } from '../util/wake.ts';
import { createCapacity, type Quotas } from './capacity.ts';
import { createFairQueue } from './fair-queue.ts';

export type SchedulerDeps = {
  /** Most deliveries held in memory (queued + in flight + awaiting their outcome write). */
  capacity: number;
  /** Most payload bytes (characters) held by deliveries queued or in flight. */
  maxBytes?: number;
  /** Most requests in flight across all endpoints. */
  concurrency: number;
  /** Most requests in flight to one endpoint, so one slow receiver cannot take every worker. */
  perEndpointConcurrency: number;
  /** Cluster-wide limits (src/limits/): this relay's share of each endpoint's. Unset: limits per relay. */
  limits?: EndpointLimits;
  attempt: (job: Job, signal: AbortSignal) => Promise<Attempt>;
  /** Called once per finished attempt (not for lost leases); the outcome writer calls `written` later. */
  finished: (job: Job, attempt: Exclude<Attempt, { kind: 'lease-lost' }>) => void;
  /**
   * Hands jobs that were never started back to the table, so any relay can claim them at once: leases released,
   * and rows inserted pending for jobs sent from the stream that have none yet.
   */
  handBack: (jobs: readonly Job[]) => Promise<void>;
  /** Jobs from the stream with no row were dropped unsent and unrecorded (a lost lease cannot apply; fencing). */
  dropped?: (jobs: readonly Job[]) => void;
  log: Logger;
};

export type Scheduler = ReturnType<typeof createScheduler>;

/**
 * The bounded in-memory scheduler. Every job it holds carries a lease this process owns. The decisions live in
 * two pure parts, `capacity` (how many places are held) and `fairQueue` (per-endpoint FIFOs served round-robin
 * under each endpoint's cap and rate limit); this module starts attempts, keeps the timers and wakes waiters.
 *
 *   reserve ──► accept ──► queued ──► in flight ──► finished ──► written (place freed)
 *                            │                         └──► lease lost (place freed at once)
 *                            ├──► parked: its endpoint was disabled or answered 410; handed back unstarted
 *                            └──► settled: handed back unstarted at shutdown
 */
export function createScheduler(deps: SchedulerDeps) {
  const capacity = createCapacity(deps.capacity, deps.maxBytes);
  const queue = createFairQueue(deps.perEndpointConcurrency, deps.limits);
  const inFlight = new Map<string, { job: Job; abort: AbortController }>(); // by jobKey
  const unrecorded = new Map<string, number>(); // jobs from the stream with no row yet: jobKey → admitted at (ms)
  const throttleTimers = new Map<string, NodeJS.Timeout>();
  const claimWake = createWake();
  const finishedBy = new Map<string, number>(); // attempts finished, per endpoint, ever (while it holds places)
  const pruneTimer = setInterval(() => {
    for (const id of finishedBy.keys()) if (capacity.heldBy(id) === 0) finishedBy.delete(id);
  }, 10_000);
  pruneTimer.unref();
  let idleWaiters: (() => void)[] = [];
  let roomWaiters: { places: number; resolve: () => void }[] = [];

  const pump = () => {
    while (capacity.accepting() && inFlight.size < deps.concurrency) {
      const taken = queue.take(performance.now());
      if (taken === undefined) return;
      if ('job' in taken) {
        start(taken.job);
        continue;
      }
      const { throttled, untilMs } = taken;
      const timer = setTimeout(
        () => {
          throttleTimers.delete(throttled);
          queue.unthrottle(throttled);
          pump();
        },
        Math.max(0, untilMs - performance.now()),
      );
      timer.unref();
      throttleTimers.set(throttled, timer);
    }
  };

  const start = (job: Job) => {
    const abort = new AbortController();
    const key = jobKey(job);
    inFlight.set(key, { job, abort });
    void deps
      .attempt(job, abort.signal)
      .catch((err: unknown): Attempt => ({ kind: 'failed', error: `relay error: ${String(err)}`, durationMs: 0 }))
      .then((attempt) => {
        inFlight.delete(key);
        unrecorded.delete(key); // the outcome write records it from here
        finishedBy.set(job.endpointId, (finishedBy.get(job.endpointId) ?? 0) + 1);
        capacity.dropBytes(job.payload.length); // the outcome carries no payload
        queue.finished(job.endpointId, performance.now());
        if (attempt.kind === 'lease-lost') {
          release(job.endpointId, 1);
          if (job.deliveryId === null) deps.dropped?.([job]);
        } else {
          // 410 Gone: the outcome write disables the endpoint; stop sending its queued jobs at once.
          if (attempt.kind === 'failed' && attempt.status === 410) park(job.endpointId);
          deps.finished(job, attempt);
        }
        pump();
        if (inFlight.size === 0) notifyIdle();
      });
  };

  const release = (endpointId: string, count: number) => {
    if (capacity.release(endpointId, count)) claimWake.wake();
    wakeRoomWaiters();
  };

  /** Takes queued jobs out of memory and hands their leases back. */
  const handBack = (jobs: Job[]): Promise<void> => {
    if (jobs.length === 0) return Promise.resolve();
    for (const job of jobs) {
      unrecorded.delete(jobKey(job));
      capacity.release(job.endpointId, 1);
      capacity.dropBytes(job.payload.length);
    }
    wakeRoomWaiters();
    return deps.handBack(jobs);
  };

  /** Hands back an endpoint's queued deliveries unsent; they stay pending (parked) while it is disabled. */
  const park = (endpointId: string): void => {
    void handBack(queue.removeEndpoint(endpointId));
  };

  /** Wakes the fan-out waiting for room once there is enough, or at once when no longer accepting. */
  const wakeRoomWaiters = () => {
    if (roomWaiters.length === 0) return;
    const free = capacity.room();
    roomWaiters = roomWaiters.filter((w) => {
      if (capacity.accepting() && free < w.places) return true;
      w.resolve();
      return false;
    });
  };

  const notifyIdle = () => {
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  };

  const whenIdle = async (): Promise<void> => {
    if (inFlight.size === 0) return;
    await new Promise<void>((resolve) => idleWaiters.push(resolve));
  };

  const forgetQueued = (): Job[] => {
    for (const timer of throttleTimers.values()) clearTimeout(timer);
    throttleTimers.clear();
    return queue.removeAll();
  };

  return {
    held: capacity.held,
    heldBytes: capacity.heldBytes,
    room: capacity.room,
    /**
     * Resolves once `places` are free (at most half the capacity is ever waited for), after `timeoutMs`, or at
     * once when the scheduler stops accepting. Lets fan-out insert rows already claimed instead of pending
     * rows that a claim has to write a second time.
     */
    waitForRoom(places: number, timeoutMs: number): Promise<void> {
      const wanted = Math.min(places, Math.ceil(deps.capacity / 2));
      if (!capacity.accepting() || capacity.room() >= wanted) return Promise.resolve();
      return new Promise((resolve) => {
        const waiter = {
          places: wanted,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
        const timer = setTimeout(() => {
          roomWaiters = roomWaiters.filter((w) => w !== waiter);
          resolve();
        }, timeoutMs);
        timer.unref();
        roomWaiters.push(waiter);
      });
    },
    inFlight: () => inFlight.size,
    /** Attempts an endpoint finished so far (a counter that only grows while the endpoint holds places). */
    finished: (endpointId: string): number => finishedBy.get(endpointId) ?? 0,
    /** Reserves up to `max` places before a claim, so concurrent claimers never overfill. */
    reserve: capacity.reserve,
    /** Per-endpoint limits for the next claim or fan-out (fair shares; none for endpoints blocked cluster-wide). */
    quotas: (): Quotas => {
      const quotas = capacity.quotas();
      const blocked = deps.limits?.blocked() ?? [];
      if (blocked.length === 0) return quotas;
      const listed = new Set(quotas.endpointIds);
      const extra = blocked.filter((id) => !listed.has(id));
      const zero = new Set(blocked);
      return {
        endpointIds: [...quotas.endpointIds, ...extra],
        quotas: [...quotas.endpointIds.map((id, i) => (zero.has(id) ? 0 : quotas.quotas[i]!)), ...extra.map(() => 0)],
        fresh: quotas.fresh,
      };
    },
    /** Cluster shares or breakers changed: look at every queued endpoint again. */
    limitsChanged(): void {
      queue.refresh();
      pump();
    },
    /** Takes claimed jobs; `reserved - jobs.length` unused places are handed back. */
    accept(jobs: readonly Job[], reserved: number): void {
      capacity.admit(
        reserved,
        jobs.map((j) => j.endpointId),
      );
      const now = performance.now();
      for (const job of jobs) {
        capacity.holdBytes(job.payload.length);
        if (job.deliveryId === null) unrecorded.set(jobKey(job), now);
        queue.push(job);
      }
      pump();
      wakeRoomWaiters();
    },
    /** Places freed once outcomes are durably written (one endpoint id per outcome). */
    written(endpointIds: readonly string[]): void {
      let wake = false;
      for (const id of endpointIds) {
        wake = capacity.release(id, 1) || wake;
      }
      if (wake) claimWake.wake();
      wakeRoomWaiters();
    },
    /** The claim loop sleeps here until `timeoutMs` or until there is room and work may be waiting. */
    waitForClaim: (timeoutMs: number, signal: AbortSignal): Promise<void> => claimWake.wait(signal, timeoutMs),
    wakeClaimer(): void {
      capacity.markBacklog();
      if (capacity.room() > 0) claimWake.wake();
    },
    /** What a claim left behind: endpoints with due rows still, and whether the claim was cut short. */
    claimed: capacity.claimed,
    backlogMarks: capacity.marks,
    /** Leases of in-flight and queued jobs that must be renewed (jobs from the stream with no row have none). */
    heldIds: (): string[] => {
      const ids: string[] = [];
      for (const { job } of inFlight.values()) if (job.deliveryId !== null) ids.push(job.deliveryId);
      for (const job of queue.queuedJobs()) if (job.deliveryId !== null) ids.push(job.deliveryId);
      return ids;
    },
    /** Jobs from the stream, queued or in flight, with no row yet, held since before `cutoffMs` (monotonic). */
    unrecordedSince(cutoffMs: number): Job[] {
      const keys = new Set<string>();
      for (const [key, at] of unrecorded) if (at <= cutoffMs) keys.add(key);
      if (keys.size === 0) return [];
      const jobs: Job[] = [];
      for (const { job } of inFlight.values()) if (keys.has(jobKey(job))) jobs.push(job);
      for (const job of queue.queuedJobs()) if (keys.has(jobKey(job))) jobs.push(job);
      return jobs;
    },
    /**
     * A job from the stream now has a row claimed for this relay (written because it outlasted PERSIST_AFTER,
     * or by a replay's fan-out): from here its lease is renewed and its outcome updates that row. False when the
     * job is no longer held.
     */
    adopt(key: string, deliveryId: string): boolean {
      unrecorded.delete(key);
      const job = inFlight.get(key)?.job ?? queue.queuedJobs().find((j) => jobKey(j) === key);
      if (job === undefined) return false;
      job.deliveryId = deliveryId;
      return true;
    },
    /** Whether a delivery (jobKey) is in flight, or queued with no row yet (a queued one with a row is recorded). */
    holds: (key: string): boolean => inFlight.has(key) || unrecorded.has(key),
    /** Aborts the request of a delivery whose lease is gone, or forgets it if unstarted; its outcome will not be written. */
    abort(deliveryId: string, reason: Error): boolean {
      for (const entry of inFlight.values()) {
        if (entry.job.deliveryId !== deliveryId) continue;
        entry.abort.abort(reason);
        return true;
      }
      const removed = queue.remove((j) => j.deliveryId === deliveryId);
      if (removed === undefined) return false;
      capacity.dropBytes(removed.payload.length);
      release(removed.endpointId, 1);
      return true;
    },
    park,
    /**
     * The endpoint was deleted: its jobs from the stream (no row; nothing will be recorded for them) are
     * forgotten if queued and aborted if in flight. Returns them. Jobs with a row end through their lease (the
     * delete ended the row).
     */
    dropUnrecorded(endpointId: string, reason: Error): Job[] {
      const dropped: Job[] = [];
      for (;;) {
        const job = queue.remove((j) => j.endpointId === endpointId && j.deliveryId === null);
        if (job === undefined) break;
        unrecorded.delete(jobKey(job));
        capacity.dropBytes(job.payload.length);
        release(job.endpointId, 1);
        dropped.push(job);
      }
      for (const { job, abort } of inFlight.values()) {
        if (job.endpointId !== endpointId || job.deliveryId !== null) continue;
        abort.abort(reason);
        dropped.push(job);
      }
      return dropped;
    },
    /**
     * Shutdown: stops starting work, hands back every job not yet started, lets requests in flight finish
     * within `graceMs`, then aborts the rest. Resolves when nothing is in flight.
     */
    async settle(graceMs: number): Promise<{ handedBack: number; aborted: number }> {
      capacity.stopAccepting();
      const unstarted = forgetQueued();
      wakeRoomWaiters();
      await handBack(unstarted);
      const idle = whenIdle();
      const grace = new AbortController();
      const first = await Promise.race([
        idle.then(() => 'idle' as const),
        sleep(graceMs, 'grace' as const, { signal: grace.signal }).catch(() => 'idle' as const),
      ]);
      grace.abort(); // a pending grace timer would hold the process open
      const aborted = first === 'grace' ? inFlight.size : 0;
      if (aborted > 0) {
        deps.log.warn({ inFlight: aborted }, 'grace period over; aborting in-flight requests');
        for (const { abort } of inFlight.values()) abort.abort(new Error('relay shutting down'));
        await idle;
      }
      return { handedBack: unstarted.length, aborted };
    },
    /** Self-fencing: forgets every queued job (leases may be a peer's by now) and aborts every request. */
    fence(reason: Error): number {
      const dropped = forgetQueued();
      for (const job of dropped) {
        unrecorded.delete(jobKey(job));
        capacity.release(job.endpointId, 1);
        capacity.dropBytes(job.payload.length);
      }
      const fromStream = dropped.filter((j) => j.deliveryId === null);
      if (fromStream.length > 0) deps.dropped?.(fromStream);
      wakeRoomWaiters();
      for (const { abort } of inFlight.values()) abort.abort(reason);
      return dropped.length;
    },
  };
}
