/** A delivery this process holds a lease on, with everything needed to send it. */
export type Job = {
  deliveryId: string;
  outboxId: string;
  endpointId: string;
  url: string;
  secret: string;
  /** Attempts including this one (incremented at claim time). */
  attempt: number;
  eventType: string;
  /** jsonb text exactly as stored. */
  payload: string;
  createdAtMs: number;
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
  | { kind: 'lease-lost' };

/** The row written back for a finished attempt. */
export type Outcome = {
  deliveryId: string;
  attempt: number;
  status: 'delivered' | 'pending' | 'dead';
  delayMs: number;
  statusCode: number | null;
  error: string | null;
  snippet: string | null;
  durationMs: number;
};
