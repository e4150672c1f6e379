import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { emit } from 'outbox-relay/client';
import { expect } from 'vitest';
import { test } from './fixtures.ts';
import { addEndpoint } from './support/postgres.ts';
import { until } from './support/until.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

test('inside BEGIN … ROLLBACK nothing is delivered; inside BEGIN … COMMIT it is delivered once', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  await startRelay();
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  try {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const rolledBack = await emit(client, { eventType: 'invoice.paid', payload: { id: 41 } });
      await client.query('ROLLBACK');

      await client.query('BEGIN');
      const id = await emit(client, { eventType: 'invoice.paid', payload: { id: 42 }, idempotencyKey: 'inv-42' });
      // A retry of the same business step in the same transaction: the same event, not a second one.
      expect(await emit(client, { eventType: 'invoice.paid', payload: { id: 42 }, idempotencyKey: 'inv-42' })).toBe(id);
      await client.query('COMMIT');

      expect(id).toMatch(/^\d+$/);
      expect(rolledBack).not.toBe(id);
      await until(() => receiver.requests.length === 1, { what: 'the committed event delivered' });
      await new Promise((r) => setTimeout(r, 300)); // the rolled-back one, or a duplicate, would arrive by now
      expect(receiver.requests).toHaveLength(1);
      expect(receiver.requests[0]!.headers['webhook-id']).toBe(`msg_${id}`);
      expect(JSON.parse(receiver.requests[0]!.body)).toMatchObject({ type: 'invoice.paid', data: { id: 42 } });
    } finally {
      client.release();
    }
  } finally {
    await pool.end();
  }
});

test('a payload given as JSON text goes as is (big integers exact); tenant and target are passed through', async ({
  db,
  receiver,
  startRelay,
}) => {
  const { rows } = await db.app.query<{ id: string }>(
    `INSERT INTO webhooks.endpoints (url, secret, tenant) VALUES ($1, $2, 'acme') RETURNING id`,
    [receiver.url, `whsec_${Buffer.alloc(32, 7).toString('base64')}`],
  );
  const endpointId = rows[0]!.id;
  await startRelay();
  await emit(db.app, {
    eventType: 'ledger.posted',
    payload: '{"amount": 12345678901234567890}',
    tenant: 'acme',
    endpointId,
    orderingKey: 'ledger-1',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  });
  await emit(db.app, { eventType: 'ledger.posted', payload: '{}' }); // no tenant: not for acme's endpoint
  await until(() => receiver.requests.length === 1, { what: 'delivered' });
  expect(receiver.requests[0]!.body).toContain('"data":{"amount": 12345678901234567890}');
  const stored = await db.app.query<{ tenant: string; ordering_key: string; traceparent: string }>(
    `SELECT tenant, ordering_key, traceparent FROM webhooks.outbox WHERE tenant IS NOT NULL`,
  );
  expect(stored.rows).toEqual([
    {
      tenant: 'acme',
      ordering_key: 'ledger-1',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    },
  ]);
});

test('bad input is refused before the database with what to fix', async ({ db }) => {
  await expect(emit(db.app, { eventType: '', payload: {} })).rejects.toThrow('eventType must be a non-empty string');
  await expect(emit(db.app, { eventType: 'x', payload: undefined })).rejects.toThrow('payload is required');
  await expect(emit(db.app, { eventType: 'x', payload: { n: 1n } })).rejects.toThrow(
    'pass JSON text as a string to send values JSON.stringify cannot',
  );
  await expect(emit({} as pg.Client, { eventType: 'x', payload: {} })).rejects.toThrow(
    'the first argument must be a pg client',
  );
  await expect(emit(db.app, { eventType: 'x', payload: {}, traceparent: 'nope' })).rejects.toThrow(
    'outbox_traceparent_must_be_w3c_trace_context',
  );
});

test('package.json exports make `outbox-relay/client` importable by Node itself', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      "const c = await import('outbox-relay/client'); const r = await import('outbox-relay'); " +
        'console.log(typeof c.emit, r.emit === c.emit)',
    ],
    { cwd: ROOT },
  );
  expect(stdout.trim()).toBe('function true');
});
