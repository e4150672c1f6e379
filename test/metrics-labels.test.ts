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
