import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import type { Logger } from '../log.ts';
import {
  clearExpiredSecrets,
  deleteDead,
  deleteDelivered,
  deleteOrphanedOutbox,
  expireParked,
  pruneIdempotencyKeys,
  type WindowQuery,
} from './queries.ts';

export type RetentionDeps = {
  pool: DatabasePool;
  log: Logger;
  intervalMs: number;
  /** Delivered deliveries, and outbox rows with no delivery left, older than this go; 0: nothing is deleted. */
  deliveredMaxAgeMs: number;
  /** Dead deliveries untouched for longer than this go (usually longer: they are what operators inspect). */
  deadMaxAgeMs: number;
  /** Rows one statement looks at; it locks and deletes at most this many. */
  batch: number;
  /** Called after each batch that deleted rows, so a counter stays exact even when a later batch fails. */
  onDeleted?: (counts: { deliveries: number; outbox: number }) => void;
};

export type RetentionCounts = { deliveries: number; outbox: number };

/**
 * Deletes old rows (unless deliveredMaxAgeMs is 0) and clears expired previous secrets until `signal` aborts; a
 * failed pass is logged, not thrown. Passes never overlap.
 *
 * Several replicas may run this at once, with no coordination beyond row locks: each batch locks only the
 * rows it deletes, FOR UPDATE SKIP LOCKED, so replicas split the work, never wait on each other and never
 * delete a row twice. An advisory lock would buy little: a transaction-level one would have to span the
 * whole pass (long-held locks, the thing batching avoids) and a session-level one would pin a pooled
 * connection per pass and leak if that connection were returned uncleanly. The cost of no lock is that
 * replicas may both walk the same old rows; a walk reads only the old end of the tables (see queries.ts).
 */
export async function runRetention(deps: RetentionDeps, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      await clearSecrets(deps);
      if (deps.deliveredMaxAgeMs > 0) await retentionPass(deps, signal);
    } catch (err) {
      deps.log.error({ err }, 'retention pass failed');
    }
    await sleep(deps.intervalMs, undefined, { signal }).catch(() => {}); // abort ends the wait
  }
}

/** Clears previous secrets whose rotation window has ended; returns how many endpoints had one. */
export async function clearSecrets(deps: Pick<RetentionDeps, 'pool' | 'log'>): Promise<number> {
  const cleared = await deps.pool.oneFirst(clearExpiredSecrets());
  if (cleared > 0) deps.log.info({ endpoints: cleared }, 'expired previous secrets cleared');
  return cleared;
}

/**
 * One full pass: old delivered deliveries, then old dead ones (attempts go with them by cascade), then old
 * outbox rows left with no delivery, so events whose last delivery went in this pass go in this pass too.
 * Pending and delivering deliveries are never deleted, however old; deliveries parked on a disabled endpoint
 * for longer than the dead window first turn dead (deleted a dead window later). Last, idempotency keys older
 * than the longest window. `signal` stops it between batches.
 */
export async function retentionPass(deps: RetentionDeps, signal?: AbortSignal): Promise<RetentionCounts> {
  const counts: RetentionCounts = { deliveries: 0, outbox: 0 };
  try {
    await expireParkedDeliveries(deps, signal);
    const steps = [
      ['deliveries', (after: string) => deleteDelivered(after, deps.batch, deps.deliveredMaxAgeMs)],
      ['deliveries', (after: string) => deleteDead(after, deps.batch, deps.deadMaxAgeMs)],
      ['outbox', (after: string) => deleteOrphanedOutbox(after, deps.batch, deps.deliveredMaxAgeMs)],
    ] as const;
    for (const [what, query] of steps) {
      if (signal?.aborted) break;
      await drain(deps, query, signal, (deleted) => {
        counts[what] += deleted;
        deps.onDeleted?.(
          what === 'deliveries' ? { deliveries: deleted, outbox: 0 } : { deliveries: 0, outbox: deleted },
        );
      });
    }
    if (!signal?.aborted) await forgetIdempotencyKeys(deps, signal);
  } finally {
    // Also after a failed batch: what earlier batches deleted is gone and worth a line.
    if (counts.deliveries > 0 || counts.outbox > 0) deps.log.info(counts, 'retention deleted old rows');
  }
  return counts;
}

/** Parked deliveries of disabled endpoints, parked longer than the dead window, end dead; returns how many. */
export async function expireParkedDeliveries(deps: RetentionDeps, signal?: AbortSignal): Promise<number> {
  let total = 0;
  for (;;) {
    const expired = await deps.pool.oneFirst(expireParked(deps.batch, deps.deadMaxAgeMs));
    total += expired;
    if (expired < deps.batch || signal?.aborted) break;
  }
  if (total > 0) deps.log.warn({ deliveries: total }, 'deliveries parked on disabled endpoints for too long are dead');
  return total;
}

/**
 * Idempotency keys older than the longest window (RETENTION_DELIVERED or RETENTION_DEAD): a key outlives every
 * delivery of its event, so a repeat is recognised at least as long as anything of the first event is kept.
 */
export async function forgetIdempotencyKeys(deps: RetentionDeps, signal?: AbortSignal): Promise<number> {
  const maxAgeMs = Math.max(deps.deliveredMaxAgeMs, deps.deadMaxAgeMs);
  let total = 0;
  for (;;) {
    const deleted = await deps.pool.oneFirst(pruneIdempotencyKeys(deps.batch, maxAgeMs));
    total += deleted;
    if (deleted < deps.batch || signal?.aborted) break;
  }
  if (total > 0) deps.log.info({ keys: total }, 'retention forgot old idempotency keys');
  return total;
}

/** Walks one table window by window from its oldest id until a window is short, holds no old row, or abort. */
async function drain(
  deps: RetentionDeps,
  query: (after: string) => WindowQuery,
  signal: AbortSignal | undefined,
  onDeleted: (deleted: number) => void,
): Promise<void> {
  let after = '0';
  for (;;) {
    const window = await deps.pool.one(query(after));
    if (window.deleted > 0) onDeleted(window.deleted);
    if (window.scanned < deps.batch || !window.anyOld || window.lastId === null || signal?.aborted) return;
    after = window.lastId;
  }
}
