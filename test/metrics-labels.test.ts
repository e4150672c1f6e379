import { expect, test } from 'vitest';
import { createMetrics } from '../src/metrics/metrics.ts';

const breakerLines = async (metrics: ReturnType<typeof createMetrics>) =>
  (await metrics.registry.metrics()).split('\n').filter((l) => l.startsWith('outbox_relay_breaker_open{'));

test('the per-endpoint breaker series carry the endpoint’s tenant (empty for none) and go when it closes', async () => {
  const metrics = createMetrics();
  metrics.endpointTenant('ep-a', 'acme');
  metrics.endpointTenant('ep-b', null);
  metrics.breakerChanged('ep-a', 'open', 1);
  metrics.breakerChanged('ep-b', 'open', 2);
  expect(await breakerLines(metrics)).toEqual([
    'outbox_relay_breaker_open{endpoint_id="ep-a",tenant="acme"} 1',
    'outbox_relay_breaker_open{endpoint_id="ep-b",tenant=""} 1',
  ]);
  metrics.breakerChanged('ep-a', 'half-open', 2);
  metrics.breakerChanged('ep-b', 'closed', 1);
  expect(await breakerLines(metrics)).toEqual(['outbox_relay_breaker_open{endpoint_id="ep-a",tenant="acme"} 0.5']);
  metrics.breakerChanged('ep-a', 'closed', 0);
  expect(await breakerLines(metrics)).toEqual([]);
});

test('the cluster’s breaker series stay bounded: 150 open breakers show as 150 in breakers_open and 100 labelled series', async () => {
  const metrics = createMetrics();
  const open = new Map(
    Array.from({ length: 150 }, (_, i) => [`ep-${i}`, { state: i % 2 === 0 ? 'open' : 'half-open' }] as const),
  );
  metrics.watchCluster({ members: () => 3, breakers: () => open, limits: () => [] });
  const text = await metrics.registry.metrics();
  expect(text).toContain('outbox_relay_breakers_open 150');
  expect(text).toContain('outbox_relay_cluster_relays 3');
  expect(await breakerLines(metrics)).toHaveLength(100);
  // Closed in the cluster: the series go, and room is made for breakers not shown before.
  for (let i = 0; i < 100; i++) open.delete(`ep-${i}`);
  const lines = await breakerLines(metrics);
  expect(lines).toHaveLength(50);
  expect(lines.every((l) => /ep-(1[0-4][0-9])"/.test(l))).toBe(true);
});
