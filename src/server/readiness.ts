import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type DatabasePool } from 'slonik';
import type { StreamState } from '../domain.ts';
import type { Logger } from '../log.ts';
import type { Readiness } from './health.ts';

export type ReadinessDeps = {
  pool: DatabasePool;
  /** The stream's state and, when it failed, why (e.g. the slot is lost: run repair). */
  stream: () => { state: StreamState; problem?: string };
  stopping: () => boolean;
  log: Logger;
  /** Pause between database pings. */
  pingIntervalMs?: number;
  /** A ping not answered by then counts as failed (a black-holed link never answers on its own). */
  pingTimeoutMs?: number;
};

export type ReadinessProbe = {
  /** What /readyz answers: synchronous, from the state below, so a probe never touches the database. */
  check: Readiness;
  /** The supervised loop that pings the database and records when it last answered. */
  run: (signal: AbortSignal) => Promise<void>;
};

const PING_INTERVAL_MS = 1_000;
const PING_TIMEOUT_MS = 1_000;

/**
 * Ready: not stopping, streaming the slot or standing by, and the database answered a ping recently. The
 * database is pinged by one loop (one statement a second, never more than one at a time), not
 * per request, so a flood of probes costs the pool nothing and /readyz answers at once even while the link
 * hangs. A ping a little late is tolerated (a busy pool is not an outage): the database counts as unreachable
 * once no ping succeeded for a ping period, its deadline and a second more (3 s): a silent link reads 503
 * within about 3 s. Anything else is 503 with a fixed reason in the body, so `kubectl
 * describe` shows why; the database's own error text goes to the log, once per outage.
 */
export function createReadiness(deps: ReadinessDeps): ReadinessProbe {
  const intervalMs = deps.pingIntervalMs ?? PING_INTERVAL_MS;
  const timeoutMs = deps.pingTimeoutMs ?? PING_TIMEOUT_MS;
  const staleAfterMs = intervalMs + timeoutMs + 1_000;
  let lastOkAt: number | undefined; // performance.now() of the last answered ping
  let failing = false; // the last ping failed (logged once per outage)
  let pending: Promise<unknown> | undefined; // a ping still waiting for its answer

  const database = (): 'ok' | 'unreachable' | 'unknown' => {
    if (lastOkAt === undefined) return failing ? 'unreachable' : 'unknown';
    return performance.now() - lastOkAt <= staleAfterMs ? 'ok' : 'unreachable';
  };

  const check: Readiness = () => {
    const { state, problem } = deps.stream();
    const detail = { stream: state, ...(problem === undefined ? {} : { problem }), database: database() };
    if (deps.stopping()) return { ready: false, detail: { ...detail, stopping: true } };
    const ready = (state === 'streaming' || state === 'standby') && detail.database === 'ok';
    return { ready, detail };
  };

  const ping = async (signal: AbortSignal): Promise<void> => {
    // A ping that never came back still holds a pool connection: wait for it rather than take another.
    const query = pending ?? deps.pool.oneFirst(sql.unsafe`SELECT 1`);
    pending = query;
    query.then(
      () => (pending = pending === query ? undefined : pending),
      () => (pending = pending === query ? undefined : pending),
    );
    const deadline = sleep(timeoutMs, undefined, { ref: false, signal }).then(() => {
      throw new Error(`no answer within ${timeoutMs} ms`);
    });
    deadline.catch(() => {}); // lost the race, or aborted
    try {
      await Promise.race([query, deadline]);
      lastOkAt = performance.now();
      if (failing) deps.log.info('database answers pings again');
      failing = false;
    } catch (err) {
      if (signal.aborted) return;
      if (!failing) deps.log.warn({ err, staleAfterMs }, 'database ping failed; /readyz turns 503 if it stays down');
      failing = true;
    }
  };

  const run = async (signal: AbortSignal): Promise<void> => {
    while (!signal.aborted) {
      await ping(signal);
      await sleep(intervalMs, undefined, { signal }).catch(() => {}); // abort ends the wait
    }
  };

  return { check, run };
}
