// outbox-relay/client: what an application imports to write events, in its own transaction.
//
// Plain JavaScript with its types beside it (index.d.ts), unlike the rest of src/: this file is the one an
// application loads from node_modules, where Node does not strip TypeScript types (it refuses .ts files under
// node_modules), and it must work for any application's build. No dependencies: any pg-compatible client will do.

const EMIT = `SELECT webhooks.emit(
  event_type => $1, payload => $2::jsonb, tenant => $3, endpoint_id => $4::uuid,
  idempotency_key => $5, ordering_key => $6, traceparent => $7)::text AS id`;

/**
 * Writes one event through `webhooks.emit()` on `client`, inside whatever transaction `client` is in, and
 * returns its outbox id as a string (a bigint: exact beyond 2^53). A repeated `idempotencyKey` (same tenant)
 * returns the first event's id and writes nothing.
 *
 * `payload`: a string is taken as JSON text, sent as is (keeps big integers exact); any other value is
 * serialised with JSON.stringify. To send a JSON string value, pass JSON.stringify('text').
 *
 * @param {{ query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> }} client
 * @param {import('./index.d.ts').EmitOptions} event
 * @returns {Promise<string>}
 */
export async function emit(client, event) {
  if (client === null || typeof client !== 'object' || typeof client.query !== 'function') {
    throw new TypeError('emit: the first argument must be a pg client, pool or transaction (something with query())');
  }
  if (event === null || typeof event !== 'object') throw new TypeError('emit: expected { eventType, payload, ... }');
  const { eventType, payload, tenant, endpointId, idempotencyKey, orderingKey, traceparent } = event;
  if (typeof eventType !== 'string' || eventType.length === 0) {
    throw new TypeError('emit: eventType must be a non-empty string, e.g. "invoice.paid"');
  }
  const values = [
    eventType,
    jsonText(payload),
    optional(tenant, 'tenant'),
    optional(endpointId, 'endpointId'),
    optional(idempotencyKey, 'idempotencyKey'),
    optional(orderingKey, 'orderingKey'),
    optional(traceparent, 'traceparent'),
  ];
  const result = await client.query(EMIT, values);
  const row = result.rows[0];
  if (row === undefined || row === null || typeof row !== 'object' || typeof row.id !== 'string') {
    throw new Error('emit: webhooks.emit() returned no id; is the schema migrated (outbox-relay migrate)?');
  }
  return row.id;
}

/** @param {unknown} payload */
function jsonText(payload) {
  if (typeof payload === 'string') return payload;
  if (payload === undefined) throw new TypeError('emit: payload is required (a JSON-serialisable value, or JSON text)');
  let text;
  try {
    text = JSON.stringify(payload);
  } catch (err) {
    throw new TypeError(
      `emit: payload could not be serialised to JSON (${err instanceof Error ? err.message : String(err)}); ` +
        'pass JSON text as a string to send values JSON.stringify cannot (big integers, for example)',
      { cause: err },
    );
  }
  if (text === undefined) throw new TypeError('emit: payload must be a JSON value (not a function or a symbol)');
  return text;
}

/**
 * @param {unknown} value
 * @param {string} name
 */
function optional(value, name) {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw new TypeError(`emit: ${name} must be a string when given`);
  return value;
}
