import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import { jobKey, type Job, type OutboxEvent } from '../domain.ts';
import { liveSecrets, type CachedEndpoint, type EndpointCache } from '../endpoints/cache.ts';
import type { Logger } from '../log.ts';
import type { Quotas } from '../scheduler/capacity.ts';
import type { Ledger } from './ledger.ts';
import { promoteKeyed } from './promote.ts';
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
    accept(jobs: Job[], reserved: number): void;
    /** Attempts the endpoint finished so far (grows while it holds places). */
    finished(endpointId: string): number;
    quotas(): Quotas;
    wakeClaimer(): void;
  };
  onFannedOut?: (events: number, deliveries: number) => void;
  aboutEndpoint: (event: OutboxEvent) => string | null;
  /** Deliveries (jobKey) already recorded or held: not sent again (a replay). */
  skip?: (key: string) => boolean;
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
  const enabled: Delivery[] = [];
  const parked: Delivery[] = [];
  const ordered: Delivery[] = [];
  for (const event of events) {
    for (const endpoint of deps.endpoints.receivers(event, deps.aboutEndpoint(event))) {
      if (deps.skip?.(`${event.id}/${endpoint.id}`) === true) continue;
      if (!endpoint.enabled) parked.push({ event, endpoint });
      // A key's next event may go only once the one before it is delivered or dead, anywhere in the cluster:
      // that is known of rows, so these are written waiting, in commit order; each key's head is then made due
      // (promoteKeyed) and the claims take them in turn.
      else if (endpoint.ordered && event.orderingKey !== null) ordered.push({ event, endpoint });
      else enabled.push({ event, endpoint });
    }
  }

  // Admitted in rounds: each endpoint within its fair share and the room there is. What does not fit waits for
  // places only while its endpoint keeps finishing attempts (a burst to a fast receiver: its places free within
  // milliseconds), for ROOM_WAIT_MS at most; an endpoint that finished nothing in a step (a slow or hanging
  // receiver's backlog) has the rest written pending at once, so it holds the stream for one step at most (an
  // endpoint that never finished anything yet: PROBE_MS).
  const started = performance.now();
  const deadline = started + Math.min(deps.roomWaitMs, ROOM_WAIT_MS);
  const overflow: Delivery[] = [...parked, ...ordered];
  const resolved: Promise<void>[] = [];
  let admitted = 0;
  let waiting: Delivery[] = enabled;
  let progress = new Map<string, number>(); // attempts finished per endpoint when the step began
  for (;;) {
    const { endpointIds, quotas, fresh } = deps.scheduler.quotas();
    const left = new Map(endpointIds.map((id, i) => [id, quotas[i]!]));
    const fits: Delivery[] = [];
    const over: Delivery[] = [];
    for (const d of waiting) {
      const quota = left.get(d.endpoint.id) ?? fresh;
      left.set(d.endpoint.id, quota - 1);
      (quota > 0 ? fits : over).push(d);
    }
    const reserved = deps.scheduler.reserve(fits.length);
    over.unshift(...fits.splice(reserved)); // no room: in commit order ahead of the endpoint's others
    const jobs = fits.map(({ event, endpoint }) => toJob(event, endpoint, nowMs));
    // Tracked before they can finish: a job may be answered and recorded before accept returns.
    resolved.push(deps.ledger.track(jobs.map(jobKey)));
    deps.scheduler.accept(jobs, reserved);
    admitted += jobs.length;
    const first = progress.size === 0;
    const probing = performance.now() - started < PROBE_MS;
    const moving = (id: string) => {
      const finished = deps.scheduler.finished(id);
      return first || finished > (progress.get(id) ?? 0) || (finished === 0 && probing);
    };
    waiting = [];
    const timeLeft = deadline - performance.now() > 0;
    for (const d of over) (timeLeft && moving(d.endpoint.id) ? waiting : overflow).push(d);
    if (waiting.length === 0) break;
    progress = new Map(waiting.map((d) => [d.endpoint.id, deps.scheduler.finished(d.endpoint.id)]));
    await sleep(STEP_MS);
  }
  if (overflow.length > 0) await insertVisible(deps, overflow);
  if (overflow.length > parked.length) deps.scheduler.wakeClaimer(); // due rows to claim
  deps.onFannedOut?.(events.length, admitted + overflow.length);
  return { resolved: Promise.all(resolved).then(() => {}) };
}

type Delivery = { event: OutboxEvent; endpoint: CachedEndpoint };

/** The longest one batch waits for places (at most PERSIST_AFTER): the stream behind it waits as long. */
const ROOM_WAIT_MS = 500;

/** One step of the wait for places: an endpoint that finishes no attempt in a step is not waited for. */
const STEP_MS = 10;

/** An endpoint that has finished nothing yet (new, or its first requests still connecting) gets this long. */
const PROBE_MS = 100;

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
    traceparent: event.traceparent,
  };
}

/** Inserts pending rows once their events are visible to this session (or after VISIBILITY_WAIT_MS, then anyway). */
async function insertVisible(
  deps: LiveFanOutDeps,
  rows: readonly { event: OutboxEvent; endpoint: CachedEndpoint }[],
): Promise<void> {
  const ids = {
    outboxIds: rows.map((r) => r.event.id),
    endpointIds: rows.map((r) => r.endpoint.id),
    orderingKeys: rows.map((r) => r.event.orderingKey),
    commitLsns: rows.map((r) => r.event.commitLsn ?? null),
  };
  const started = performance.now();
  for (let waitMs = 1; ; waitMs = Math.min(waitMs * 2, 100)) {
    const patient = performance.now() - started < VISIBILITY_WAIT_MS;
    const { missing } = await deps.pool.one(insertPending(ids, patient));
    if (missing === 0 || !patient) {
      if (missing > 0) {
        deps.log.warn(
          { deliveries: rows.length, missing },
          'wrote pending deliveries for rows this session cannot see',
        );
      }
      // Only ordered endpoints' keyed rows are written waiting: theirs are the heads to make due.
      await promoteKeyed(
        deps.pool,
        rows.filter((r) => r.endpoint.ordered).map((r) => r.event),
      );
      return;
    }
    await sleep(waitMs);
  }
}
