// The operator operations, one implementation behind the three surfaces: the CLI (src/cli/), the management API
// and the console (src/console/). Replay rules, batching, page limits and secret rotation live here only, so a
// surface can phrase a request its own way but can never apply a different rule.
import { randomBytes } from 'node:crypto';
import type { DatabasePool } from '../db/pool.ts';
import { RelayError } from '../errors.ts';
import { parseSecret } from '../signing/sign.ts';
import {
  attemptsOf,
  backlog,
  countReplayable,
  deliveryCounts,
  disableEndpoint,
  enableEndpoint,
  endpointHealth,
  endpointTotals,
  listDeliveries,
  listEndpoints,
  liveRelays,
  orderedEndpoints,
  RELAYS_SHOWN,
  replayBatch,
  rotateSecret,
  slotStatus,
  STATUSES,
  type AttemptRow,
  type DeliveryFilter,
  type DeliveryRow,
  type EndpointHealthRow,
  type EndpointRow,
  type EndpointTotals,
  type OrderedRow,
  type RelayRow,
  type SlotRow,
  type Status,
} from './queries.ts';

const DAY_MS = 86_400_000;

/** The limits every surface enforces (the CLI's flags, the API's schemas and the console's forms read them). */
export const LIMITS = Object.freeze({
  /** Rows on one page of endpoints or deliveries. */
  pageMax: 1000,
  /** Delivery ids in one replay by ids. */
  replayIdsMax: 10_000,
  /** Rows moved by one replay statement: each batch commits on its own, so a replay holds no long lock. */
  replayBatchDefault: 500,
  replayBatchMax: 10_000,
  /** How long a rotated-out secret still signs unless told otherwise, and at most. */
  keepPreviousDefaultMs: DAY_MS,
  keepPreviousMaxMs: 365 * DAY_MS,
  /** Failed attempts shown with one delivery (the newest). */
  attemptsMax: 100,
});

export const DEFAULT_DISABLE_REASON = 'disabled by operator';

const invalid = (message: string) => new RelayError('INVALID_REQUEST', message);

/** A new secret: `whsec_` + base64 of 32 random bytes, what the standardwebhooks libraries expect. */
export const generateSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

/** A secret an operator supplied, checked the way the relay will read it; undefined: generate one. */
export function checkedSecret(secret: string | undefined): string {
  if (secret === undefined) return generateSecret();
  const parsed = parseSecret(secret);
  if (!Buffer.isBuffer(parsed)) throw invalid(`secret: ${parsed.error}`);
  return secret;
}

export type ReplayRequest = {
  filter: DeliveryFilter;
  /** Required to replay with no filter at all: every dead delivery. */
  all?: boolean;
  dryRun: boolean;
  batch?: number;
};

export type ReplayResult = {
  dryRun: boolean;
  /** Dry run: how many a replay would move now. Otherwise: how many were moved. */
  matched: number;
  moved: number;
  /** Of those, belonging to disabled endpoints: they stay parked until the endpoint is enabled. */
  parked: number;
  batches: number;
  /** Matching dead deliveries of deleted endpoints: kept as history, never replayed. */
  ofDeletedEndpoints: number;
};

export type StatusReport = {
  slotName: string;
  slot: SlotRow;
  deliveries: Record<Status, number>;
  backlog: { due: number; oldestDueAgeSeconds: number | null; parked: number };
  endpointTotals: EndpointTotals;
  endpoints: EndpointHealthRow[];
  /** Live relays (at most RELAYS_SHOWN + 1: one more says there are more); each takes a share of every limit. */
  relays: RelayRow[];
  /** Ordered endpoints (most blocked keys first, up to the endpoint limit). */
  ordered: OrderedRow[];
  /** Events may be lost: the slot is missing or invalidated. */
  problems: string[];
  warnings: string[];
};

export type DeliveryPage = { deliveries: DeliveryRow[]; truncated: boolean; nextCursor: string | null };

export type Operations = ReturnType<typeof createOperations>;

