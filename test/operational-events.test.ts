import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { newSecret, type TestDb } from './support/postgres.ts';
import type { Received } from './support/receiver.ts';
import { until } from './support/until.ts';

/** An endpoint at `<receiver>/<name>` (path /hooks/<name>), inserted as an application would. */
async function endpoint(db: TestDb, receiverUrl: string, name: string, tenant: string | null, types: string[] | null) {
  const { rows } = await db.app.query<{ id: string }>(
    'INSERT INTO webhooks.endpoints (url, secret, tenant, event_types) VALUES ($1, $2, $3, $4) RETURNING id',
    [`${receiverUrl}/${name}`, newSecret(), tenant, types],
  );
  return rows[0]!.id;
}

type Body = { type: string; data: Record<string, unknown> };
const body = (r: Received) => JSON.parse(r.body) as Body;
const at = (requests: Received[], name: string) => requests.filter((r) => r.path === `/hooks/${name}`).map(body);

test('a 410 endpoint leads to relay.endpoint.disabled at its tenant’s operational endpoints only, never about itself', async ({
  db,
  receiver,
  startRelay,
}) => {
  receiver.reply((r) => (r.path === '/hooks/gone' ? { status: 410 } : { status: 204 }));
  const gone = await endpoint(db, receiver.url, 'gone', 'acme', null);
  await endpoint(db, receiver.url, 'all', 'acme', null); // event_types NULL: every event type, but no relay.*
  const ops = await endpoint(db, receiver.url, 'ops', 'acme', ['relay.endpoint.disabled']);
  const ops2 = await endpoint(db, receiver.url, 'ops2', 'acme', ['relay.*']);
  await endpoint(db, receiver.url, 'globex-ops', 'globex', ['relay.*']);
  await endpoint(db, receiver.url, 'none-ops', null, ['relay.endpoint.disabled']);
  await startRelay();

  await db.app.query(`SELECT webhooks.emit(event_type => 'invoice.paid', payload => '{"id": 1}', tenant => 'acme')`);
  await until(() => at(receiver.requests, 'ops').length === 1 && at(receiver.requests, 'ops2').length === 1, {
    what: 'relay.endpoint.disabled at both operational endpoints',
  });
  for (const name of ['ops', 'ops2']) {
    expect(at(receiver.requests, name)).toEqual([
      {
        type: 'relay.endpoint.disabled',
        timestamp: expect.any(String) as string,
        data: expect.objectContaining({
          endpoint_id: gone,
          tenant: 'acme',
          reason: 'receiver answered 410 Gone',
          disabled_at: expect.any(String) as string,
        }) as Record<string, unknown>,
      },
    ]);
  }

  // An operator disables an operational endpoint: the other one hears of it; it gets no delivery about itself.
  await db.app.query(`UPDATE webhooks.endpoints SET enabled = false, disabled_reason = 'maintenance' WHERE id = $1`, [
    ops,
  ]);
  await until(() => at(receiver.requests, 'ops2').length === 2, { what: 'the second relay.endpoint.disabled' });
  expect(at(receiver.requests, 'ops2')[1]!.data).toMatchObject({ endpoint_id: ops, reason: 'maintenance' });
  // Its row is written with its outcome, which may come a moment after the receiver answered.
  const recipients = await until(
    async () => {
      const rows = await db.pool.anyFirst(sql.type(z.object({ endpointId: z.string() }))`
        SELECT d.endpoint_id AS "endpointId" FROM webhooks.deliveries d JOIN webhooks.outbox o ON o.id = d.outbox_id
        WHERE o.payload ->> 'endpoint_id' = ${ops}`);
      return rows.length > 0 ? rows : undefined;
    },
    { what: 'the row of the delivery about the disabled endpoint' },
  );
  expect(recipients).toEqual([ops2]);

  await new Promise((r) => setTimeout(r, 300)); // anything misrouted would have arrived by now
  expect(at(receiver.requests, 'all').map((b) => b.type)).toEqual(['invoice.paid']);
  expect(at(receiver.requests, 'globex-ops')).toEqual([]);
  expect(at(receiver.requests, 'none-ops')).toEqual([]);
  expect(at(receiver.requests, 'gone').map((b) => b.type)).toEqual(['invoice.paid']);
});

