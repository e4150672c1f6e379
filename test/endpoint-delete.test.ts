import pg from 'pg';
import { pino } from 'pino';
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { retentionPass } from '../src/retention/retention.ts';
import { test } from './fixtures.ts';
import { cli } from './support/cli.ts';
import { addEndpoint, countWhere, insertEvents, type TestDb } from './support/postgres.ts';
import { until } from './support/until.ts';

const Delivery = z.object({
  outboxId: z.string(),
  endpointId: z.string(),
  status: z.string(),
  lastError: z.string().nullable(),
  leaseOwner: z.string().nullable(),
});
const deliveriesOf = (db: TestDb, endpointId: string) =>
  db.pool.any(sql.type(Delivery)`
    SELECT outbox_id AS "outboxId", endpoint_id AS "endpointId", status, last_error AS "lastError",
           lease_owner AS "leaseOwner"
    FROM webhooks.deliveries WHERE endpoint_id = ${endpointId} ORDER BY outbox_id`);

const deleteEndpoint = (db: TestDb, id: string) =>
  db.app.query('DELETE FROM webhooks.endpoints WHERE id = $1', [id]).then((r) => r.rowCount);

/** A delivery written directly (no relay) for an event with no subscriber: `status`, due in an hour. */
async function seed(db: TestDb, endpointId: string, status: string, error: string | null = null) {
  const { rows } = await db.app.query<{ outboxId: string }>(
    `WITH o AS (INSERT INTO webhooks.outbox (event_type, payload) VALUES ('seeded', '{}') RETURNING id)
     INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, next_attempt_at, last_error, delivered_at)
     SELECT o.id, $1, $2, 1, now() + interval '1 hour', $3, CASE WHEN $2 = 'delivered' THEN now() END FROM o
     RETURNING outbox_id AS "outboxId"`,
    [endpointId, status, error],
  );
  return rows[0]!.outboxId;
}

