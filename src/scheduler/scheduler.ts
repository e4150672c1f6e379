import { setTimeout as sleep } from 'node:timers/promises';
import type { Attempt, Job } from '../domain.ts';
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
  /** Hands the leases of jobs that were never started back to the table, so any relay can claim them at once. */
  handBack: (jobs: readonly Job[]) => Promise<void>;
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
  const inFlight = new Map<string, { job: Job; abort: AbortController }>();
  const throttleTimers = new Map<string, NodeJS.Timeout>();
  const claimWake = createWake();
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
    inFlight.set(job.deliveryId, { job, abort });
    void deps
      .attempt(job, abort.signal)
      .catch((err: unknown): Attempt => ({ kind: 'failed', error: `relay error: ${String(err)}`, durationMs: 0 }))
      .then((attempt) => {
        inFlight.delete(job.deliveryId);
        capacity.dropBytes(job.payload.length); // the outcome carries no payload
        queue.finished(job.endpointId, performance.now());
        if (attempt.kind === 'lease-lost') release(job.endpointId, 1);
        else {
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
      for (const job of jobs) {
        capacity.holdBytes(job.payload.length);
        queue.push(job);
      }
      pump();
      wakeRoomWaiters();
    },
    /** Places freed once outcomes are durably written (one endpoint id per outcome). */
    written(endpointIds: readonly string[]): void {
      let wake = false;
      for (const id of endpointIds) wake = capacity.release(id, 1) || wake;
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
    /** Leases of in-flight and queued jobs that must be renewed. */
    heldIds: (): string[] => [...inFlight.keys(), ...queue.queuedIds()],
    /** Aborts the request of a delivery whose lease is gone, or forgets it if unstarted; its outcome will not be written. */
    abort(deliveryId: string, reason: Error): boolean {
      const entry = inFlight.get(deliveryId);
      if (entry !== undefined) {
        entry.abort.abort(reason);
        return true;
      }
      const removed = queue.remove(deliveryId);
      if (removed === undefined) return false;
      capacity.dropBytes(removed.payload.length);
      release(removed.endpointId, 1);
      return true;
    },
    park,
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
        capacity.release(job.endpointId, 1);
        capacity.dropBytes(job.payload.length);
      }
      wakeRoomWaiters();
      for (const { abort } of inFlight.values()) abort.abort(reason);
      return dropped.length;
    },
  };
}
