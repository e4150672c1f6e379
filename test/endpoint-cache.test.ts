import { sql } from 'slonik';
import { expect, test as unit } from 'vitest';
import { z } from 'zod';
import { subscribes } from '../src/db/fragments.ts';
import { createEndpointCache, liveSecrets, matches, type CachedEndpoint } from '../src/endpoints/cache.ts';
import { test } from './fixtures.ts';

const endpoint = (id: string, extra: Partial<CachedEndpoint> = {}): CachedEndpoint => ({
  id,
  url: `https://example.com/${id}`,
  tenant: null,
  eventTypes: null,
  enabled: true,
  ordered: false,
  secret: 'whsec_a',
  previousSecret: null,
  previousExpiresAtMs: null,
  maxInFlight: null,
  ratePerSecond: null,
  ...extra,
});
const event = (eventType: string, extra: { endpointId?: string | null; tenant?: string | null } = {}) => ({
  eventType,
  endpointId: extra.endpointId ?? null,
  tenant: extra.tenant ?? null,
});
const ids = (list: readonly CachedEndpoint[]) => list.map((e) => e.id).sort();

unit('receivers: event types, NULL for every type, the target only, and never another tenant', () => {
  const cache = createEndpointCache();
  cache.load([
    endpoint('all'),
    endpoint('paid', { eventTypes: ['invoice.paid'] }),
    endpoint('t1', { tenant: 'acme' }),
    endpoint('t1-paid', { tenant: 'acme', eventTypes: ['invoice.paid'] }),
  ]);
  expect(ids(cache.receivers(event('invoice.paid'), null))).toEqual(['all', 'paid']);
  expect(ids(cache.receivers(event('invoice.sent'), null))).toEqual(['all']);
  expect(ids(cache.receivers(event('invoice.paid', { tenant: 'acme' }), null))).toEqual(['t1', 't1-paid']);
  expect(ids(cache.receivers(event('x', { endpointId: 'paid' }), null))).toEqual(['paid']); // types ignored
  expect(cache.receivers(event('x', { endpointId: 't1' }), null)).toEqual([]); // another tenant's target
  expect(cache.receivers(event('x', { tenant: 'other' }), null)).toEqual([]);
});

unit('operational events go only to endpoints listing them or relay.*, never to the endpoint they are about', () => {
  const cache = createEndpointCache();
  cache.load([
    endpoint('all'),
    endpoint('ops', { eventTypes: ['relay.*'] }),
    endpoint('dead-only', { eventTypes: ['relay.delivery.dead'] }),
  ]);
  expect(ids(cache.receivers(event('relay.delivery.dead'), null))).toEqual(['dead-only', 'ops']);
  expect(ids(cache.receivers(event('relay.delivery.dead'), 'ops'))).toEqual(['dead-only']);
  expect(ids(cache.receivers(event('relay.endpoint.disabled'), null))).toEqual(['ops']);
});

unit('stream changes: inserts, updates merging unchanged (undefined) columns, deletes, and moving tenants', () => {
  const cache = createEndpointCache();
  cache.load([endpoint('a', { eventTypes: ['x'] })]);
  cache.apply({ id: 'a', enabled: false, url: undefined, secret: undefined, eventTypes: undefined });
  expect(cache.get('a')).toMatchObject({ enabled: false, url: 'https://example.com/a', eventTypes: ['x'] });
  cache.apply({ id: 'b', url: 'https://b', secret: 'whsec_b' }); // an incomplete insert is ignored
  expect(cache.get('b')).toBeUndefined();
  cache.apply({ id: 'b', url: 'https://b', secret: 'whsec_b', enabled: true, tenant: 'acme' });
  expect(ids(cache.receivers(event('x', { tenant: 'acme' }), null))).toEqual(['b']);
  cache.apply({ id: 'b', tenant: null });
  expect(cache.receivers(event('x', { tenant: 'acme' }), null)).toEqual([]);
  expect(ids(cache.receivers(event('x'), null))).toEqual(['a', 'b']);
  cache.apply({ deleted: 'a' });
  expect(ids(cache.receivers(event('x'), null))).toEqual(['b']);
  expect(cache.size()).toBe(1);
});

unit('the previous secret signs too until its rotation window ends', () => {
  const rotated = endpoint('a', { secret: 'whsec_new', previousSecret: 'whsec_old', previousExpiresAtMs: 1_000 });
  expect(liveSecrets(rotated, 999)).toEqual(['whsec_new', 'whsec_old']);
  expect(liveSecrets(rotated, 1_000)).toEqual(['whsec_new']);
});

test('matches gives the answer of the SQL fragment subscribes for random endpoints and events', async ({ db }) => {
  const tenants = [null, 'acme', 'globex'];
  const types = ['invoice.paid', 'invoice.sent', 'relay.delivery.dead', 'relay.endpoint.disabled'];
  const typeSets = [null, [], ['invoice.paid'], ['relay.*'], ['relay.delivery.dead', 'invoice.sent']];
  let seed = 42; // a fixed pseudo-random sequence: the same cases every run
  const random = (n: number) => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31), Math.floor(seed / 65_536) % n);
  const pick = <T>(list: readonly T[]) => list[random(list.length)]!;
  const endpoints = Array.from({ length: 12 }, (_, i) =>
    endpoint(`00000000-0000-0000-0000-${String(i).padStart(12, '0')}`, {
      tenant: pick(tenants),
      eventTypes: pick(typeSets),
    }),
  );
  const events = Array.from({ length: 400 }, () => ({
    eventType: pick(types),
    tenant: pick(tenants),
    endpointId: random(5) === 0 ? pick(endpoints).id : null,
    about: random(2) === 0 ? pick(endpoints).id : null,
  }));
  const Pair = z.object({ e: z.number(), ep: z.string() });
  // The fragment itself, over relations named and shaped as fan-out's (`ev`, `ep`).
  const fromSql = await db.pool.any(sql.type(Pair)`
    SELECT ev.i AS e, ep.id::text AS ep
    FROM (SELECT x."eventType" AS event_type, x.tenant, x."endpointId" AS endpoint_id, x.about AS about_endpoint, x.i
          FROM jsonb_to_recordset(${JSON.stringify(events.map((e, i) => ({ ...e, i })))}::jsonb)
            AS x("eventType" text, tenant text, "endpointId" uuid, about uuid, i int)) ev
    JOIN (SELECT y.id, y.tenant, y."eventTypes" AS event_types
          FROM jsonb_to_recordset(${JSON.stringify(endpoints)}::jsonb) AS y(id uuid, tenant text, "eventTypes" text[])) ep
      ON ${subscribes}
    ORDER BY 1, 2`);
  const inMemory = events.flatMap((ev, e) =>
    endpoints
      .filter((ep) => matches(ep, ev, ev.about))
      .map((ep) => ({ e, ep: ep.id }))
      .sort((a, b) => a.ep.localeCompare(b.ep)),
  );
  expect(fromSql.length).toBeGreaterThan(10);
  expect(inMemory).toEqual(fromSql);
});
