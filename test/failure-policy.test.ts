import { pino } from 'pino';
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { loadConfig } from '../src/config.ts';
import { retentionPass } from '../src/retention/retention.ts';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents, type TestDb } from './support/postgres.ts';
import { until } from './support/until.ts';

const DAY_MS = 86_400_000;

const Health = z.object({
  enabled: z.boolean(),
  consecutiveFailures: z.number(),
  failingSince: z.number().nullable(),
  disabledReason: z.string().nullable(),
});
const health = (db: TestDb, id: string) =>
  db.pool.one(sql.type(Health)`
    SELECT enabled, consecutive_failures AS "consecutiveFailures", failing_since AS "failingSince",
           disabled_reason AS "disabledReason"
    FROM webhooks.endpoints WHERE id = ${id}`);
const deliveries = (db: TestDb) =>
  db.pool.any(sql.type(z.object({ status: z.string(), attempts: z.number(), lastError: z.string().nullable() }))`
    SELECT status, attempts, last_error AS "lastError" FROM webhooks.deliveries ORDER BY id`);

test('AUTO_DISABLE_AFTER_FAILURES disables after that many failed attempts in a row; enabling by SQL clears the streak', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  receiver.reply(() => ({ status: 500 }));
  await startRelay({ AUTO_DISABLE_AFTER_FAILURES: '3', RETRY_SCHEDULE: '50ms,50ms,50ms,50ms,50ms' });
  await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  await until(async () => !(await health(db, endpoint.id)).enabled, { what: 'disabled after 3 failures' });
  expect(await health(db, endpoint.id)).toMatchObject({
    consecutiveFailures: 3,
    disabledReason: '3 consecutive failed attempts',
  });
  await until(async () => (await deliveries(db))[0]?.status === 'pending', { what: 'parked' });
  expect(receiver.requests).toHaveLength(3);

  // Re-enabled with plain SQL, as an application would: the old streak is gone, so one more failure does not
  // disable it again; the next attempt succeeds.
  receiver.reply((_r, i) => (i === 3 ? { status: 500 } : { status: 204 }));
  await db.pool.query(sql.unsafe`UPDATE webhooks.endpoints SET enabled = true WHERE id = ${endpoint.id}`);
  expect(await health(db, endpoint.id)).toEqual({
    enabled: true,
    consecutiveFailures: 0,
    failingSince: null,
    disabledReason: null,
  });
  await until(async () => (await deliveries(db))[0]?.status === 'delivered', { what: 'delivered after a retry' });
  expect(await health(db, endpoint.id)).toMatchObject({ enabled: true, consecutiveFailures: 0, failingSince: null });
  expect(receiver.requests).toHaveLength(5);
});

test('a success resets the count: failures that never come 3 in a row never disable', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  // Every message fails twice, then succeeds.
  const seen = new Map<unknown, number>();
  receiver.reply((r) => {
    const n = (seen.get(r.headers['webhook-id']) ?? 0) + 1;
    seen.set(r.headers['webhook-id'], n);
    return { status: n <= 2 ? 503 : 204 };
  });
  await startRelay({ AUTO_DISABLE_AFTER_FAILURES: '3', RETRY_SCHEDULE: '30ms,30ms,30ms' });
  // One message after another: 2 failures, a success, 2 failures, ... (6 failures in all, never 3 in a row).
  for (let i = 1; i <= 3; i++) {
    await insertEvents(db, [{ type: 'x', payload: `{"i":${i}}` }]);
    await until(async () => (await deliveries(db)).filter((d) => d.status === 'delivered').length === i, {
      what: `message ${i} delivered`,
    });
  }
  expect(receiver.requests).toHaveLength(9);
  expect(await health(db, endpoint.id)).toMatchObject({ enabled: true, consecutiveFailures: 0, failingSince: null });
});

test('retention ends deliveries parked longer than RETENTION_DEAD on a disabled endpoint, with the reason', async ({
  db,
}) => {
  const disabledLongAgo = await addEndpoint(db, 'https://gone.example/hooks');
  const disabledLately = await addEndpoint(db, 'https://paused.example/hooks');
  const [oldEvent, newEvent] = await insertEvents(db, [
    { type: 'x', payload: '{}' },
    { type: 'x', payload: '{}' },
  ]);
  const park = (endpointId: string, outboxId: string, parkedAgo: string) =>
    db.app.query(
      `INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, next_attempt_at, created_at, updated_at)
       VALUES ($1, $2, 'infinity', now() - $3::interval, now() - $3::interval)`,
      [outboxId, endpointId, parkedAgo],
    );
  await db.app.query(
    `UPDATE webhooks.endpoints SET enabled = false, disabled_at = now() - interval '40 days' WHERE id = $1`,
    [disabledLongAgo.id],
  );
  await db.app.query(`UPDATE webhooks.endpoints SET enabled = false, disabled_at = now() WHERE id = $1`, [
    disabledLately.id,
  ]);
  await park(disabledLongAgo.id, oldEvent!, '40 days'); // parked for longer than RETENTION_DEAD
  await park(disabledLongAgo.id, newEvent!, '1 day'); // fanned out to it lately, still parked
  await park(disabledLately.id, oldEvent!, '1 day');

  const deps = {
    pool: db.pool,
    log: pino({ level: 'silent' }),
    intervalMs: 10,
    deliveredMaxAgeMs: DAY_MS * 7,
    deadMaxAgeMs: DAY_MS * 30,
    batch: 100,
  };
  await retentionPass(deps);
  const rows = await db.pool.any(sql.type(
    z.object({ endpointId: z.string(), status: z.string(), lastError: z.string().nullable() }),
  )`
    SELECT endpoint_id AS "endpointId", status, last_error AS "lastError" FROM webhooks.deliveries ORDER BY id`);
  expect(rows).toEqual([
    {
      endpointId: disabledLongAgo.id,
      status: 'dead',
      lastError: 'parked longer than RETENTION_DEAD while its endpoint was disabled; replay it to send it',
    },
    { endpointId: disabledLongAgo.id, status: 'pending', lastError: null },
    { endpointId: disabledLately.id, status: 'pending', lastError: null },
  ]);
});

test('AUTO_DISABLE_AFTER_FAILURES works alone, and a bad value names the variable', () => {
  expect(loadConfig({ AUTO_DISABLE_AFTER_FAILURES: '5' }).autoDisableFailures).toBe(5);
  expect(loadConfig({}).autoDisableFailures).toBe(0);
  expect(() => loadConfig({ AUTO_DISABLE_AFTER_FAILURES: 'ten' })).toThrow(
    'AUTO_DISABLE_AFTER_FAILURES: expected a whole number 0-1000000, got "ten"',
  );
});
