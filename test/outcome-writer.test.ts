import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { createLogger } from '../src/log.ts';
import { createOutcomeWriter } from '../src/scheduler/outcome-writer.ts';
import type { Outcome } from '../src/domain.ts';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents, type TestDb } from './support/postgres.ts';
import { until } from './support/until.ts';

const OWNER = 'writer-test';

/** `n` deliveries claimed by OWNER (attempt 1), as the fan-out would leave them. */
async function claimed(db: TestDb, endpointId: string, n: number): Promise<readonly string[]> {
  const ids = await insertEvents(
    db,
    Array.from({ length: n }, (_, i) => ({ type: 'e', payload: `{"i": ${i}}` })),
  );
  return db.pool.anyFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, lease_owner, lease_until)
    SELECT unnest(${sql.array(ids, 'int8')}), ${endpointId}, 'delivering', 1, ${OWNER}, now() + interval '1 minute'
    RETURNING id`);
}

const delivered = (deliveryId: string, endpointId: string): Outcome => ({
  deliveryId,
  outboxId: '0', // not read when the row exists
  endpointId,
  attempt: 1,
  refund: false,
  gone: false,
  status: 'delivered',
  delayMs: 0,
  statusCode: 204,
  error: null,
  snippet: null,
  durationMs: 3,
});

const writerFor = (db: TestDb, lingerMs: number, onWritten: (count: number, written: number) => void = () => {}) => {
  const writer = createOutcomeWriter({
    pool: db.pool,
    owner: OWNER,
    workerId: 'w',
    disablePolicy: { autoDisableMs: 0, autoDisableFailures: 0 },
    log: createLogger('silent'),
    lingerMs,
  });
  return {
    push: writer.push,
    run: (signal: AbortSignal) => writer.run(signal, (w) => onWritten(w.left.length, w.written)),
  };
};

test('outcomes arriving within the linger go out in one statement, and every one is recorded', async ({
  db,
  receiver,
}) => {
  const endpoint = await addEndpoint(db, receiver.url);
  const ids = await claimed(db, endpoint.id, 20);
  const batches: number[] = [];
  // A long linger, so the test does not depend on timing: the second push lands well inside it.
  const writer = writerFor(db, 1_000, (count, written) => batches.push(written === count ? count : -count));
  const stop = new AbortController();
  const loop = writer.run(stop.signal);
  try {
    writer.push(delivered(ids[0]!, endpoint.id));
    await new Promise((resolve) => setImmediate(resolve)); // the loop has taken the first one and lingers
    for (const id of ids.slice(1)) writer.push(delivered(id, endpoint.id));
    await until(() => batches.length > 0, { what: 'a write' });
    expect(batches).toEqual([20]);
    const written = await db.pool.any(sql.type(z.object({ status: z.string(), ms: z.number().nullable() }))`
      SELECT DISTINCT status, last_duration_ms AS ms FROM webhooks.deliveries`);
    expect(written).toEqual([{ status: 'delivered', ms: 3 }]); // a success's duration is kept on the delivery
  } finally {
    stop.abort();
    await loop;
  }
});

test('at shutdown the buffer is written at once, without lingering', async ({ db, receiver }) => {
  const endpoint = await addEndpoint(db, receiver.url);
  const [id] = await claimed(db, endpoint.id, 1);
  const writer = writerFor(db, 60_000);
  const stop = new AbortController();
  stop.abort(); // already stopping: run() drains what is buffered and returns
  writer.push(delivered(id!, endpoint.id));
  const started = performance.now();
  await writer.run(stop.signal);
  expect(performance.now() - started).toBeLessThan(30_000); // not the 60 s linger
  expect(
    await db.pool.oneFirst(sql.type(z.object({ status: z.string() }))`SELECT status FROM webhooks.deliveries`),
  ).toBe('delivered');
});
