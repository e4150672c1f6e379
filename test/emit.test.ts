import pg from 'pg';
import { pino } from 'pino';
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { retentionPass } from '../src/retention/retention.ts';
import { test } from './fixtures.ts';
import { addEndpoint, type TestDb } from './support/postgres.ts';
import { until } from './support/until.ts';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

const emitSql = `SELECT webhooks.emit(event_type => $1, payload => $2::jsonb, tenant => $3, idempotency_key => $4)::text AS id`;

async function emitOn(client: pg.Client, key: string | null, tenant: string | null = null, payload = '{}') {
  const { rows } = await client.query<{ id: string }>(emitSql, ['invoice.paid', payload, tenant, key]);
  return rows[0]!.id;
}

const outboxCount = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM webhooks.outbox`);

test('a repeated idempotency key returns the first id, in the same transaction and a later one, and never aborts the caller', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  await startRelay();
  await db.app.query('CREATE TABLE invoices (id int PRIMARY KEY, paid boolean NOT NULL)');
  await db.app.query('INSERT INTO invoices VALUES (42, false)');

  await db.app.query('BEGIN');
  await db.app.query('UPDATE invoices SET paid = true WHERE id = 42');
  const first = await emitOn(db.app, 'inv-42-paid');
  const again = await emitOn(db.app, 'inv-42-paid', null, '{"other": true}');
  await db.app.query('COMMIT'); // the business change commits: nothing aborted the transaction
  expect(again).toBe(first);
  expect((await db.app.query<{ paid: boolean }>('SELECT paid FROM invoices WHERE id = 42')).rows[0]!.paid).toBe(true);

  await db.app.query('BEGIN');
  expect(await emitOn(db.app, 'inv-42-paid', null, '{"third": true}')).toBe(first);
  await db.app.query('COMMIT');

  // The same key in another tenant's scope is another event.
  const otherTenant = await emitOn(db.app, 'inv-42-paid', 'acme');
  expect(otherTenant).not.toBe(first);
  expect(await emitOn(db.app, 'inv-42-paid', 'acme')).toBe(otherTenant);
  expect(await outboxCount(db)).toBe(2);

  await until(() => receiver.requests.length >= 1, { what: 'the event delivered' });
  await new Promise((r) => setTimeout(r, 300)); // a repeat that slipped through would arrive with it
  expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([`msg_${first}`]);
  expect(JSON.parse(receiver.requests[0]!.body)).toMatchObject({ data: {} });
});

test('two transactions emitting one key at once: the second waits, returns the first id, and neither fails', async ({
  db,
}) => {
  const other = new pg.Client({ connectionString: db.url });
  await other.connect();
  try {
    for (const outcome of ['COMMIT', 'ROLLBACK'] as const) {
      const key = `race-${outcome}`;
      await db.app.query('BEGIN');
      const first = await emitOn(db.app, key);
      await other.query('BEGIN');
      const second = emitOn(other, key);
      await new Promise((r) => setTimeout(r, 200)); // the second is waiting on the first's key
      await db.app.query(outcome);
      const secondId = await second;
      await other.query('COMMIT');
      // Committed: the repeat gets the first id. Rolled back: the key was free, the second event is the only one.
      if (outcome === 'COMMIT') expect(secondId).toBe(first);
      else expect(secondId).not.toBe(first);
    }
  } finally {
    await other.end();
  }
  expect(await outboxCount(db)).toBe(2);
});

test('a plain INSERT shares the keys: a repeat is refused with 23505 and a hint, and emit returns its id', async ({
  db,
}) => {
  const { rows } = await db.app.query<{ id: string }>(
    `INSERT INTO webhooks.outbox (event_type, payload, idempotency_key) VALUES ('x', '{}', 'k1') RETURNING id`,
  );
  const inserted = rows[0]!.id;
  const repeat = await db.app
    .query(`INSERT INTO webhooks.outbox (event_type, payload, idempotency_key) VALUES ('x', '{}', 'k1')`)
    .then(
      () => undefined,
      (err: pg.DatabaseError) => err,
    );
  expect(repeat).toMatchObject({
    code: '23505',
    message: `idempotency_key 'k1' was already used by outbox row ${inserted}`,
    hint: "SELECT webhooks.emit(...) returns the first event's id for a repeated key instead of failing",
  });
  expect(await emitOn(db.app, 'k1')).toBe(inserted);
  // Keys are scoped by tenant for plain INSERTs too.
  await db.app.query(
    `INSERT INTO webhooks.outbox (event_type, payload, idempotency_key, tenant) VALUES ('x', '{}', 'k1', 'acme')`,
  );
  // An emit that claims a key and a plain INSERT of the same key later in that transaction: the INSERT is a repeat.
  await db.app.query('BEGIN');
  await emitOn(db.app, 'k2');
  await expect(
    db.app.query(`INSERT INTO webhooks.outbox (event_type, payload, idempotency_key) VALUES ('x', '{}', 'k2')`),
  ).rejects.toThrow("idempotency_key 'k2' was already used");
  await db.app.query('ROLLBACK');
});

test('a key is remembered after retention deletes its event, until the longest retention window has passed', async ({
  db,
}) => {
  const first = await emitOn(db.app, 'kept');
  const old = await emitOn(db.app, 'forgotten');
  // Both events are older than RETENTION_DELIVERED (no deliveries: retention deletes their outbox rows); the
  // first key is younger than RETENTION_DEAD, the second older.
  await db.app.query(`UPDATE webhooks.outbox SET created_at = now() - interval '2 days'`);
  await db.app.query(`UPDATE webhooks.idempotency_keys SET created_at = now() - interval '2 days' WHERE key = 'kept'`);
  await db.app.query(
    `UPDATE webhooks.idempotency_keys SET created_at = now() - interval '8 days' WHERE key = 'forgotten'`,
  );
  const deps = {
    pool: db.pool,
    log: pino({ level: 'silent' }),
    intervalMs: 10,
    deliveredMaxAgeMs: HOUR_MS,
    deadMaxAgeMs: 7 * DAY_MS,
    batch: 100,
  };
  expect(await retentionPass(deps)).toEqual({ deliveries: 0, outbox: 2 });
  expect(await outboxCount(db)).toBe(0);

  expect(await emitOn(db.app, 'kept')).toBe(first); // its event is gone, the key is not
  expect(await outboxCount(db)).toBe(0);
  const fresh = await emitOn(db.app, 'forgotten');
  expect(fresh).not.toBe(old);
  expect(await outboxCount(db)).toBe(1);
});
