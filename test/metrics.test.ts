import { expect } from 'vitest';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents } from './support/postgres.ts';
import { scrape } from './support/relay.ts';
import { until } from './support/until.ts';

test('/metrics counts real deliveries, latency, backlog and slot state; /healthz and /readyz answer', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  const parked = await addEndpoint(db, receiver.url.replace('/hooks', '/parked'), { enabled: false });
  await addEndpoint(db, receiver.url.replace('/hooks', '/off'), { enabled: false, eventTypes: ['never.sent'] });
  const relay = await startRelay({ STATS_INTERVAL: '200ms' });
  const port = relay.httpPort;
  expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  expect(ready.status).toBe(200);
  expect(await ready.json()).toMatchObject({ ready: true, stream: 'streaming' });

  await insertEvents(
    db,
    Array.from({ length: 25 }, (_, i) => ({ type: 'm', payload: `{"i":${i}}` })),
  );
  await insertEvents(db, [{ type: 'p', payload: '{}', endpointId: parked.id }]); // parked: stays pending
  await until(async () => (await scrape(port, 'outbox_relay_deliveries_total', { outcome: 'delivered' })) === 25, {
    what: '25 delivered in metrics',
  });
  expect(await scrape(port, 'outbox_relay_events_fanned_out_total')).toBe(26);
  // 25 to the enabled endpoint; 25 + 1 (targeted) parked for the disabled one.
  expect(await scrape(port, 'outbox_relay_deliveries_created_total')).toBe(51);
  expect(await scrape(port, 'outbox_relay_attempt_duration_seconds_count')).toBe(25);
  expect(await scrape(port, 'outbox_relay_delivery_latency_seconds_count')).toBe(25);
  expect(await scrape(port, 'outbox_relay_slot_holder')).toBe(1);
  await until(async () => (await scrape(port, 'outbox_relay_deliveries_pending')) === 26, { what: 'pending gauge' });
  expect(await scrape(port, 'outbox_relay_disabled_endpoints')).toBe(2); // read with the backlog, by the same pass
  expect(await scrape(port, 'outbox_relay_slot_retained_wal_bytes')).toBeGreaterThan(0);
  expect(await scrape(port, 'outbox_relay_replication_lag_bytes')).toBeGreaterThanOrEqual(0);
  expect(await scrape(port, 'outbox_relay_process_resident_memory_bytes')).toBeGreaterThan(0);

  receiver.reply(() => ({ status: 500 }));
  await insertEvents(db, [{ type: 'fails', payload: '{}' }]);
  await until(async () => (await scrape(port, 'outbox_relay_deliveries_total', { outcome: 'retry' })) >= 1);
});
