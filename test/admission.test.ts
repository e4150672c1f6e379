// The burst admission rule of fan-out from the stream (src/fanout/live.ts): a batch bigger than the room waits,
// in short steps, only while its endpoint keeps finishing attempts; an endpoint that finishes nothing gets a short
// probe, and then the rest of the batch is written pending for the claims. A real database takes the pending rows;
// the scheduler is a stand-in whose places free as its "requests" finish.
import { sql } from 'slonik';
import { expect } from 'vitest';
import { z } from 'zod';
import type { Job, OutboxEvent } from '../src/domain.ts';
import { createEndpointCache } from '../src/endpoints/cache.ts';
import { aboutEndpoint } from '../src/fanout/fanout.ts';
import { createLedger } from '../src/fanout/ledger.ts';
import { fanOutLive } from '../src/fanout/live.ts';
import { createLogger } from '../src/log.ts';
import { test } from './fixtures.ts';
import { addEndpoint, asEvents, insertEvents, type TestDb } from './support/postgres.ts';

/** A scheduler of `places` places whose n-th job finishes after `finishMs(n)` ms (never when undefined). */
function standIn(places: number, finishMs: (nth: number) => number | undefined) {
  let held = 0;
  let finished = 0;
  const accepted: Job[] = [];
  return {
    accepted,
    scheduler: {
      room: () => places - held,
      reserve: (max: number) => Math.min(max, places - held),
      accept(jobs: Job[]) {
        held += jobs.length;
        for (const job of jobs) {
          const ms = finishMs(accepted.push(job));
          if (ms === undefined) continue;
          setTimeout(() => {
            held--;
            finished++;
          }, ms);
        }
      },
      finished: () => finished,
      quotas: () => ({ endpointIds: [], quotas: [], fresh: places }),
      wakeClaimer: () => {},
    },
  };
}

async function burst(
  db: TestDb,
  receiverUrl: string,
  n: number,
): Promise<{ events: OutboxEvent[]; endpointId: string }> {
  const { id: endpointId } = await addEndpoint(db, receiverUrl);
  const ids = await insertEvents(
    db,
    Array.from({ length: n }, (_, i) => ({ type: 'burst', payload: `{"i": ${i}}` })),
  );
  return { events: asEvents(ids, 'burst'), endpointId };
}

const pendingRows = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM webhooks.deliveries WHERE status = 'pending'`);

async function fanOut(db: TestDb, events: OutboxEvent[], scheduler: ReturnType<typeof standIn>['scheduler']) {
  const endpoints = createEndpointCache();
  endpoints.load(
    (
      await db.pool.any(sql.type(z.object({ id: z.string(), url: z.string(), secret: z.string() }))`
      SELECT id::text, url, secret FROM webhooks.endpoints`)
    ).map((e) => ({
      ...e,
      tenant: null,
      eventTypes: null,
      enabled: true,
      ordered: false,
      previousSecret: null,
      previousExpiresAtMs: null,
      maxInFlight: null,
      ratePerSecond: null,
    })),
  );
  const started = performance.now();
  await fanOutLive(
    {
      pool: db.pool,
      endpoints,
      ledger: createLedger(),
      roomWaitMs: 2_000,
      log: createLogger('silent'),
      scheduler,
      aboutEndpoint,
    },
    events,
  );
  return performance.now() - started;
}

test('a burst to an endpoint that keeps finishing attempts waits for places: all of it sent from memory', async ({
  db,
  receiver,
}) => {
  const { events } = await burst(db, receiver.url, 60);
  const { scheduler, accepted } = standIn(10, () => 5); // each request done in 5 ms: places free within a step
  const tookMs = await fanOut(db, events, scheduler);
  expect(accepted).toHaveLength(60); // none written pending
  expect(await pendingRows(db)).toBe(0);
  expect(tookMs).toBeLessThan(500); // the wait is bounded at 500 ms, and it was not needed in full
});

test('an endpoint that finishes nothing gets a short probe, then the rest of the batch is written pending', async ({
  db,
  receiver,
}) => {
  const { events } = await burst(db, receiver.url, 60);
  const { scheduler, accepted } = standIn(10, () => undefined); // its requests hang: no place ever frees
  const tookMs = await fanOut(db, events, scheduler);
  expect(accepted).toHaveLength(10);
  expect(await pendingRows(db)).toBe(50);
  expect(tookMs).toBeGreaterThanOrEqual(100); // the probe: an endpoint that finished nothing yet gets 100 ms
  expect(tookMs).toBeLessThan(400); // and not the whole 500 ms wait
});

test('an endpoint that stops finishing stops being waited for within a step', async ({ db, receiver }) => {
  const { events } = await burst(db, receiver.url, 60);
  // The first 15 requests finish at 5 ms, later ones never: it is waited for while it moves, then left.
  const stand = standIn(10, (nth) => (nth <= 15 ? 5 : undefined));
  const tookMs = await fanOut(db, events, stand.scheduler);
  expect(stand.accepted.length).toBeGreaterThan(10); // it waited for the places the first requests freed
  expect(stand.accepted.length).toBeLessThanOrEqual(25); // 15 finished, 10 places held for good
  expect(stand.accepted.length + (await pendingRows(db))).toBe(60);
  expect(tookMs).toBeLessThan(400);
});
