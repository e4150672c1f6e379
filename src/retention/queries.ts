import { sql, type FragmentSqlToken, type IdentifierSqlToken } from 'slonik';
import { z } from 'zod';
import { ago, literalInt } from '../db/fragments.ts';

/**
 * One retention batch: how many rows the window looked at, the last id it looked at (the next window starts
 * after it), whether any of them was old enough to qualify (created before the cutoff), and how many it deleted.
 */
const Window = z.object({
  scanned: z.number(),
  lastId: z.string().nullable(),
  anyOld: z.boolean(),
  deleted: z.number(),
});

/**
 * Deletes the rows of one window of `table`: the next `limit` rows by id after `after`, of which only those
 * matching `eligible` (on alias `t`) are locked and deleted.
 *
 * Why windows by id instead of `WHERE <old> LIMIT n` alone: neither table has an index on the timestamps,
 * so a filtered LIMIT re-reads every kept row (dead, pending, delivered late) in each batch, and its last,
 * short batch reads the whole table, young rows included. A window reads `limit` rows through the primary
 * key and the pass walks the old end of the table once. Ids grow with time (created_at is the inserting
 * transaction's start, so a row with a lower id is never much younger), hence the caller stops at the
 * first window holding no row created before `cutoff`: nothing past it can qualify yet. A row the walk
 * misses (a backdated created_at amid young rows) is reached once its neighbours age.
 *
 * Locks: only eligible rows are locked (pending/delivering rows are never locked, so claims and outcome
 * writes never wait on retention), FOR UPDATE SKIP LOCKED, in one short autocommit statement. A row another
 * retention replica holds is skipped, not waited for, and it deletes it; rows are deleted once.
 */
function deleteWindow(
  table: IdentifierSqlToken,
  after: string,
  limit: number,
  cutoff: FragmentSqlToken,
  eligible: FragmentSqlToken,
) {
  return sql.type(Window)`
    WITH scanned AS MATERIALIZED (
      SELECT id, created_at FROM ${table} WHERE id > ${after}::bigint ORDER BY id LIMIT ${literalInt(limit)}
    ), doomed AS (
      SELECT t.id FROM ${table} t JOIN scanned s ON s.id = t.id
      WHERE ${eligible}
      FOR UPDATE OF t SKIP LOCKED
    ), deleted AS (
      DELETE FROM ${table} t USING doomed WHERE t.id = doomed.id
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM scanned)::int AS scanned,
           (SELECT max(id) FROM scanned)::text AS "lastId",
           coalesce((SELECT bool_or(created_at < ${cutoff}) FROM scanned), false) AS "anyOld",
           (SELECT count(*) FROM deleted)::int AS deleted`;
}

/** A retention batch statement, starting after the given id. */
export type WindowQuery = ReturnType<typeof deleteWindow>;

const deliveries = sql.identifier(['webhooks', 'deliveries']);
const outbox = sql.identifier(['webhooks', 'outbox']);

/**
 * Delivered deliveries delivered more than `maxAgeMs` ago; their delivery_attempts rows go with them
 * (ON DELETE CASCADE). delivered_at >= created_at, so created_at bounds the walk.
 */
export const deleteDelivered = (after: string, limit: number, maxAgeMs: number) =>
  deleteWindow(
    deliveries,
    after,
    limit,
    ago(maxAgeMs),
    sql.fragment`t.status = 'delivered' AND t.delivered_at < ${ago(maxAgeMs)}`,
  );

/** Dead deliveries last changed more than `maxAgeMs` ago (and their attempts). updated_at >= created_at. */
export const deleteDead = (after: string, limit: number, maxAgeMs: number) =>
  deleteWindow(
    deliveries,
    after,
    limit,
    ago(maxAgeMs),
    sql.fragment`t.status = 'dead' AND t.updated_at < ${ago(maxAgeMs)}`,
  );