/** A second session of its own, for interleaving two transactions. */
async function session(db: TestDb) {
  const client = new pg.Client({ connectionString: db.url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** Waits until a session of this database is blocked on a lock (the statement under test waits for the other). */
const untilBlocked = (db: TestDb, what: string) =>
  until(
    async () =>
      (await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'`)) === 1,
    { what },
  );

test('deleting an endpoint keeps its deliveries: open ones end dead "endpoint deleted", delivered ones stay, and a running relay sends none of them', async ({
  db,
  receiver,
  startRelay,
}) => {
  const gone = await addEndpoint(db, `${receiver.url}/gone`, { eventTypes: ['to.gone'] });
  const kept = await addEndpoint(db, `${receiver.url}/kept`, { eventTypes: ['to.kept'] });
  let goneRequests = 0;
  receiver.reply((r) => (r.path === '/hooks/gone' && ++goneRequests === 2 ? 'hang' : { status: 204 }));
  await startRelay({ RETRY_SCHEDULE: '200ms,200ms,200ms', PERSIST_AFTER: '200ms' });
  const [delivered] = await insertEvents(db, [{ type: 'to.gone', payload: '{"n":1}' }]);
  await until(async () => (await countWhere(db, 'delivered')) === 1, { what: 'the first delivered' });
  const [inFlight] = await insertEvents(db, [{ type: 'to.gone', payload: '{"n":2}' }]);
  await until(() => goneRequests === 2, { what: 'the second request, hanging' });
  await until(async () => (await countWhere(db, 'delivering')) === 1, { what: 'the hanging request leased' });
  const retrying = await seed(db, gone.id, 'pending', 'HTTP 500'); // a retry due in an hour

  expect(await deleteEndpoint(db, gone.id)).toBe(1);

  // The relay's next lease renewal finds the in-flight delivery no longer its own: it aborts the request, and
  // its outcome changes nothing.
  await until(() => receiver.aborted === 1, { what: 'the in-flight request aborted' });
  await insertEvents(db, [{ type: 'to.kept', payload: '{}' }]);
  await until(async () => (await countWhere(db, 'delivered')) === 2, { what: 'the kept endpoint served' });
  await db.pool.query(
    sql.unsafe`UPDATE webhooks.deliveries SET next_attempt_at = now() WHERE endpoint_id = ${gone.id}`,
  );
  await insertEvents(db, [{ type: 'to.kept', payload: '{}' }]); // one more claim pass after that
  await until(async () => (await countWhere(db, 'delivered')) === 3, { what: 'the kept endpoint served again' });

  expect(await deliveriesOf(db, gone.id)).toEqual([
    { outboxId: delivered, endpointId: gone.id, status: 'delivered', lastError: null, leaseOwner: null },
    { outboxId: inFlight, endpointId: gone.id, status: 'dead', lastError: 'endpoint deleted', leaseOwner: null },
    { outboxId: retrying, endpointId: gone.id, status: 'dead', lastError: 'endpoint deleted', leaseOwner: null },
  ]);
  expect(receiver.requests.filter((r) => r.path === '/hooks/gone')).toHaveLength(2);
  expect(await deliveriesOf(db, kept.id)).toHaveLength(2);
});

test('a delivery inserted while its endpoint is being deleted never stays open: it ends dead, or is not inserted', async ({
  db,
}) => {
  // Insert first, delete waits for it: the delete then ends the new delivery too.
  const first = await addEndpoint(db, 'https://example.com/first');
  const fanOut = await session(db);
  await fanOut.query('BEGIN');
  await fanOut.query(
    `INSERT INTO webhooks.deliveries (outbox_id, endpoint_id) VALUES (101, $1)`, // as fan-out does
    [first.id],
  );
  const deleting = deleteEndpoint(db, first.id);
  await untilBlocked(db, 'the delete waiting for the insert');
  await fanOut.query('COMMIT');
  expect(await deleting).toBe(1);
  expect(await deliveriesOf(db, first.id)).toMatchObject([{ status: 'dead', lastError: 'endpoint deleted' }]);

  // Delete first, the insert waits for it: the delivery is skipped, since there is no one to deliver to.
  const second = await addEndpoint(db, 'https://example.com/second');
  await db.app.query('BEGIN');
  await db.app.query('DELETE FROM webhooks.endpoints WHERE id = $1', [second.id]);
  const inserting = fanOut.query(
    `INSERT INTO webhooks.deliveries (outbox_id, endpoint_id) VALUES (102, $1) ON CONFLICT DO NOTHING`,
    [second.id],
  );
  await untilBlocked(db, 'the insert waiting for the delete');
  await db.app.query('COMMIT');
  expect((await inserting).rowCount).toBe(0);
  expect(await deliveriesOf(db, second.id)).toEqual([]);
  await fanOut.end();
});

test('an outbox row targeting an endpoint no longer blocks deleting it; a row targeting a missing endpoint is refused', async ({
  db,
}) => {
  const target = await addEndpoint(db, 'https://example.com/target');
  await insertEvents(db, [{ type: 'x', payload: '{}', endpointId: target.id }]);
  expect(await deleteEndpoint(db, target.id)).toBe(1);
  await expect(insertEvents(db, [{ type: 'x', payload: '{}', endpointId: target.id }])).rejects.toMatchObject({
    code: '23503',
    message: `webhooks.outbox.endpoint_id ${target.id} is not an endpoint`,
  });
});

test('replay says how many matching deliveries belong to deleted endpoints and leaves them dead', async ({ db }) => {
  const gone = await addEndpoint(db, 'https://example.com/gone');
  const live = await addEndpoint(db, 'https://example.com/live');
  await seed(db, gone.id, 'dead', 'HTTP 500');
  await seed(db, gone.id, 'dead', 'HTTP 500');
  await seed(db, live.id, 'dead', 'HTTP 500');
  await deleteEndpoint(db, gone.id);

  const dry = await cli(db, ['replay', '--all', '--dry-run', '--json']);
  expect(dry.code, dry.stderr).toBe(0);
  expect(dry.json()).toEqual({ dryRun: true, matched: 1, parked: 0, moved: 0, ofDeletedEndpoints: 2 });
  const text = await cli(db, ['replay', '--endpoint', gone.id]);
  expect(text.code, text.stderr).toBe(0);
  expect(text.stdout).toBe(
    '0 dead deliveries moved back to pending, due now\n' +
      '2 matching deliveries belong to deleted endpoints and were not replayed\n',
  );
  const all = await cli(db, ['replay', '--all', '--json']);
  expect(all.json()).toEqual({ dryRun: false, moved: 1, parked: 0, batches: 1, ofDeletedEndpoints: 2 });
  expect((await deliveriesOf(db, gone.id)).map((d) => d.status)).toEqual(['dead', 'dead']);
  expect((await deliveriesOf(db, live.id)).map((d) => d.status)).toEqual(['pending']);
  const listed = await cli(db, ['deliveries', 'list', '--endpoint', gone.id, '--json']);
  expect(listed.json<{ deliveries: unknown[] }>().deliveries).toHaveLength(2); // the history stays queryable
});

test("retention removes a deleted endpoint's deliveries and their attempts once they are old, not before", async ({
  db,
}) => {
  const gone = await addEndpoint(db, 'https://example.com/gone');
  const open = await seed(db, gone.id, 'pending', 'HTTP 500');
  await seed(db, gone.id, 'delivered');
  await db.app.query(
    `INSERT INTO webhooks.delivery_attempts (delivery_id, attempt, error)
     SELECT id, 1, 'HTTP 500' FROM webhooks.deliveries WHERE outbox_id = $1`,
    [open],
  );
  await deleteEndpoint(db, gone.id);
  const deps = {
    pool: db.pool,
    log: pino({ level: 'silent' }),
    intervalMs: 10,
    deliveredMaxAgeMs: 3_600_000,
    deadMaxAgeMs: 86_400_000,
    batch: 100,
  };
  expect(await retentionPass(deps)).toEqual({ deliveries: 0, outbox: 0 });
  expect(await deliveriesOf(db, gone.id)).toHaveLength(2);

  await db.app.query(
    `UPDATE webhooks.deliveries SET created_at = now() - interval '2 days', updated_at = now() - interval '2 days',
                                    delivered_at = now() - interval '2 days'`,
  );
  await db.app.query(`UPDATE webhooks.outbox SET created_at = now() - interval '2 days'`);
  expect(await retentionPass(deps)).toEqual({ deliveries: 2, outbox: 2 });
  expect(await deliveriesOf(db, gone.id)).toEqual([]);
  const attempts = await db.app.query('SELECT 1 FROM webhooks.delivery_attempts');
  expect(attempts.rowCount).toBe(0);
});
