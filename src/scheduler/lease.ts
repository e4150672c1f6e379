import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import { RelayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { renewLeases } from './queries.ts';
import type { Scheduler } from './scheduler.ts';

export type HeartbeatDeps = {
  pool: DatabasePool;
  owner: string;
  leaseMs: number;
  heartbeatIntervalMs: number;
  scheduler: Scheduler;
  /** Every delivery this process holds a lease on: queued, in flight, or answered but not yet recorded. */
  heldIds: () => string[];
  log: Logger;
  onLeaseLost?: (count: number) => void;
};

/**
 * Renews every lease this process holds with one statement per interval. A delivery missing from the result
 * lost its lease (a peer reclaimed it): its request is aborted and nothing is written for it. If renewals
 * cannot reach the database for longer than the lease minus two intervals (monotonic clock), every request is
 * aborted: from then on a peer may already own those rows (self-fencing).
 */
export async function runHeartbeat(deps: HeartbeatDeps, signal: AbortSignal): Promise<void> {
  let lastRenewedAt = performance.now();
  const fenceAfterMs = deps.leaseMs - 2 * deps.heartbeatIntervalMs;
  while (!signal.aborted) {
    await sleep(deps.heartbeatIntervalMs, undefined, { signal }).catch(() => {});
    if (signal.aborted) return;
    const ids = deps.heldIds();
    const startedAt = performance.now();
    if (ids.length === 0) {
      lastRenewedAt = startedAt;
      continue;
    }
    try {
      // A black-holed connection never answers and no client-side timeout would fire: give up after one interval.
      const rows = await Promise.race([
        deps.pool.any(renewLeases(deps.owner, deps.leaseMs, ids)),
        sleep(Math.max(deps.heartbeatIntervalMs, 1_000), undefined, { ref: false }).then(() => {
          throw new Error('lease renewal did not answer in time');
        }),
      ]);
      const renewed = new Set(rows.map((r) => r.id));
      lastRenewedAt = startedAt; // the new lease_until was computed after this instant
      let lost = 0;
      for (const id of ids) {
        if (!renewed.has(id) && deps.scheduler.abort(id, new RelayError('LEASE_LOST', 'lease lost'))) lost++;
      }
      if (lost > 0) {
        deps.log.warn({ lost }, 'leases lost; their requests were aborted');
        deps.onLeaseLost?.(lost);
      }
    } catch (err) {
      const silentMs = performance.now() - lastRenewedAt;
      deps.log.error({ err, silentMs: Math.round(silentMs) }, 'renewing leases failed');
      if (silentMs > fenceAfterMs) {
        // Drop the queue too: starting a queued job whose lease may be a peer's would duplicate it.
        const dropped = deps.scheduler.fence(new RelayError('LEASE_LOST', 'lease could not be renewed'));
        deps.log.error({ held: ids.length, dropped }, 'leases may have expired; dropped queued work, aborted requests');
      }
    }
  }
}
