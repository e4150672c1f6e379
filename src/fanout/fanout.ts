import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import type { Logger } from '../log.ts';
import { jobKey, type Job, type OutboxEvent } from '../domain.ts';
import type { EndpointCache } from '../endpoints/cache.ts';
import type { Quotas } from '../scheduler/capacity.ts';
import type { Ledger } from './ledger.ts';
import { fanOutLive } from './live.ts';
import { promoteKeyed } from './promote.ts';
import { fanOutBatch, recordedDeliveries, type FannedOutRow } from './queries.ts';

export type FanOutDeps = {
  pool: DatabasePool;
  /** This process's lease-owner incarnation id. */
  owner: string;
  leaseMs: number;
  /** FANOUT_ROOM_WAIT: how long a batch may wait for scheduler room (0 = never; the overflow goes pending). */
  roomWaitMs: number;
  log: Logger;
  scheduler: {
    /** Reserves up to `max` places; the caller hands back what it did not fill. */
    reserve(max: number): number;
    room(): number;
    /** Resolves when `places` are free, after `timeoutMs`, or at once once the scheduler stops accepting. */
    waitForRoom(places: number, timeoutMs: number): Promise<void>;
    accept(jobs: Job[], reserved: number): void;
    /** Per-endpoint limits (fair shares) for the rows inserted already claimed. */
    quotas(): Quotas;
    /** Rows were left pending: let the claim loop look now rather than at its next tick. */
    wakeClaimer(): void;
    /** Attempts the endpoint finished so far (grows while it holds places). */
    finished(endpointId: string): number;
    /** Whether a delivery (jobKey) is in flight, or queued with no row yet. */
    holds(key: string): boolean;
    /** A delivery already held from the stream now has a row claimed for this relay (a replay met it). */
    adopt(key: string, deliveryId: string): boolean;
  };
  /** Whether the outcome of a delivery (jobKey) waits to be written: a replay must not send it again. */
  recording?: (key: string) => boolean;
  /** Sending from the stream (rows in a batch's `live` range): the endpoint cache and the ledger of what is unrecorded. */
  live?: { endpoints: EndpointCache; ledger: Ledger; persistAfterMs: number };
  onFannedOut?: (events: number, deliveries: number) => void;
  /**
   * Runs each statement that inserts rows claimed by `owner`, together with taking them into memory, so rows
   * whose result a broken connection lost are released at once (scheduler/orphans.ts). Unset: run as is.
   */
  claiming?: <T>(statement: () => Promise<T>) => Promise<T>;
};

/**
 * How long a batch may stay invisible to this session (its commit streamed, not yet visible) before it is
 * fanned out anyway. Visibility lags by microseconds to milliseconds; a row that never shows up was deleted by
 * retention (a replay of something very old), and the stream must not stall on it.
 */
const VISIBILITY_WAIT_MS = 2_000;

/**
 * Returns the stream's fan-out step: one statement per chunk of the batch, each committed before it resolves
 * (so the stream may then acknowledge), handing what it claimed straight to the scheduler with the payload from
 * the WAL.
 *
 * What does not fit the scheduler's room is inserted pending, and a claim (this relay's or a standby's) writes
 * it a second time. With `roomWaitMs` > 0 (FANOUT_ROOM_WAIT) fan-out first waits up to that long for room and
 * sends the batch in chunks that fit as it frees up, so a burst goes in already claimed, written once: a third
 * less Postgres work per delivery, measured. The cost: standby replicas get nothing to claim unless this relay
 * stalls for that long, so it suits a single relay; with replicas that should share the work, leave it 0.
 * Bounded, so a scheduler that is not draining (a hung endpoint holding every place) delays each batch by at
 * most `roomWaitMs`; the WAL is the queue meanwhile.
 */
export function createFanOut(
  deps: FanOutDeps,
): (events: OutboxEvent[], live?: { from: number; to: number }) => Promise<{ resolved: Promise<void> }> {
  const table = createTableFanOut(deps);
  return async (events, live = { from: 0, to: 0 }) => {
    if (deps.live === undefined || live.to === 0) {
      await table(events);
      return { resolved: Promise.resolve() };
    }
    // Rows before `live.from` were written before this session started (a replay): one read of what the table
    // records of them, and those are not sent again; nor is what this process still holds from an earlier
    // session. Rows from `live.to` on belong to a transaction still open here: through the table.
    const recorded = live.from > 0 ? await recordedKeys(deps.pool, events.slice(0, live.from)) : new Set<string>();
    const held = (key: string) => deps.scheduler.holds(key) || deps.recording?.(key) === true;
    const { resolved } = await fanOutLive(
      {
        ...deps,
        endpoints: deps.live.endpoints,
        ledger: deps.live.ledger,
        roomWaitMs: deps.live.persistAfterMs,
        aboutEndpoint,
        skip: (key) => recorded.has(key) || (live.from > 0 && held(key)),
      },
      events.slice(0, live.to),
    );
    if (live.to < events.length) await table(events.slice(live.to));
    return { resolved };
  };
}

/** The deliveries (jobKey) the table has rows for, of these events. */
async function recordedKeys(pool: DatabasePool, events: readonly OutboxEvent[]): Promise<Set<string>> {
  return new Set(await pool.anyFirst(recordedDeliveries(events.map((e) => e.id))));
}

