import { sql } from 'slonik';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere } from './support/postgres.ts';
import { relayEnv } from './support/relay.ts';
import { untilReady, type RelayProcess } from './support/relay-process.ts';
import { startReceiver } from './support/receiver.ts';
import { until, untilCount } from './support/until.ts';

const CRASHES = 5;

test('kill -9 of the slot holder at random moments while events flow: nothing lost, duplicates only of delivered ids', async ({
  db,
  receiver,
  spawnRelay,
  onTestFinished,
}) => {
  // Two endpoints, one answering slowly now and then, so kills land with requests in flight, answered but not
  // yet recorded, and persisted for being slow.
  const second = await startReceiver();
  onTestFinished(() => second.close());
  second.reply((_r, i) => (i % 7 === 0 ? { status: 200, delayMs: 400 } : { status: 200 }));
  await addEndpoint(db, receiver.url);
  await addEndpoint(db, second.url);
  const env = relayEnv(db, {
    LEASE: '3s',
    HEARTBEAT_INTERVAL: '500ms',
    REQUEST_TIMEOUT: '1s',
    PERSIST_AFTER: '200ms',
    SWEEP_INTERVAL: '250ms',
  });

  let writing = true;
  let inserted = 0;
  const writer = (async () => {
    while (writing) {
      await db.app.query(
        `INSERT INTO webhooks.outbox (event_type, payload) SELECT 'flow', jsonb_build_object('n', g) FROM generate_series(1, 5) g`,
      );
      inserted += 5;
      await sleep(10);
    }
  })();

  const receipts = () => [...receiver.requests, ...second.requests].length;
  const duplicatesPerCrash: number[] = [];
  const duplicates = () => {
    let n = 0;
    for (const r of [receiver, second]) {
      const ids = r.requests.map((q) => q.headers['webhook-id']);
      n += ids.length - new Set(ids).size;
    }
    return n;
  };
  let relay: RelayProcess = spawnRelay(env);
  await untilReady(relay);
  for (let crash = 0; crash < CRASHES; crash++) {
    const before = receipts();
    await until(() => receipts() > before + 20, { what: 'deliveries flowing' });
    await sleep(100 + Math.random() * 600);
    const dupBefore = duplicates();
    relay.kill('SIGKILL');
    expect((await relay.exited).signal).toBe('SIGKILL');
    relay = spawnRelay(env);
    await untilReady(relay);
    await until(() => receipts() > before + 40, { what: 'deliveries flowing after the restart' });
    duplicatesPerCrash.push(duplicates() - dupBefore);
  }
  writing = false;
  await writer;

  // The backlog the kills left drains as fast as the machine allows (slow when a CI box is busy): the wait fails
  // when deliveries stop being recorded, not at a fixed time.
  const expected = inserted * 2;
  await untilCount(() => countWhere(db, 'delivered'), expected, { what: 'delivered rows' });
  relay.kill('SIGTERM');
  expect((await relay.exited).code).toBe(0);

  const outboxIds = await db.pool.anyFirst(sql.type(z.object({ id: z.string() }))`
    SELECT id::text FROM webhooks.outbox WHERE event_type = 'flow' ORDER BY id`);
  expect(outboxIds).toHaveLength(inserted);
  for (const r of [receiver, second]) {
    const seen = new Set<unknown>();
    for (const request of r.requests) {
      const id = request.headers['webhook-id'];
      // A duplicate is a repeat of an id this receiver already got (the same webhook-id, never a new one).
      if (seen.has(id)) expect(request.body).toBe(r.requests.find((q) => q.headers['webhook-id'] === id)!.body);
      seen.add(id);
    }
    expect([...seen].sort()).toEqual(outboxIds.map((id) => `msg_${id}`).sort()); // every event, nothing else
  }
  console.log(
    `crash loop: ${inserted} events × 2 endpoints, ${CRASHES} kills, duplicates per crash: ${duplicatesPerCrash.join(', ')}`,
  );
}, 180_000); // 50 s on an idle 2-core box; the drain after the kills is bounded by progress, not by a clock