/**
 * Outbox rows older than `maxAgeMs` with no delivery row left at all: every delivery was delivered or dead
 * and has been cleaned, or the event had no subscriber. A row with any pending, delivering, delivered or dead
 * delivery stays (the claim path reads the payload from here).
 *
 * Caveat: "no delivery rows" cannot tell "fanned out and cleaned" from "not fanned out yet". This is safe only
 * while the relay is never down (or the slot never behind) for longer than `maxAgeMs`: an older event still
 * waiting in the slot would lose its payload, and its deliveries would never be claimed. Likewise `repair`
 * must use a window shorter than `maxAgeMs`, or it fans out again events whose deliveries were cleaned.
 */
export const deleteOrphanedOutbox = (after: string, limit: number, maxAgeMs: number) =>
  deleteWindow(
    outbox,
    after,
    limit,
    ago(maxAgeMs),
    sql.fragment`t.created_at < ${ago(maxAgeMs)}
      AND NOT EXISTS (SELECT 1 FROM webhooks.deliveries d WHERE d.outbox_id = t.id)`,
  );

/**
 * Forgets previous secrets whose rotation window has ended: nothing signs with them any more (the claim reads
 * only a live one), so keeping them only keeps a credential at rest for nobody. Both columns in one update: a
 * check constraint ties them. Cheap: endpoints are few, and only rows with an expired secret are written.
 */
export const clearExpiredSecrets = () => sql.type(z.object({ cleared: z.number() }))`
  WITH cleared AS (
    UPDATE webhooks.endpoints
    SET previous_secret = NULL, previous_secret_expires_at = NULL, updated_at = now()
    WHERE previous_secret_expires_at <= now()
    RETURNING 1
  )
  SELECT count(*)::int AS cleared FROM cleared`;

/**
 * Gives up on deliveries parked (pending on a disabled endpoint) for longer than `maxAgeMs`: they end `dead`
 * with the reason, so an endpoint disabled for good does not grow the table forever (retention then deletes
 * them with the other dead ones). Parking sets updated_at, and a delivery created while its endpoint was
 * disabled is parked from its creation, so updated_at is when it was parked. Only endpoints disabled before the
 * cutoff can have such rows (every row was parked at or after that): the walk goes through their rows on the
 * per-endpoint pending index, and a disabled_at left NULL (an UPDATE that set only `enabled`) is checked too.
 */
export const expireParked = (limit: number, maxAgeMs: number) => sql.type(z.object({ expired: z.number() }))`
  WITH doomed AS (
    SELECT d.id FROM webhooks.endpoints ep
    JOIN webhooks.deliveries d
      ON d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at = 'infinity'
    WHERE NOT ep.enabled AND coalesce(ep.disabled_at < ${ago(maxAgeMs)}, true) AND d.updated_at < ${ago(maxAgeMs)}
    LIMIT ${literalInt(limit)}
    FOR UPDATE OF d SKIP LOCKED
  ), expired AS (
    UPDATE webhooks.deliveries d
    SET status = 'dead', updated_at = now(),
        last_error = 'parked longer than RETENTION_DEAD while its endpoint was disabled; replay it to send it'
    FROM doomed WHERE d.id = doomed.id AND d.status = 'pending'
    RETURNING 1
  )
  SELECT count(*)::int AS expired FROM expired`;

/**
 * Forgets idempotency keys first used more than `maxAgeMs` ago (the longest retention window, so a key is
 * remembered at least as long as any delivery of its event). Oldest first through the created_at index; a
 * key row is written once, by the transaction that first uses it, so its ctid is stable.
 */
export const pruneIdempotencyKeys = (limit: number, maxAgeMs: number) => sql.type(z.object({ deleted: z.number() }))`
  WITH deleted AS (
    DELETE FROM webhooks.idempotency_keys
    WHERE ctid = ANY (ARRAY(SELECT ctid FROM webhooks.idempotency_keys
                            WHERE created_at < ${ago(maxAgeMs)} ORDER BY created_at LIMIT ${literalInt(limit)}))
    RETURNING 1
  )
  SELECT count(*)::int AS deleted FROM deleted`;
