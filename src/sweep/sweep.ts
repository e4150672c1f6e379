import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import type { Logger } from '../log.ts';
import { promoteHeads } from '../db/ordering.ts';
import { flushDeadNotices, reclaimExpired } from './queries.ts';

export type SweepDeps = {
  pool: DatabasePool;
  log: Logger;
  sweepIntervalMs: number;
  maxAttempts: number;
  /** Rows went back to pending: the claim loop should look now. */
  onReclaimed: (count: number) => void;
};

const SWEEP_BATCH = 1_000;

/**
 * Reclaims expired leases, and writes the operational events coalescing held back, until `signal` aborts; a
 * failed pass is logged, not thrown.
 */
export async function runSweep(deps: SweepDeps, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      let reclaimed: number;
      do {
        let deadOrdered: readonly string[];
        ({ reclaimed, deadOrdered } = await deps.pool.one(reclaimExpired(deps.maxAttempts, SWEEP_BATCH)));
        if (deadOrdered.length > 0) await deps.pool.one(promoteHeads(deadOrdered));
        if (reclaimed > 0) {
          deps.log.info({ reclaimed }, 'sweep reclaimed deliveries with expired leases');
          deps.onReclaimed(reclaimed);
        }
      } while (reclaimed === SWEEP_BATCH && !signal.aborted);
      const { events } = await deps.pool.one(flushDeadNotices());
      if (events > 0) deps.log.info({ events }, 'sweep wrote held relay.delivery.dead events');
    } catch (err) {
      deps.log.error({ err }, 'sweep pass failed');
    }
    await sleep(deps.sweepIntervalMs, undefined, { signal }).catch(() => {}); // abort ends the wait
  }
}
