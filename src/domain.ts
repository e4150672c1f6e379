// The relay's shared domain types: what flows between the pipeline's stages. Every stage imports these from
// here and nothing of each other's, so no stage leans on the one beside it.

/** One committed outbox row, as decoded from the WAL. `payload` is the jsonb text exactly as Postgres prints it. */
export type OutboxEvent = {
  id: string;
  eventType: string;
  endpointId: string | null;
  /** Fanned out only to endpoints of this tenant (NULL: only to endpoints without one). */
  tenant: string | null;
  orderingKey: string | null;
  /**
   * The commit LSN of the event's transaction, as the stream's BEGIN announced it (`0/16B3748`): its place in
   * commit order, which ordered endpoints keep per key. Unset when not known (then ordered by outbox id only).
   */
  commitLsn?: string;
  /** W3C trace context the application passed (checked by the table's constraint). */
  traceparent: string | null;
  payload: string;
  createdAtMs: number;
};

/** A circuit breaker's state for one endpoint. */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** Replication role of this process, for readiness and metrics. */
export type StreamState = 'starting' | 'streaming' | 'standby' | 'failed' | 'stopped';

/**
 * A delivery this process may send, with everything needed to send it: one it holds a lease on (a row of
 * webhooks.deliveries), or one sent straight from the stream before any row exists (`deliveryId` null: the slot
 * is the exclusive claim; a row is written with its outcome, or earlier if it outlasts PERSIST_AFTER).
 */
export type Job = {
  deliveryId: string | null;
  outboxId: string;
  endpointId: string;
  /** The endpoint's tenant (its events' tenant too). */
  tenant: string | null;
  url: string;
  /** The current secret, then the previous one while its rotation window lasts: one signature each. */
  secrets: string[];
  /** The endpoint's own cap on requests in flight (NULL: ENDPOINT_CONCURRENCY). */
  maxInFlight: number | null;
  /** The endpoint's requests-per-second limit (NULL: none). */
  ratePerSecond: number | null;
  /** Attempts including this one (incremented at claim time). */
  attempt: number;
  eventType: string;
  /** jsonb text exactly as stored. */
  payload: string;
  createdAtMs: number;
  /** The event's W3C trace context (webhooks.outbox.traceparent): each attempt continues it. */
  traceparent: string | null;
  /** A delivery of an ordered key: the key's next event waits for its outcome. */
  ordered?: boolean;
};

/** What became of one attempt; a receiver's failure is data, not an exception. */
export type Attempt =
  | { kind: 'delivered'; status: number; durationMs: number }
  | {
      kind: 'failed';
      status?: number;
      error: string;
      snippet?: string;
      retryAfterMs?: number;
      /** Retrying cannot help (a refused destination, an invalid secret): dead at once. */
      permanent?: true;
      durationMs: number;
    }
  | { kind: 'lease-lost' }
  /** The endpoint's circuit breaker is open: not sent, no attempt spent, due again when it half-opens. */
  | { kind: 'deferred'; untilMs: number };

/** The row written back for a finished attempt (inserted, for a delivery sent from the stream with no row yet). */
export type Outcome = {
  deliveryId: string | null;
  outboxId: string;
  endpointId: string;
  attempt: number;
  /** Not sent (breaker open): give back the attempt counted at claim time, log nothing. */
  refund: boolean;
  /** The receiver answered 410 Gone: disable the endpoint, park its deliveries. */
  gone: boolean;
  status: 'delivered' | 'pending' | 'dead';
  delayMs: number;
  statusCode: number | null;
  error: string | null;
  snippet: string | null;
  durationMs: number;
  /** Of an ordered key's delivery: once written, the key's next event may be claimed. */
  ordered?: boolean;
};

/** A delivery's identity in memory, row or not: one per event × endpoint. */
export const jobKey = (job: Pick<Job, 'outboxId' | 'endpointId'>): string => `${job.outboxId}/${job.endpointId}`;
