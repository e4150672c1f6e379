import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';
import { blockedHeads } from '../db/fragments.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';

const Stats = z.object({
  pending: z.number(),
  oldestDueSeconds: z.number(),
  lagBytes: z.number().nullable(),
  retainedBytes: z.number().nullable(),
  blockedKeys: z.number(),
  disabledEndpoints: z.number(),
});

/**
 * One cheap statement per interval (not per scrape, so a scraper cannot load the database): the backlog,
 * the age of the oldest due delivery, the slot's lag and retained WAL as the server sees them, blocked ordered keys
 * and disabled endpoints.
 */
const readStats = (slotName: string) => sql.type(Stats)`
  SELECT
    (SELECT count(*) FROM webhooks.deliveries WHERE status = 'pending')::int AS pending,
    -- One descent of the per-endpoint pending index per enabled endpoint: its oldest due row.
    coalesce((SELECT extract(epoch FROM now() - min(first.next_attempt_at))
              FROM webhooks.endpoints ep
              CROSS JOIN LATERAL (
                SELECT d.next_attempt_at FROM webhooks.deliveries d
                WHERE d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at <= now()
                ORDER BY d.endpoint_id, d.next_attempt_at LIMIT 1) first
              WHERE ep.enabled), 0)::float8 AS "oldestDueSeconds",
    (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)
     FROM pg_replication_slots WHERE slot_name = ${slotName})::float8 AS "lagBytes",
    (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)
     FROM pg_replication_slots WHERE slot_name = ${slotName})::float8 AS "retainedBytes",
    -- Ordered keys held back by a failing head (the partial index of unresolved ordered rows answers it).
    (SELECT count(*) FROM (${blockedHeads}) h)::int AS "blockedKeys",
    -- Endpoints switched off now, by the relay (410, sustained failures) or by an operator: their deliveries park.
    (SELECT count(*) FROM webhooks.endpoints WHERE NOT enabled)::int AS "disabledEndpoints"`;

export async function runDbStats(
  deps: { pool: DatabasePool; slotName: string; statsIntervalMs: number; metrics: Metrics; log: Logger },
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    try {
      const s = await deps.pool.one(readStats(deps.slotName));
      deps.metrics.pending.set(s.pending);
      deps.metrics.oldestPendingSeconds.set(s.oldestDueSeconds);
      if (s.lagBytes !== null) deps.metrics.slotLagBytes.set(s.lagBytes);
      if (s.retainedBytes !== null) deps.metrics.slotRetainedBytes.set(s.retainedBytes);
      deps.metrics.orderedBlockedKeys.set(s.blockedKeys);
      deps.metrics.disabledEndpoints.set(s.disabledEndpoints);
    } catch (err) {
      deps.log.warn({ err }, 'reading database stats for metrics failed');
    }
    await sleep(deps.statsIntervalMs, undefined, { signal }).catch(() => {});
  }
}
