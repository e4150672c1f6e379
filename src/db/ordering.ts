// Per-key ordering (sql/007_ordering.sql): only a key's head is ever due; the rest of its deliveries wait.
import { sql, type FragmentSqlToken } from 'slonik';
import { z } from 'zod';

/**
 * Makes due the head of every ordered key that the deliveries of these events belong to, if it is waiting.
 * Run by whoever changed a key: after writing keyed rows (fan-out, repair), and after committing an outcome that
 * resolved a head (the outcome writer, the sweep). The trigger promote_next_in_key already promotes inside the
 * resolving statement, but it cannot see rows another session committed after that statement began; the two
 * passes after commit close that gap without a lock: an insert and a resolution of the same key each promote
 * after their own commit, so whichever comes second sees both. Promoting twice changes nothing.
 * `rowsOf`: the events' outbox ids, or a condition on `d` (repair's id range). Returns how many it promoted.
 */
export const promoteHeads = (rowsOf: readonly string[] | FragmentSqlToken) => sql.type(
  z.object({ promoted: z.number() }),
)`
  WITH keys AS MATERIALIZED (
    SELECT DISTINCT d.endpoint_id, d.ordering_key FROM webhooks.deliveries d
    WHERE ${Array.isArray(rowsOf) ? sql.fragment`d.outbox_id = ANY (${sql.array(rowsOf, 'int8')})` : rowsOf}
      AND d.ordering_key IS NOT NULL
  ), heads AS (
    SELECT head.id FROM keys k
    CROSS JOIN LATERAL (
      SELECT h.id FROM webhooks.deliveries h
      WHERE h.endpoint_id = k.endpoint_id AND h.ordering_key = k.ordering_key AND h.status IN ('pending', 'delivering')
      ORDER BY h.order_lsn, h.outbox_id
      LIMIT 1
    ) head
  ), promoted AS (
    -- = ANY (ARRAY(…)): primary-key probes (joined to the CTE, the planner hashed a scan of every delivery: 0.8 s).
    UPDATE webhooks.deliveries d SET next_attempt_at = now(), updated_at = now()
    WHERE d.id = ANY (ARRAY(SELECT heads.id FROM heads)) AND d.status = 'pending' AND d.next_attempt_at = 'infinity'
      AND EXISTS (SELECT 1 FROM webhooks.endpoints ep WHERE ep.id = d.endpoint_id AND ep.enabled)
    RETURNING 1
  )
  SELECT count(*)::int AS promoted FROM promoted`;