/** Fan-out through the table: one idempotent INSERT per chunk, committed before it resolves. */
function createTableFanOut(deps: FanOutDeps): (events: OutboxEvent[]) => Promise<void> {
  let perEvent = 1; // deliveries per event lately (a moving average): the room a chunk of events needs
  return async (events) => {
    if (deps.roomWaitMs === 0) {
      await fanOutVisible(deps, events);
      return;
    }
    const deadline = performance.now() + deps.roomWaitMs; // for the whole batch, however many chunks it takes
    for (let start = 0; start < events.length;) {
      const rest = events.length - start;
      const needed = Math.ceil(rest * perEvent);
      const left = deadline - performance.now();
      if (left > 0) await deps.scheduler.waitForRoom(needed, left);
      const room = deps.scheduler.room();
      // Out of time, or not enough room even for one event: fan the rest out at once, the overflow pending
      // (the claim loop takes it later).
      const take =
        room >= needed || room < perEvent || performance.now() >= deadline
          ? rest
          : Math.max(1, Math.floor(room / perEvent));
      const chunk = take === events.length ? events : events.slice(start, start + take);
      const inserted = await fanOutVisible(deps, chunk);
      perEvent = (perEvent + inserted / chunk.length) / 2;
      start += take;
    }
  };
}

/** Fans `events` out once they are all visible to this session (or after VISIBILITY_WAIT_MS); returns rows inserted. */
async function fanOutVisible(deps: FanOutDeps, events: OutboxEvent[]): Promise<number> {
  const started = performance.now();
  for (let waitMs = 1; ; waitMs = Math.min(waitMs * 2, 100)) {
    const patient = performance.now() - started < VISIBILITY_WAIT_MS;
    const { visible, inserted } = await runBatch(deps, events, patient);
    if (visible === events.length || !patient) {
      if (visible !== events.length) {
        deps.log.warn({ events: events.length, visible, inserted }, 'fanned out rows this session cannot see');
      }
      deps.onFannedOut?.(events.length, inserted);
      await promoteKeyed(deps.pool, events);
      return inserted;
    }
    await sleep(waitMs);
  }
}

function runBatch(
  deps: FanOutDeps,
  events: OutboxEvent[],
  requireVisible: boolean,
): Promise<{ visible: number; inserted: number }> {
  const claiming = deps.claiming ?? ((statement) => statement());
  return claiming(async () => {
    const reserved = deps.scheduler.reserve(Number.MAX_SAFE_INTEGER);
    let jobs: Job[] = [];
    let leftPending = false;
    try {
      const rows = await deps.pool.any(
        fanOutBatch(
          {
            ids: events.map((e) => e.id),
            eventTypes: events.map((e) => e.eventType),
            targets: events.map((e) => e.endpointId),
            tenants: events.map((e) => e.tenant),
            abouts: events.map(aboutEndpoint),
            orderingKeys: events.map((e) => e.orderingKey),
            commitLsns: events.map((e) => e.commitLsn ?? null),
          },
          deps.owner,
          deps.leaseMs,
          reserved,
          deps.scheduler.quotas(),
          requireVisible,
        ),
      );
      const insertedRows = rows.filter((r): r is Inserted => r.deliveryId !== null);
      const byId = new Map(events.map((e) => [e.id, e]));
      jobs = insertedRows.flatMap(({ claimed, visible: _visible, ...row }) => {
        const event = byId.get(row.outboxId);
        if (!claimed || event === undefined) return [];
        // A replay of rows an earlier session sent from the stream, still in flight: that job keeps going, now
        // with this row's lease, and its outcome updates the row. No second send.
        // Answered already, its outcome not yet written: that write (an upsert) takes this row over.
        if (deps.scheduler.adopt(jobKey(row), row.deliveryId) || deps.recording?.(jobKey(row))) return [];
        return [
          {
            ...row,
            attempt: 1,
            eventType: event.eventType,
            payload: event.payload,
            createdAtMs: event.createdAtMs,
            traceparent: event.traceparent,
          },
        ];
      });
      leftPending = jobs.length < insertedRows.length;
      return { visible: rows[0]?.visible ?? 0, inserted: insertedRows.length };
    } finally {
      deps.scheduler.accept(jobs, reserved);
      if (leftPending) deps.scheduler.wakeClaimer();
    }
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The endpoint an operational event (relay.*) is about: its payload's `endpoint_id`, which must never receive
 * it. Only relay.* payloads are parsed (small, written by the database's own functions); anything else, or a
 * relay.* payload without a valid id (an application's own event of that name), is about no endpoint.
 */
export function aboutEndpoint(event: Pick<OutboxEvent, 'eventType' | 'payload'>): string | null {
  if (!event.eventType.startsWith('relay.')) return null;
  try {
    const id = (JSON.parse(event.payload) as { endpoint_id?: unknown } | null)?.endpoint_id;
    return typeof id === 'string' && UUID.test(id) ? id : null;
  } catch {
    return null;
  }
}

/** A result row that carries an inserted delivery. */
type Inserted = {
  [K in keyof FannedOutRow]: K extends 'visible' | 'maxInFlight' | 'ratePerSecond' | 'tenant'
    ? FannedOutRow[K]
    : NonNullable<FannedOutRow[K]>;
};
