import { expect } from 'vitest';
import { test } from './fixtures.ts';
import { addEndpoint } from './support/postgres.ts';
import { scrape } from './support/relay.ts';
import { until } from './support/until.ts';

const MIB = 2 ** 20;
const PAYLOAD = 512 * 1024;
const EVENTS = 48; // 24 MiB of payloads in one transaction, three times the budget

test('large payloads stay within PAYLOAD_BUDGET: the scheduler holds at most its share, and every one arrives', async ({
  db,
  receiver,
  startRelay,
}) => {
  receiver.reply(() => ({ status: 204, delayMs: 100 }));
  await addEndpoint(db, receiver.url);
  const relay = await startRelay({ PAYLOAD_BUDGET: '8MiB', ENDPOINT_CONCURRENCY: '4' });
  await db.app.query(
    `INSERT INTO webhooks.outbox (event_type, payload)
     SELECT 'big', jsonb_build_object('pad', repeat('x', $1::int)) FROM generate_series(1, $2::int)`,
    [PAYLOAD, EVENTS],
  );
  let peak = 0;
  await until(
    async () => {
      peak = Math.max(peak, await scrape(relay.httpPort, 'outbox_relay_scheduler_held_bytes'));
      return receiver.requests.length === EVENTS;
    },
    { what: `${EVENTS} large deliveries`, timeoutMs: 30_000, intervalMs: 10 },
  );
  // The scheduler's share is three quarters of the budget (6 MiB): about 12 of these payloads, never all 48.
  expect(peak).toBeGreaterThan(2 * PAYLOAD); // the load was real
  // Slack: one fan-out batch (at most an eighth of the budget) admitted on the size estimate, plus one payload.
  expect(peak).toBeLessThanOrEqual(6 * MIB + MIB + PAYLOAD + 1_024);
  expect(receiver.requests.every((r) => r.body.length > PAYLOAD)).toBe(true);
});
