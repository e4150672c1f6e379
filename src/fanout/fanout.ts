import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import type { Logger } from '../log.ts';
import type { OutboxEvent } from '../replication/types.ts';
import type { Job } from '../scheduler/types.ts';
import { fanOutBatch, missingTargets } from './queries.ts';

export type FanOutDeps = {
  pool: DatabasePool;
  /** This process's lease-owner incarnation id. */
  owner: string;
  leaseMs: number;
  log: Logger;
  scheduler: {
    /** Reserves up to `max` places; the caller hands back what it did not fill. */
    reserve(max: number): number;
    accept(jobs: Job[], reserved: number): void;
    /** Rows were left pending: let the claim loop look now rather than at its next tick. */
    wakeClaimer(): void;
  };
  onFannedOut?: (events: number, deliveries: number) => void;
};

/** How long a targeted endpoint may stay invisible before we give up on that one row (see missingTargets). */
const TARGET_VISIBILITY_WAIT_MS = 30_000;

/**
 * Returns the stream's fan-out step: one statement per batch, committed before it resolves (so the stream may
 * then acknowledge), handing what it claimed straight to the scheduler with the payload from the WAL.
 */
export function createFanOut(deps: FanOutDeps): (events: OutboxEvent[]) => Promise<void> {
  return async (events) => {
    const targets = [...new Set(events.flatMap((e) => (e.endpointId === null ? [] : [e.endpointId])))];
    const started = performance.now();
    for (let wait = 5; ; wait = Math.min(wait * 2, 1_000)) {
      const fannedOut = await runBatch(deps, events);
      if (targets.length === 0) return;
      // The outbox row's foreign key guarantees the endpoint exists; if we cannot see it, its transaction's
      // commit is not visible to us yet. Retry the (idempotent) batch until it is.
      const missing = await deps.pool.any(missingTargets(targets));
      if (missing.length === 0) return;
      if (performance.now() - started > TARGET_VISIBILITY_WAIT_MS) {
        deps.log.error(
          { endpointIds: missing.map((m) => m.id), outboxIds: events.filter((e) => e.endpointId).map((e) => e.id) },
          'targeted endpoint never became visible; those rows were not fanned out (run repair once it exists)',
        );
        return;
      }
      if (fannedOut === 0) await sleep(wait);
    }
  };
}

async function runBatch(deps: FanOutDeps, events: OutboxEvent[]): Promise<number> {
  const reserved = deps.scheduler.reserve(Number.MAX_SAFE_INTEGER);
  let jobs: Job[] = [];
  let leftPending = false;
  try {
    const rows = await deps.pool.any(
      fanOutBatch(
        events.map((e) => e.id),
        events.map((e) => e.eventType),
        events.map((e) => e.endpointId),
        deps.owner,
        deps.leaseMs,
        reserved,
      ),
    );
    const byId = new Map(events.map((e) => [e.id, e]));
    jobs = rows.flatMap(({ claimed, ...row }) => {
      const event = byId.get(row.outboxId);
      if (!claimed || event === undefined) return [];
      return [
        { ...row, attempt: 1, eventType: event.eventType, payload: event.payload, createdAtMs: event.createdAtMs },
      ];
    });
    leftPending = jobs.length < rows.length;
    deps.onFannedOut?.(events.length, rows.length);
    return rows.length;
  } finally {
    deps.scheduler.accept(jobs, reserved);
    if (leftPending) deps.scheduler.wakeClaimer();
  }
}
