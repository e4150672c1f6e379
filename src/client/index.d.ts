// Types of outbox-relay/client (index.js). See README, "Writing events".

/**
 * Anything with pg's `query(text, values)` returning `{ rows }`: a `pg.Client`, a `pg.PoolClient` inside your
 * transaction, a `pg.Pool` (each call is then its own transaction), or a compatible driver.
 */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

export interface EmitOptions {
  /** The event type receivers see as `type`, e.g. `invoice.paid` (1-255 characters). */
  eventType: string;
  /** A JSON-serialisable value, or JSON text as a string (sent as is: big integers stay exact). */
  payload: unknown;
  /** Delivered only to endpoints of this tenant; omitted, only to endpoints without a tenant. */
  tenant?: string | null;
  /** Deliver to this endpoint only (it must belong to the same tenant). */
  endpointId?: string | null;
  /** A repeat (same tenant) within the retention window returns the first event's id and writes nothing. */
  idempotencyKey?: string | null;
  /** Events sharing an ordering key are kept in order for ordered endpoints. */
  orderingKey?: string | null;
  /** W3C trace context (`00-<trace id>-<parent id>-<flags>`) the delivery continues. */
  traceparent?: string | null;
}

/** Writes one event with `webhooks.emit()` in `client`'s transaction; resolves to its outbox id (a bigint, as text). */
export declare function emit(client: Queryable, event: EmitOptions): Promise<string>;
