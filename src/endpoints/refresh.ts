import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';
import type { Logger } from '../log.ts';
import type { EndpointViews } from './views.ts';

const Changed = z.object({
  id: z.string(),
  url: z.string(),
  secret: z.string(),
  previousSecret: z.string().nullable(),
  previousExpiresAtMs: z.number().nullable(),
});

/**
 * Endpoints changed since `sinceMs` (database clock), re-read with a minute of overlap: updated_at is the
 * changing transaction's start, so one that committed late is still seen on a later pass.
 */
const changedSince = (sinceMs: number) => sql.type(Changed)`
  SELECT id::text, url, secret, previous_secret AS "previousSecret",
         previous_secret_expires_at AS "previousExpiresAtMs"
  FROM webhooks.endpoints
  WHERE updated_at > to_timestamp(${sinceMs}::float8 / 1000) - interval '1 minute'`;

const clock = sql.type(z.object({ nowMs: z.number() }))`SELECT (extract(epoch FROM now()) * 1000)::float8 AS "nowMs"`;

export type EndpointRefreshDeps = { pool: DatabasePool; views: EndpointViews; intervalMs: number; log: Logger };

/**
 * Keeps `views` current: one cheap statement per interval reads the endpoints changed lately (a secret rotated,
 * a URL changed). Starts from the relay's start: jobs claimed before a change carry the old values, later ones
 * the new; the views override both with the newest. A failed pass is logged and retried next interval.
 */
export async function runEndpointRefresh(deps: EndpointRefreshDeps, signal: AbortSignal): Promise<void> {
  let sinceMs: number | undefined;
  while (!signal.aborted) {
    try {
      const now = await deps.pool.oneFirst(clock);
      if (sinceMs !== undefined) deps.views.apply(await deps.pool.any(changedSince(sinceMs)));
      sinceMs = now;
    } catch (err) {
      deps.log.warn({ err }, 'reading changed endpoints failed');
    }
    await sleep(deps.intervalMs, undefined, { signal }).catch(() => {});
  }
}