test('a flood of dead deliveries becomes one relay.delivery.dead at once, then one summary per minute with a count', async ({
  db,
  receiver,
  startRelay,
}) => {
  receiver.reply((r) => (r.path === '/hooks/failing' ? { status: 500, body: 'down', delayMs: 30 } : { status: 204 }));
  const failing = await endpoint(db, receiver.url, 'failing', 'acme', ['invoice.paid']);
  await endpoint(db, receiver.url, 'all', 'acme', null);
  const ops = await endpoint(db, receiver.url, 'ops', 'acme', ['relay.delivery.dead']);
  // One attempt at a time and one retry each: the deliveries die one by one, each in its own outcome write.
  await startRelay({ RETRY_SCHEDULE: '20ms', ENDPOINT_CONCURRENCY: '1', BREAKER_VOLUME_THRESHOLD: '1000' });

  const ids: string[] = [];
  await db.app.query('BEGIN');
  for (let i = 0; i < 6; i++) {
    const { rows } = await db.app.query<{ id: string }>(
      `SELECT webhooks.emit(event_type => 'invoice.paid', payload => $1::jsonb, tenant => 'acme')::text AS id`,
      [JSON.stringify({ i })],
    );
    ids.push(rows[0]!.id);
  }
  await db.app.query('COMMIT');
  const dead = () =>
    db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
      SELECT count(*)::int AS n FROM webhooks.deliveries WHERE status = 'dead' AND endpoint_id = ${failing}`);
  await until(async () => (await dead()) === 6, { what: 'all six deliveries dead' });
  await until(() => at(receiver.requests, 'ops').length === 1, { what: 'the first relay.delivery.dead' });
  await new Promise((r) => setTimeout(r, 1_200)); // two sweep passes: nothing more within the minute
  const first = at(receiver.requests, 'ops');
  expect(first).toHaveLength(1);
  expect(first[0]).toMatchObject({
    type: 'relay.delivery.dead',
    data: { endpoint_id: failing, tenant: 'acme', count: 1, last_status_code: 500 },
  });
  expect(first[0]!.data.last_error).toEqual(expect.stringContaining('500'));
  const firstDead = first[0]!.data.outbox_id as string;
  expect(ids).toContain(firstDead);

  // The minute is over (moved on the database clock): the sweep reports the five held back, in one event.
  await db.pool.query(sql.unsafe`UPDATE webhooks.dead_notices SET sent_at = sent_at - interval '1 minute'`);
  await until(() => at(receiver.requests, 'ops').length === 2, { what: 'the held deaths reported' });
  const summary = at(receiver.requests, 'ops')[1]!;
  expect(summary.data).toMatchObject({ endpoint_id: failing, count: 5, last_status_code: 500 });
  const listed = summary.data.deliveries as { outbox_id: string; event_type: string; attempts: number }[];
  // Every death reported exactly once; the top level describes the latest.
  expect([firstDead, ...listed.map((d) => d.outbox_id)].sort()).toEqual([...ids].sort());
  expect(summary.data.outbox_id).toBe(listed.at(-1)!.outbox_id);
  expect(listed[0]).toMatchObject({ event_type: 'invoice.paid', attempts: 2 });

  await new Promise((r) => setTimeout(r, 300));
  expect(at(receiver.requests, 'all').map((b) => b.type)).toEqual(Array(6).fill('invoice.paid'));
  expect(at(receiver.requests, 'ops')).toHaveLength(2);
  // Nothing held any more: the notice is forgotten at the next sweep once its minute is over.
  await db.pool.query(sql.unsafe`UPDATE webhooks.dead_notices SET sent_at = sent_at - interval '1 minute'`);
  await until(
    async () =>
      (await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
        SELECT count(*)::int AS n FROM webhooks.dead_notices`)) === 0,
    { what: 'the notice forgotten' },
  );
  expect(
    await db.pool.anyFirst(sql.type(z.object({ id: z.string() }))`
    SELECT d.endpoint_id AS id FROM webhooks.deliveries d JOIN webhooks.outbox o ON o.id = d.outbox_id
    WHERE o.event_type = 'relay.delivery.dead'`),
  ).toEqual([ops, ops]);
});
