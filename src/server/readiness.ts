import { sql, type DatabasePool } from 'slonik';
import type { StreamState } from '../domain.ts';
import type { Readiness } from './health.ts';

export type ReadinessDeps = {
  pool: DatabasePool;
  /** The stream's state and, when it failed, why (e.g. the slot is lost: run repair). */
  stream: () => { state: StreamState; problem?: string };
  stopping: () => boolean;
};

/**
 * Ready: not stopping, streaming the slot or standing by, and the database answers. Anything else is 503 with
 * the reason in the body, so `kubectl describe` shows why.
 */
export function createReadiness(deps: ReadinessDeps): Readiness {
  return async () => {
    const { state, problem } = deps.stream();
    const detail = { stream: state, ...(problem === undefined ? {} : { problem }) };
    if (deps.stopping()) return { ready: false, detail: { ...detail, stopping: true } };
    if (state !== 'streaming' && state !== 'standby') return { ready: false, detail };
    try {
      await deps.pool.oneFirst(sql.unsafe`SELECT 1`);
      return { ready: true, detail };
    } catch (err) {
      return { ready: false, detail: { ...detail, database: String(err) } };
    }
  };
}
