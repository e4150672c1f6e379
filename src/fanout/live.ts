import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import { jobKey, type Job, type OutboxEvent } from '../domain.ts';
import { liveSecrets, type CachedEndpoint, type EndpointCache } from '../endpoints/cache.ts';
import type { Logger } from '../log.ts';
import type { Quotas } from '../scheduler/capacity.ts';
import type { Ledger } from './ledger.ts';
import { insertPending } from './queries.ts';

export type LiveFanOutDeps = {
  pool: DatabasePool;
  endpoints: EndpointCache;
  ledger: Ledger;
  /** PERSIST_AFTER: how long a batch may wait for scheduler room before its overflow is written pending. */
  roomWaitMs: number;
  log: Logger;
  scheduler: {
    reserve(max: number): number;
    room(): number;
    waitForRoom(places: number, timeoutMs: number): Promise<void>;
    accept(jobs: Job[], reserved: number): void;
    quotas(): Quotas;
    wakeClaimer(): void;
  };
  onFannedOut?: (events: number, deliveries: number) => void;
  aboutEndpoint: (event: OutboxEvent) => string | null;
};

/** See fanout.ts: how long fan-out waits for a commit it streamed to become visible to its session. */
const VISIBILITY_WAIT_MS = 2_000;

/**
 * Fans rows out in memory and schedules their deliveries with no database round trip before the request: the
 * endpoints come from the cache the stream keeps in commit order, and the slot is the exclusive claim (only one
 * session streams it; rows written after that session started were never seen by another). Resolves once the
 * jobs are scheduled; `resolved` settles once every delivery is recorded (see ledger.ts).
 *
 * Not sent from memory, and written pending in one statement instead (the claim loop takes them):
 * - deliveries beyond their endpoint's fair share, or beyond the room left after waiting up to `roomWaitMs`;
 * - a disabled endpoint's (parked until it is enabled).
 */
export async function fanOutLive(deps: LiveFanOutDeps, events: readonly OutboxEvent[]) {
  const nowMs = Date.now();
  const enabled: { event: OutboxEvent; endpoint: CachedEndpoint }[] = [];
  const parked: { event: OutboxEvent; endpoint: CachedEndpoint }[] = [];
  for (const event of events) {
    for (const endpoint of deps.endpoints.receivers(event, deps.aboutEndpoint(event))) {
      (endpoint.enabled ? enabled : parked).push({ event, endpoint });
    }
  }

  // Fair shares first: what an endpoint may not take now is written pending at once, whatever the room.
  const { endpointIds, quotas, fresh } = deps.scheduler.quotas();
  const left = new Map(endpointIds.map((id, i) => [id, quotas[i]!]));
  const fair: typeof enabled = [];
  const overflow: typeof enabled = [...parked];
  for (const d of enabled) {
    const quota = left.get(d.endpoint.id) ?? fresh;
    left.set(d.endpoint.id, quota - 1);
    (quota > 0 ? fair : overflow).push(d);
  }
  // The WAL is the queue: under a burst, wait a little for room rather than write rows a claim writes again.
  if (fair.length > deps.scheduler.room() && deps.roomWaitMs > 0) {
    await deps.scheduler.waitForRoom(fair.length, deps.roomWaitMs);
  }
  const reserved = deps.scheduler.reserve(fair.length);
  overflow.push(...fair.splice(reserved));

  const jobs = fair.map(({ event, endpoint }) => toJob(event, endpoint, nowMs));
  let resolved: Promise<void>;
  try {
    if (overflow.length > 0) await insertVisible(deps, overflow);
  } finally {
    // Tracked before they can finish: a job may be answered and recorded before accept returns.
    resolved = deps.ledger.track(jobs.map(jobKey));
    deps.scheduler.accept(jobs, reserved);
  }
  if (overflow.length > parked.length) deps.scheduler.wakeClaimer();
  deps.onFannedOut?.(events.length, jobs.length + overflow.length);
  return { resolved };
}

function toJob(event: OutboxEvent, endpoint: CachedEndpoint, nowMs: number): Job {
  return {
    deliveryId: null,
    outboxId: event.id,
    endpointId: endpoint.id,
    tenant: endpoint.tenant,
    url: endpoint.url,
    secrets: liveSecrets(endpoint, nowMs),
    maxInFlight: endpoint.maxInFlight,
    ratePerSecond: endpoint.ratePerSecond,
    attempt: 1,
    eventType: event.eventType,
    payload: event.payload,
    createdAtMs: event.createdAtMs,
  };
}

/** Inserts pending rows once their events are visible to this session (or after VISIBILITY_WAIT_MS, then anyway). */
async function insertVisible(
  deps: LiveFanOutDeps,
  rows: readonly { event: OutboxEvent; endpoint: CachedEndpoint }[],
): Promise<void> {
  const ids = { outboxIds: rows.map((r) => r.event.id), endpointIds: rows.map((r) => r.endpoint.id) };
  const started = performance.now();
  for (let waitMs = 1; ; waitMs = Math.min(waitMs * 2, 100)) {
    const patient = performance.now() - started < VISIBILITY_WAIT_MS;
    const { missing } = await deps.pool.one(insertPending(ids, patient));
    if (missing === 0) return;
    if (!patient) {
      deps.log.warn({ deliveries: rows.length, missing }, 'wrote pending deliveries for rows this session cannot see');
      return;
    }
    await sleep(waitMs);
  }
}
