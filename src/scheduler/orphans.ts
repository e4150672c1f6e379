import type { DatabasePool } from 'slonik';
import type { Logger } from '../log.ts';
import { createWake } from '../util/wake.ts';
import { releaseOrphans } from './queries.ts';

export type OrphanGuardOptions = {
  /**
   * How long after a failure a statement its server was still running may yet commit: the client-side
   * statement deadline (statement_timeout ends it on the server before then). One more release runs then.
   */
  settleMs: number;
  /** Monotonic clock (ms). */
  now?: () => number;
};

export type OrphanGuard = ReturnType<typeof createOrphanGuard>;

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2_000;

/**
 * Decides when rows this relay owns but does not hold may be released, without I/O. A claiming statement
 * (fan-out inserting rows already claimed, a claim) commits rows under this relay's owner id, and they enter
 * memory when its result comes back. If the result is lost after the commit (the connection broke), the rows
 * stay `delivering` under this owner, in nobody's memory, never renewed, until their lease expires. The rule:
 * owner id = me and not held ⇒ orphaned ⇒ release at once (`pending`, the attempt given back).
 *
 * When: as soon as a claiming statement (or a hand-back) failed, retried until the database answers; and once
 * more `settleMs` after the last failure, because a statement the server was still running when its connection
 * broke commits only when it ends.
 *
 * The race it closes: rows a claim committed whose result is on its way back are not orphans. So a release
 * waits until no claiming statement is in flight (each one's result accepted into memory, or failed), and
 * claims wait while a release runs.
 *
 *   claiming ──► in flight ──► result accepted into memory
 *                    └──► failed ──► a release is due now (retried until it succeeds), and again at + settleMs
 *   release (exclusive): waits for claims in flight; claims arriving meanwhile wait for it
 */
export function createOrphanGuard(o: OrphanGuardOptions) {
  const now = o.now ?? (() => performance.now());
  let dueAt: number | undefined; // a release is due (a failure, or a retry after a failed release)
  let lateAt: number | undefined; // the release after statements running at the last failure have ended
  let retries = 0;
  let failures = 0; // counts failures, so a release knows whether one happened while it ran
  let inFlight = 0;
  let drained: (() => void) | undefined;
  let releasing: Promise<unknown> | undefined;
  const wake = createWake();

  const failed = (): void => {
    failures++;
    dueAt = now();
    lateAt = dueAt + o.settleMs;
    wake.wake();
  };

  return {
    /**
     * Runs a claiming statement together with taking its result into memory (so a release never sees rows
     * committed but not yet held), after any release in progress. A failure makes a release due.
     */
    claiming: async <T>(statement: () => Promise<T>): Promise<T> => {
      while (releasing !== undefined) await releasing.catch(() => {});
      inFlight++;
      try {
        return await statement();
      } catch (err) {
        failed();
        throw err;
      } finally {
        inFlight--;
        if (inFlight === 0) drained?.();
      }
    },
    /** A statement that may have left rows claimed but not held failed (a hand-back): a release is due. */
    failed,
    /** Milliseconds until a release is due (0: now); undefined when none is. */
    dueInMs(): number | undefined {
      const next = Math.min(dueAt ?? Infinity, lateAt ?? Infinity);
      return next === Infinity ? undefined : Math.max(0, next - now());
    },
    /** Resolves when a failure made a release due, after `timeoutMs`, or when `signal` aborts. */
    changed: (signal: AbortSignal, timeoutMs?: number): Promise<void> => wake.wait(signal, timeoutMs),
    /**
     * Runs `release` once no claiming statement is in flight; claims wait until it settles. Success clears what
     * was due when it started; failure (the database still away) makes it due again shortly, backing off.
     */
    async exclusive<T>(release: () => Promise<T>): Promise<T> {
      const startedAt = now();
      const failuresBefore = failures;
      const run = (async () => {
        if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve));
        drained = undefined;
        return release();
      })();
      releasing = run;
      try {
        const result = await run;
        retries = 0;
        if (failures === failuresBefore) dueAt = undefined;
        if (lateAt !== undefined && lateAt <= startedAt) lateAt = undefined;
        return result;
      } catch (err) {
        dueAt = now() + Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** retries);
        retries++;
        throw err;
      } finally {
        releasing = undefined;
      }
    },
  };
}

export type OrphanReleaseDeps = {
  pool: DatabasePool;
  owner: string;
  guard: OrphanGuard;
  /** Every delivery this process holds a lease on: queued, in flight, or answered but not yet recorded. */
  heldIds: () => string[];
  log: Logger;
  /** Rows went back to pending: the claim loop should look now. */
  onReleased: (count: number) => void;
};

/** Releases orphaned deliveries whenever the guard says a release is due, until `signal` aborts. */
export async function runOrphanRelease(deps: OrphanReleaseDeps, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    const waitMs = deps.guard.dueInMs();
    if (waitMs !== 0) {
      await deps.guard.changed(signal, waitMs);
      continue;
    }
    try {
      // heldIds is read inside the exclusive section: every claim that committed is in memory by then.
      const released = await deps.guard.exclusive(() => deps.pool.oneFirst(releaseOrphans(deps.owner, deps.heldIds())));
      if (released > 0) {
        deps.log.warn({ released }, 'released deliveries a lost database answer left claimed by this relay');
        deps.onReleased(released);
      }
    } catch (err) {
      deps.log.warn({ err }, 'releasing orphaned deliveries failed; retrying');
    }
  }
}
