import type { DatabasePool } from 'slonik';
import type { Job } from '../domain.ts';
import type { Logger } from '../log.ts';
import { claimFair, FIRST_ENDPOINT, jobOf } from './queries.ts';
import type { Scheduler } from './scheduler.ts';

export type ClaimerDeps = {
  pool: DatabasePool;
  owner: string;
  leaseMs: number;
  claimBatch: number;
  claimIntervalMs: number;
  scheduler: Scheduler;
  log: Logger;
  /**
   * Runs each claim statement together with taking its rows into memory, so rows whose result a broken
   * connection lost are released at once (orphans.ts). Unset: run as is.
   */
  claiming?: <T>(statement: () => Promise<T>) => Promise<T>;
};

/** Endpoints one claim statement looks at, at most (two index descents each). */
const ENDPOINTS_PER_CLAIM = 256;

/**
 * Claims due pending deliveries (retries, rows fan-out had no room for, rows a sweep recovered) whenever the
 * scheduler has room, endpoint by endpoint in round-robin order and within each endpoint's fair share: at once
 * again while claims come back full, else every `claimIntervalMs` or when woken.
 */
export async function runClaimer(deps: ClaimerDeps, signal: AbortSignal): Promise<void> {
  let cursor = FIRST_ENDPOINT;
  while (!signal.aborted) {
    let again = false;
    const marks = deps.scheduler.backlogMarks();
    const reserved = deps.scheduler.reserve(deps.claimBatch);
    if (reserved > 0) {
      const claiming = deps.claiming ?? ((statement) => statement());
      await claiming(async () => {
        let jobs: Job[] = [];
        try {
          const rows = await deps.pool.any(
            claimFair(deps.owner, deps.leaseMs, reserved, deps.scheduler.quotas(), cursor, ENDPOINTS_PER_CLAIM),
          );
          jobs = rows.flatMap(jobOf);
          const { more, cursor: next } = rows[0] ?? { more: [], cursor: null };
          // More may be claimable now: the claim filled its total, stopped before the end of the endpoint list,
          // or started mid-list (the endpoints before its cursor have not been looked at this round).
          again = jobs.length === reserved || next !== null || cursor !== FIRST_ENDPOINT;
          cursor = next ?? FIRST_ENDPOINT;
          deps.scheduler.claimed(more, again, marks);
        } finally {
          deps.scheduler.accept(jobs, reserved);
        }
      }).catch((err: unknown) => deps.log.error({ err }, 'claiming due deliveries failed'));
    }
    if (!again) await deps.scheduler.waitForClaim(deps.claimIntervalMs, signal);
  }
}
