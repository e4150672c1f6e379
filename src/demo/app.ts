// The application's side of the contract: plain SQL on webhooks.endpoints and webhooks.outbox, nothing from the
// relay's code, so what the demo prints is exactly what an application would run.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';

/** 20 digits, far above 2^53: JSON.parse would round it, so its arrival proves the payload bytes stay exact. */
export const BIG_AMOUNT = '12345678901234567890';
export const NON_ASCII = 'Zoë Łukasiewicz, Kraków';

export type EndpointSpec = { name: string; eventTypes: readonly string[] | null; failFirstAttempt: boolean };
export type DemoEvent = { type: string; payload: string };

export const ENDPOINTS: readonly EndpointSpec[] = [
  { name: 'billing', eventTypes: ['invoice.paid'], failFirstAttempt: true },
  { name: 'audit', eventTypes: null, failFirstAttempt: false },
];

export const EVENTS: readonly DemoEvent[] = [
  { type: 'invoice.paid', payload: `{"invoice": "INV-1001", "amount": ${BIG_AMOUNT}, "currency": "JPY"}` },
  { type: 'customer.created', payload: `{"customer": "cus_42", "name": "${NON_ASCII}"}` },
  { type: 'invoice.paid', payload: '{"invoice": "INV-1002", "amount": 4200, "currency": "EUR"}' },
  { type: 'customer.created', payload: '{"customer": "cus_43", "name": "Ana Núñez"}' },
  { type: 'invoice.paid', payload: '{"invoice": "INV-1003", "amount": 990, "note": "Danke schön ☕"}' },
];

export const ENDPOINT_SQL = 'INSERT INTO webhooks.endpoints (url, secret, event_types) VALUES ($1, $2, $3)';
export const OUTBOX_SQL = 'INSERT INTO webhooks.outbox (event_type, payload) VALUES ($1, $2::jsonb)';

/** A Standard Webhooks secret: whsec_ + base64 of 32 random bytes. */
export const newSecret = (): string => `whsec_${randomBytes(32).toString('base64')}`;

export const subscribes = (endpoint: EndpointSpec, eventType: string): boolean =>
  endpoint.eventTypes === null || endpoint.eventTypes.includes(eventType);

/** Registers one endpoint as an application would (event_types NULL = every event type). */
export async function registerEndpoint(
  client: pg.Client,
  endpoint: EndpointSpec,
  url: string,
  secret: string,
): Promise<void> {
  await client.query(ENDPOINT_SQL, [url, secret, endpoint.eventTypes]);
}

/** Commits one event in its own transaction, where the application's business writes would also go. */
export async function commitEvent(client: pg.Client, event: DemoEvent): Promise<string> {
  await client.query('BEGIN');
  try {
    const { rows } = await client.query<{ id: string }>(`${OUTBOX_SQL} RETURNING id`, [event.type, event.payload]);
    await client.query('COMMIT');
    const id = rows[0]?.id;
    if (id === undefined) throw new Error('INSERT … RETURNING id returned no row');
    return id;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

export type DeliveryCounts = { total: number; delivered: number; dead: number; failedAttempts: number };

const COUNTS_SQL = `
  SELECT count(*)::int AS total,
         count(*) FILTER (WHERE status = 'delivered')::int AS delivered,
         count(*) FILTER (WHERE status = 'dead')::int AS dead,
         (SELECT count(*)::int FROM webhooks.delivery_attempts) AS "failedAttempts"
  FROM webhooks.deliveries`;

export type WaitResult = { counts: DeliveryCounts; problem?: string };

/**
 * Polls webhooks.deliveries until `expected` rows are delivered, one goes dead, or the deadline passes (then
 * `problem` says which); throws only when `signal` aborts. Polling the table, not the receiver, also waits for
 * the relay's own outcome writes.
 */
export async function waitForDeliveries(
  client: pg.Client,
  expected: number,
  { timeoutMs, signal }: { timeoutMs: number; signal: AbortSignal },
): Promise<WaitResult> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const counts = (await client.query<DeliveryCounts>(COUNTS_SQL)).rows[0];
    if (counts === undefined) throw new Error('counting deliveries returned no row');
    if (counts.dead > 0) return { counts, problem: `${counts.dead} deliveries went dead` };
    if (counts.delivered >= expected) return { counts };
    if (performance.now() > deadline) {
      const problem = `timed out after ${timeoutMs / 1000} s: ${counts.delivered}/${expected} delivered`;
      return { counts, problem };
    }
    await sleep(50, undefined, { signal });
  }
}
