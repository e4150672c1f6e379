import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import { jobKey, type Job } from '../domain.ts';
import type { Logger } from '../log.ts';
import type { Ledger } from './ledger.ts';
import { insertClaimed } from './queries.ts';

export type PersisterDeps = {
  pool: DatabasePool;
  owner: string;
  leaseMs: number;
  /** PERSIST_AFTER: a delivery sent from the stream gets a row once it has been held this long unanswered. */
  persistAfterMs: number;
  ledger: Ledger;
  scheduler: { unrecordedSince(cutoffMs: number): Job[]; adopt(key: string, deliveryId: string): boolean };
  log: Logger;
  /** Wraps the statement that inserts rows claimed by this relay (orphan release, see scheduler/orphans.ts). */
  claiming?: <T>(statement: () => Promise<T>) => Promise<T>;
};

/**
 * Bounds how long a slow, hanging or backed-up endpoint holds the slot back: every quarter of PERSIST_AFTER,
 * the deliveries sent from the stream that are still unanswered (in flight or queued) after PERSIST_AFTER get a
 * row, leased to this relay, in one statement. Their requests go on; the slot may then be confirmed past their
 * events, and if this relay dies the sweep redoes them after the lease.
 */
export async function runPersister(deps: PersisterDeps, signal: AbortSignal): Promise<void> {
  const everyMs = Math.max(50, Math.floor(deps.persistAfterMs / 4));
  while (!signal.aborted) {
    await sleep(everyMs, undefined, { signal }).catch(() => {});
    if (signal.aborted) return;
    const jobs = deps.scheduler.unrecordedSince(performance.now() - deps.persistAfterMs);
    if (jobs.length === 0) continue;
    try {
      await persist(deps, jobs);
    } catch (err) {
      deps.log.error({ err, deliveries: jobs.length }, 'writing rows for slow deliveries failed; retrying');
    }
  }
}

async function persist(deps: PersisterDeps, jobs: readonly Job[]): Promise<void> {
  const claiming = deps.claiming ?? ((statement) => statement());
  await claiming(async () => {
    const rows = await deps.pool.any(
      insertClaimed(
        { outboxIds: jobs.map((j) => j.outboxId), endpointIds: jobs.map((j) => j.endpointId) },
        deps.owner,
        deps.leaseMs,
      ),
    );
    for (const row of rows) deps.scheduler.adopt(jobKey(row), row.id);
  });
  // Inserted now, or a row existed already (this delivery's outcome, written meanwhile): recorded either way.
  deps.ledger.recorded(jobs.map(jobKey));
}
