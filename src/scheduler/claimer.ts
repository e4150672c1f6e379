import type { DatabasePool } from 'slonik';
import type { Logger } from '../log.ts';
import { claimDue } from './queries.ts';
import type { Scheduler } from './scheduler.ts';
import type { Job } from '../domain.ts';

export type ClaimerDeps = {
  pool: DatabasePool;
  owner: string;
  leaseMs: number;
  claimBatch: number;
  claimIntervalMs: number;
  scheduler: Scheduler;
  log: Logger;
};

/**
 * Claims due pending deliveries (retries, rows fan-out had no room for, rows a sweep recovered) whenever the
 * scheduler has room: at once again while claims come back full, else every `claimIntervalMs` or when woken.
 */
export async function runClaimer(deps: ClaimerDeps, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    let full = false;
    const reserved = deps.scheduler.reserve(deps.claimBatch);
    if (reserved > 0) {
      let jobs: readonly Job[] = [];
      try {
        jobs = await deps.pool.any(claimDue(deps.owner, deps.leaseMs, reserved));
      } catch (err) {
        deps.log.error({ err }, 'claiming due deliveries failed');
      } finally {
        deps.scheduler.accept(jobs, reserved);
      }
      full = jobs.length === reserved;
      if (!full) deps.scheduler.caughtUp();
    }
    if (!full) await deps.scheduler.waitForClaim(deps.claimIntervalMs, signal);
  }
}
