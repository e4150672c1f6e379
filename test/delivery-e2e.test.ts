import { Webhook } from 'standardwebhooks';
import { expect } from 'vitest';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents } from './support/postgres.ts';
import { until } from './support/until.ts';

test('one insert arrives once, with the exact envelope, msg_<id> and a signature standardwebhooks verifies', async ({
  db,
  receiver,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  await startRelay();
  const [id] = await insertEvents(db, [{ type: 'invoice.paid', payload: '{"id": 42, "note": "café"}' }]);
  const { rows } = await db.app.query<{ created_at: Date }>('SELECT created_at FROM webhooks.outbox WHERE id = $1', [
    id,
  ]);
  await until(() => receiver.requests.length === 1, { what: 'one delivery' });
  const req = receiver.requests[0]!;
  expect(req.headers['content-type']).toBe('application/json');
  expect(req.headers['webhook-id']).toBe(`msg_${id}`);
  expect(req.body).toBe(
    `{"type":"invoice.paid","timestamp":"${rows[0]!.created_at.toISOString()}","data":{"id": 42, "note": "café"}}`,
  );
  const verified = new Webhook(endpoint.secret).verify(req.body, req.headers as Record<string, string>);
  expect(verified).toEqual({
    type: 'invoice.paid',
    timestamp: rows[0]!.created_at.toISOString(),
    data: { id: 42, note: 'café' },
  });
  await until(
    async () => (await db.app.query(`SELECT 1 FROM webhooks.deliveries WHERE status = 'delivered'`)).rowCount === 1,
  );
  expect(receiver.requests).toHaveLength(1);
});
