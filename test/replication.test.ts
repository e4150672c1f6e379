import pg from 'pg';
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents, type TestDb } from './support/postgres.ts';
import { until } from './support/until.ts';

const confirmedAtLeast = (db: TestDb, lsn: string) =>
  db.pool.oneFirst(sql.type(z.object({ ok: z.boolean() }))`
    SELECT coalesce(confirmed_flush_lsn >= ${lsn}::pg_lsn, false) AS ok
    FROM pg_replication_slots WHERE slot_name = ${db.slotName}`);

test('a 20-digit integer and non-ASCII text arrive byte-exact, from the WAL and from the table on retry', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  receiver.reply((_req, i) => (i === 0 ? { status: 500 } : { status: 204 }));
  await startRelay();
  const payload = '{"amount": 12345678901234567890, "name": "Zoë — 東京 🚀", "tiny": 1e-7}';
  const [id] = await insertEvents(db, [{ type: 'money.moved', payload }]);
  const stored = (
    await db.app.query<{ p: string }>('SELECT payload::text AS p FROM webhooks.outbox WHERE id = $1', [id])
  ).rows[0]!.p;
  await until(() => receiver.requests.length === 2, { what: 'first attempt and retry' });
  for (const r of receiver.requests) {
    // First attempt: payload text decoded from the WAL; retry: payload::text read back by the claim query.
    const data = r.body.slice(r.body.indexOf(',"data":') + ',"data":'.length, -1);
    expect(data).toBe(stored);
    expect(data).toContain('12345678901234567890');
    expect(data).toContain('Zoë — 東京 🚀');
  }
});

test('rows inserted while the relay is stopped are all delivered once it starts (slot replay)', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  const first = await startRelay();
  await first.stop();
  const ids = await insertEvents(
    db,
    Array.from({ length: 500 }, (_, i) => ({ type: 'batch.item', payload: `{"i": ${i}}` })),
  );
  await startRelay();
  await until(async () => (await countWhere(db, 'delivered')) === 500, { what: '500 delivered' });
  expect(receiver.requests).toHaveLength(500);
  expect(new Set(receiver.requests.map((r) => r.headers['webhook-id']))).toEqual(new Set(ids.map((i) => `msg_${i}`)));
});

test('20,000 rows committed one per transaction from 4 connections are every one delivered', async ({
  db,
  receiver,
  startRelay,
}) => {
  // Fan-out runs as soon as each commit streams in, often before other sessions can see the row: none may be lost.
  await addEndpoint(db, receiver.url);
  await startRelay({
    SCHEDULER_CAPACITY: '5000',
    DELIVERY_CONCURRENCY: '128',
    ENDPOINT_CONCURRENCY: '128',
  });
  const writers = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      return c;
    }),
  );
  try {
    await Promise.all(
      writers.map(async (c, w) => {
        for (let i = 0; i < 5_000; i++) {
          await c.query(`INSERT INTO webhooks.outbox (event_type, payload) VALUES ('load', $1::jsonb)`, [
            `{"w":${w},"i":${i}}`,
          ]);
        }
      }),
    );
    await until(async () => (await countWhere(db, 'delivered')) === 20_000, {
      what: '20,000 delivered',
      timeoutMs: 120_000,
      intervalMs: 250,
    });
    expect(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size).toBe(20_000);
  } finally {
    await Promise.all(writers.map((c) => c.end()));
  }
}, 180_000);

test('an idle outbox still lets the slot advance while other tables write a lot of WAL', async ({ db, startRelay }) => {
  await startRelay();
  await db.app.query('CREATE TABLE public.noise (id bigserial PRIMARY KEY, pad text)');
  await db.app.query(`INSERT INTO public.noise (pad) SELECT repeat('x', 500) FROM generate_series(1, 40000)`);
  const { rows } = await db.app.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  await until(() => confirmedAtLeast(db, rows[0]!.lsn), {
    what: 'confirmed_flush_lsn past the noise',
    timeoutMs: 30_000,
  });
});
