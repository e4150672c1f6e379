import { Webhook } from 'standardwebhooks';
import { expect } from 'vitest';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents, newSecret } from './support/postgres.ts';
import { until } from './support/until.ts';

test('a secret rotated with no overlap signs requests already held in memory from the next second on', async ({
  db,
  receiver,
  startRelay,
}) => {
  receiver.reply(() => ({ status: 204, delayMs: 200 }));
  const endpoint = await addEndpoint(db, receiver.url);
  // One request at a time: the other jobs wait in memory, claimed with the old secret.
  await startRelay({ ENDPOINT_CONCURRENCY: '1' });
  await insertEvents(
    db,
    Array.from({ length: 15 }, (_, i) => ({ type: 'rotate.me', payload: `{"i": ${i}}` })),
  );
  await until(() => receiver.requests.length === 1, { what: 'the first request' });
  // Revoked outright, by plain SQL as an application would (no CLI, no updated_at set by hand).
  const rotated = newSecret();
  await db.app.query('UPDATE webhooks.endpoints SET secret = $1 WHERE id = $2', [rotated, endpoint.id]);
  const rotatedAt = Date.now();
  await until(() => receiver.requests.length === 15, { what: 'all 15', timeoutMs: 15_000 });
  const later = receiver.requests.filter((r) => r.receivedAt > rotatedAt + 1_500);
  expect(later.length).toBeGreaterThan(3); // held in memory across the rotation, sent after it
  for (const r of later) {
    const headers = r.headers as Record<string, string>;
    expect(headers['webhook-signature']!.split(' ')).toHaveLength(1); // only the live secret signs
    expect(() => new Webhook(rotated).verify(r.body, headers)).not.toThrow();
    expect(() => new Webhook(endpoint.secret).verify(r.body, headers)).toThrow();
  }
});