/** The operations over one pool; `slotName` is the slot whose health `status` reports. */
export function createOperations(pool: DatabasePool, { slotName }: { slotName: string }) {
  return {
    /** The slot, the delivery backlog and the first `endpointLimit` endpoints (troubled ones first). */
    async status(endpointLimit = 50): Promise<StatusReport> {
      const limit = pageSize(endpointLimit, 50);
      const [slot, counts, pending, totals, endpoints, relays, ordered] = await Promise.all([
        pool.one(slotStatus(slotName)),
        pool.any(deliveryCounts()),
        pool.one(backlog()),
        pool.one(endpointTotals()),
        pool.any(endpointHealth(limit)),
        pool.any(liveRelays(RELAYS_SHOWN + 1)),
        pool.any(orderedEndpoints(limit)),
      ]);
      const deliveries = Object.fromEntries(
        STATUSES.map((s) => [s, counts.find((c) => c.status === s)?.n ?? 0]),
      ) as Record<Status, number>;
      return {
        slotName,
        slot,
        deliveries,
        backlog: pending,
        endpointTotals: totals,
        endpoints: [...endpoints],
        relays: [...relays],
        ordered: [...ordered],
        problems: slotProblems(slotName, slot),
        warnings:
          slot.walStatus === 'unreserved'
            ? [`replication slot "${slotName}" has fallen behind max_slot_wal_keep_size and may be lost soon`]
            : [],
      };
    },

    async listEndpoints({ tenant, limit }: { tenant?: string; limit?: number } = {}) {
      const size = pageSize(limit, 100);
      const rows = await pool.any(listEndpoints(size + 1, tenant));
      return { endpoints: rows.slice(0, size), truncated: rows.length > size };
    },

    /** One endpoint with its last hour and backlog; null when there is none with that id. */
    endpoint: (id: string): Promise<EndpointHealthRow | null> => pool.maybeOne(endpointHealth(1, { id })),

    /** Endpoints with their last hour and backlog (or one tenant's), troubled ones first. */
    async endpointsHealth({ tenant, limit }: { tenant?: string; limit?: number } = {}) {
      const size = pageSize(limit, 100);
      const rows = await pool.any(endpointHealth(size + 1, { tenant }));
      return { endpoints: rows.slice(0, size), truncated: rows.length > size };
    },

    /** Its pending deliveries stay parked until it is enabled again. */
    disableEndpoint: (id: string, reason?: string): Promise<EndpointRow | null> =>
      pool.maybeOne(disableEndpoint(id, reason?.trim() || DEFAULT_DISABLE_REASON)),

    /** Parked deliveries go out; `parked` counts them. Clears the failing streak. */
    enableEndpoint: (id: string) => pool.maybeOne(enableEndpoint(id)),

    /**
     * A new secret (given, or generated); the old one still signs for `keepPreviousMs` (0: dropped now). The
     * result is the only place the new secret appears in full: surfaces show it once and never again.
     */
    async rotateSecret(id: string, { secret, keepPreviousMs }: { secret?: string; keepPreviousMs?: number } = {}) {
      const keepMs = keepPreviousMs ?? LIMITS.keepPreviousDefaultMs;
      if (!Number.isSafeInteger(keepMs) || keepMs < 0 || keepMs > LIMITS.keepPreviousMaxMs) {
        throw invalid(`keep previous: expected 0 to ${LIMITS.keepPreviousMaxMs / DAY_MS} days`);
      }
      const fresh = checkedSecret(secret);
      const row = await pool.maybeOne(rotateSecret(id, fresh, keepMs));
      return row === null ? null : { endpoint: row, secret: fresh, droppedLivePrevious: row.droppedLivePrevious };
    },

    /** Newest first; `cursor` (a page's nextCursor) continues after that page. */
    async listDeliveries(filter: DeliveryFilter, { limit, cursor }: { limit?: number; cursor?: string } = {}) {
      const size = pageSize(limit, 50);
      if (cursor !== undefined && !/^[1-9]\d{0,18}$/.test(cursor)) throw invalid('cursor: not one this API returned');
      const rows = await pool.any(listDeliveries({ ...filter, beforeId: cursor }, size + 1));
      const deliveries = rows.slice(0, size);
      const truncated = rows.length > size;
      return {
        deliveries,
        truncated,
        nextCursor: truncated ? (deliveries.at(-1)?.id ?? null) : null,
      } satisfies DeliveryPage;
    },

    /** One delivery with its failed attempts (oldest first); null when there is none with that id. */
    async delivery(id: string): Promise<{ delivery: DeliveryRow; attempts: AttemptRow[] } | null> {
      const delivery = await pool.maybeOne(listDeliveries({ ids: [id] }, 1));
      if (delivery === null) return null;
      return { delivery, attempts: [...(await pool.any(attemptsOf(id, LIMITS.attemptsMax)))] };
    },

    /**
     * Moves DEAD deliveries matching every filter back to pending, due now, with a fresh attempt budget; with no
     * filter only when `all` says so. Batches of `batch` rows, each its own short statement, so an interrupted
     * replay is safe to rerun. A dry run counts what a replay would move now, with the same conditions.
     */
    async replay({ filter, all = false, dryRun, batch }: ReplayRequest): Promise<ReplayResult> {
      const replayFilter = { ...filter, status: undefined, beforeId: undefined };
      if (Object.values(replayFilter).every((v) => v === undefined) && !all) {
        throw invalid('refusing to replay every dead delivery: give a filter, or "all" to mean it');
      }
      if (replayFilter.ids !== undefined && replayFilter.ids.length > LIMITS.replayIdsMax) {
        throw invalid(`ids: at most ${LIMITS.replayIdsMax} ids`);
      }
      const size = batch ?? LIMITS.replayBatchDefault;
      if (!Number.isSafeInteger(size) || size < 1 || size > LIMITS.replayBatchMax) {
        throw invalid(`batch: expected 1-${LIMITS.replayBatchMax}`);
      }
      if (dryRun) {
        const { moved: matched, parked, ofDeletedEndpoints } = await pool.one(countReplayable(replayFilter));
        return { dryRun, matched, moved: 0, parked, batches: 0, ofDeletedEndpoints };
      }
      let moved = 0;
      let parked = 0;
      let batches = 0;
      // Each batch commits on its own; a short batch means nothing matching is left (or the rest is locked).
      for (;;) {
        const result = await pool.one(replayBatch(replayFilter, size));
        batches++;
        moved += result.moved;
        parked += result.parked;
        if (result.moved < size) break;
      }
      // They never move, so counting them after the batches counts what the batches left behind.
      const { ofDeletedEndpoints } = await pool.one(countReplayable(replayFilter));
      return { dryRun, matched: moved, moved, parked, batches, ofDeletedEndpoints };
    },
  };
}

function pageSize(limit: number | undefined, fallback: number): number {
  const size = limit ?? fallback;
  if (!Number.isSafeInteger(size) || size < 1 || size > LIMITS.pageMax) {
    throw invalid(`limit: expected a whole number 1-${LIMITS.pageMax}`);
  }
  return size;
}

/** Events committed while the slot was missing or lost may never be fanned out: the report says how to repair. */
export function slotProblems(name: string, slot: SlotRow): string[] {
  const repair = 'events committed meanwhile may not be fanned out; run "outbox-relay repair --since <duration>"';
  if (!slot.exists) return [`replication slot "${name}" does not exist: ${repair}`];
  if (slot.walStatus === 'lost') return [`replication slot "${name}" is invalidated (wal_status lost): ${repair}`];
  return [];
}
