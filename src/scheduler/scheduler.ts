import type { Logger } from '../log.ts';
import type { Attempt, Job } from './types.ts';
import { createWake } from '../util/wake.ts';

export type SchedulerDeps = {
  /** Most deliveries held in memory (queued + in flight + awaiting their outcome write). */
  capacity: number;
  /** Most requests in flight across all endpoints. */
  concurrency: number;
  /** Most requests in flight to one endpoint, so one slow receiver cannot take every worker. */
  perEndpointConcurrency: number;
  attempt: (job: Job, signal: AbortSignal) => Promise<Attempt>;
  /** Called once per finished attempt (not for lost leases); the outcome writer calls `written` later. */
  finished: (job: Job, attempt: Attempt) => void;
  log: Logger;
};

export type Scheduler = ReturnType<typeof createScheduler>;

/**
 * The bounded in-memory scheduler. Every job it holds carries a lease this process owns. Jobs wait in one FIFO
 * per endpoint; workers take endpoints round-robin, skipping any at its concurrency cap (head-of-line isolation).
 *
 *   reserve ──► accept ──► queued ──► in flight ──► finished ──► written (place freed)
 *                            │                         └──► lease lost (place freed at once)
 *                            └──► drained: handed back unstarted at shutdown
 */
export function createScheduler(deps: SchedulerDeps) {
  const queues = new Map<string, Job[]>(); // endpointId → jobs not started
  const ready = new Set<string>(); // endpoints with queued jobs under their cap, in round-robin order
  const activeBy = new Map<string, number>();
  const inFlight = new Map<string, { job: Job; abort: AbortController }>();
  let held = 0; // reserved + queued + in flight + awaiting outcome write
  let accepting = true;
  const claimWake = createWake();
  let backlog = false; // the table may hold claimable rows we had no room for
  let idleWaiters: (() => void)[] = [];
  let roomWaiters: { places: number; resolve: () => void }[] = [];

  const caps = new Map<string, number>(); // endpointId → its cap, from the newest job (endpoint rows can change)
  const rates = new Map<string, number>(); // endpointId → requests per second, where limited
  const nextSlotAt = new Map<string, number>(); // rate-limited endpoint → earliest next start (monotonic ms)
  const throttled = new Map<string, NodeJS.Timeout>(); // out of the round-robin until their next slot

  const capOf = (endpointId: string) => caps.get(endpointId) ?? deps.perEndpointConcurrency;
  const makeReady = (endpointId: string) => {
    if (queues.has(endpointId) && !throttled.has(endpointId) && (activeBy.get(endpointId) ?? 0) < capOf(endpointId)) {
      ready.add(endpointId);
    }
  };

  /** Per-endpoint state of an endpoint with nothing queued or in flight (kept while its rate slot is ahead). */
  const forgetIdle = (endpointId: string) => {
    caps.delete(endpointId);
    if ((nextSlotAt.get(endpointId) ?? 0) <= performance.now()) {
      nextSlotAt.delete(endpointId);
      rates.delete(endpointId);
    }
  };

  /** Takes a rate slot for the endpoint, or parks it until its next slot and returns false. */
  const takeSlot = (endpointId: string): boolean => {
    const rate = rates.get(endpointId);
    if (rate === undefined) return true;
    const now = performance.now();
    const at = nextSlotAt.get(endpointId) ?? 0;
    if (at > now) {
      const timer = setTimeout(() => {
        throttled.delete(endpointId);
        makeReady(endpointId);
        pump();
      }, at - now);
      timer.unref();
      throttled.set(endpointId, timer);
      return false;
    }
    nextSlotAt.set(endpointId, Math.max(at, now) + 1000 / rate);
    return true;
  };

  const pump = () => {
    while (accepting && inFlight.size < deps.concurrency) {
      const endpointId = ready.values().next().value;
      if (endpointId === undefined) return;
      ready.delete(endpointId);
      const queue = queues.get(endpointId);
      if (queue === undefined || queue.length === 0 || !takeSlot(endpointId)) continue;
      const job = queue.shift()!;
      if (queue.length === 0) queues.delete(endpointId);
      activeBy.set(endpointId, (activeBy.get(endpointId) ?? 0) + 1);
      makeReady(endpointId);
      start(job);
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
        const active = (activeBy.get(job.endpointId) ?? 1) - 1;
        if (active === 0) activeBy.delete(job.endpointId);
        else activeBy.set(job.endpointId, active);
        if (active === 0 && !queues.has(job.endpointId)) forgetIdle(job.endpointId);
        makeReady(job.endpointId);
        if (attempt.kind === 'lease-lost') release(1);
        else deps.finished(job, attempt);
        pump();
        if (inFlight.size === 0) notifyIdle();
      });
  };

  const enqueue = (job: Job) => {
    let queue = queues.get(job.endpointId);
    if (queue === undefined) queues.set(job.endpointId, (queue = []));
    queue.push(job);
    caps.set(job.endpointId, job.maxInFlight ?? deps.perEndpointConcurrency);
    if (job.ratePerSecond === null) rates.delete(job.endpointId);
    else rates.set(job.endpointId, job.ratePerSecond);
    makeReady(job.endpointId);
  };

  const release = (count: number) => {
    held -= count;
    if (backlog && room() >= Math.max(1, Math.floor(deps.capacity / 4))) claimWake.wake();
    wakeRoomWaiters();
  };

  const room = () => (accepting ? Math.max(0, deps.capacity - held) : 0);

  /** Wakes the fan-out waiting for room once there is enough, or at once when no longer accepting. */
  const wakeRoomWaiters = () => {
    if (roomWaiters.length === 0) return;
    const free = room();
    roomWaiters = roomWaiters.filter((w) => {
      if (accepting && free < w.places) return true;
      w.resolve();
      return false;
    });
  };

  const notifyIdle = () => {
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  };

  return {
    held: () => held,
    room,
    /**
     * Resolves once `places` are free (at most half the capacity is ever waited for), after `timeoutMs`, or at
     * once when the scheduler stops accepting. Lets fan-out insert rows already claimed instead of pending
     * rows that a claim has to write a second time.
     */
    waitForRoom(places: number, timeoutMs: number): Promise<void> {
      const wanted = Math.min(places, Math.ceil(deps.capacity / 2));
      if (!accepting || room() >= wanted) return Promise.resolve();
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
    reserve(max: number): number {
      const granted = Math.min(max, room());
      held += granted;
      if (granted < max) backlog = true;
      return granted;
    },
    /** Takes claimed jobs; `reserved - jobs.length` unused places are handed back. */
    accept(jobs: readonly Job[], reserved: number): void {
      held -= reserved - jobs.length;
      for (const job of jobs) enqueue(job);
      pump();
      wakeRoomWaiters();
    },
    /** Places freed once outcomes are durably written. */
    written: release,
    /** The claim loop sleeps here until `timeoutMs` or until there is room and work may be waiting. */
    waitForClaim: (timeoutMs: number, signal: AbortSignal): Promise<void> => claimWake.wait(signal, timeoutMs),
    wakeClaimer(): void {
      backlog = true;
      if (room() > 0) claimWake.wake();
    },
    /** After a claim returned fewer rows than asked: the table has nothing more due right now. */
    caughtUp(): void {
      backlog = false;
    },
    /** Leases of in-flight jobs that must be renewed. */
    heldIds: (): string[] => [...inFlight.keys(), ...[...queues.values()].flatMap((q) => q.map((j) => j.deliveryId))],
    /** Aborts the in-flight request of a delivery whose lease is gone; its outcome will not be written. */
    abort(deliveryId: string, reason: Error): boolean {
      const entry = inFlight.get(deliveryId);
      if (entry !== undefined) {
        entry.abort.abort(reason);
        return true;
      }
      for (const [endpointId, queue] of queues) {
        const index = queue.findIndex((j) => j.deliveryId === deliveryId);
        if (index < 0) continue;
        queue.splice(index, 1);
        if (queue.length === 0) {
          queues.delete(endpointId);
          ready.delete(endpointId);
        }
        release(1);
        return true;
      }
      return false;
    },
    /** Takes back the queued (unstarted) jobs of an endpoint that was just disabled; the caller releases them. */
    dropEndpoint(endpointId: string): Job[] {
      const dropped = queues.get(endpointId) ?? [];
      queues.delete(endpointId);
      ready.delete(endpointId);
      held -= dropped.length;
      wakeRoomWaiters();
      return dropped;
    },
    /**
     * Stops starting work and hands back every job not yet started (the caller releases their leases).
     * In-flight requests go on; `whenIdle` tells when they have finished.
     */
    drain(): Job[] {
      accepting = false;
      const unstarted = [...queues.values()].flat();
      queues.clear();
      ready.clear();
      for (const timer of throttled.values()) clearTimeout(timer);
      throttled.clear();
      held -= unstarted.length;
      wakeRoomWaiters();
      return unstarted;
    },
    async whenIdle(): Promise<void> {
      if (inFlight.size === 0) return;
      await new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    /** Self-fencing: forgets every queued job (leases may be a peer's by now) and aborts every request. */
    fence(reason: Error): number {
      const dropped = [...queues.values()].flat().length;
      queues.clear();
      ready.clear();
      held -= dropped;
      wakeRoomWaiters();
      for (const { abort } of inFlight.values()) abort.abort(reason);
      return dropped;
    },
    abortAll(reason: Error): void {
      for (const { abort } of inFlight.values()) abort.abort(reason);
    },
  };
}
