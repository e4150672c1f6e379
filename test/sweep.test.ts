// The sweep's statement on its own: a lease that expired mid-attempt (the relay crashed or froze) sends the
// delivery back to pending, or ends it dead when that attempt was its last; either way the crashed attempt's
// duration is unknown, so an earlier attempt's must not stand in for it.
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import { reclaimExpired } from '../src/sweep/queries.ts';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents } from './support/postgres.ts';

const MAX_ATTEMPTS = 3;

test('an expired lease: pending again below the last attempt, dead at it; the crashed attempt has no duration', async ({
  db,
  receiver,
}) => {
  const { id: endpointId } = await addEndpoint(db, receiver.url);
  const [early, last] = await insertEvents(db, [
    { type: 'e', payload: '{}' },
    { type: 'e', payload: '{}' },
  ]);
  // Both failed once before (a 503 that took 120 ms), then were claimed again by a relay that died.
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, lease_owner, lease_until,
                                     last_status_code, last_error, last_duration_ms)
    VALUES (${early!}, ${endpointId}, 'delivering', 2, 'gone', now() - interval '1 second', 503, 'HTTP 503', 120),
           (${last!}, ${endpointId}, 'delivering', ${MAX_ATTEMPTS}, 'gone', now() - interval '1 second', 503,
            'HTTP 503', 120)`);

  const result = await db.pool.one(reclaimExpired(MAX_ATTEMPTS, 100));
  expect(result.reclaimed).toBe(2);
  const rows = await db.pool.any(sql.type(
    z.object({
      outboxId: z.string(),
      status: z.string(),
      owner: z.string().nullable(),
      error: z.string().nullable(),
      ms: z.number().nullable(),
    }),
  )`
    SELECT outbox_id::text AS "outboxId", status, lease_owner AS owner, last_error AS error, last_duration_ms AS ms
    FROM webhooks.deliveries ORDER BY outbox_id`);
  expect(rows).toEqual([
    { outboxId: early, status: 'pending', owner: null, error: 'HTTP 503', ms: null },
    {
      outboxId: last,
      status: 'dead',
      owner: null,
      error: 'lease expired during the last attempt (relay crashed or was frozen)',
      ms: null,
    },
  ]);
});
