import { describe, expect, test } from 'vitest';
import { createClusterView, rateShareOf, shareOf, type Poll } from '../src/limits/cluster-view.ts';
import { createLogger } from '../src/log.ts';
import { createScheduler } from '../src/scheduler/scheduler.ts';

const EP = '6f1c1c2e-0000-4000-8000-000000000001';
const endpoints = Array.from({ length: 200 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);

describe('shareOf: an endpoint’s limit split between the live relays', () => {
  test.each([
    [4, 3],
    [1, 3],
    [16, 20],
    [10, 1],
    [7, 7],
    [100, 6],
  ])('limit %i over %i relays: shares sum to the limit exactly, each floor or ceil', (limit, n) => {
    for (const id of endpoints) {
      const shares = Array.from({ length: n }, (_, i) => shareOf(limit, n, i, id));
      expect(shares.reduce((a, b) => a + b, 0)).toBe(limit);
      for (const s of shares) expect([Math.floor(limit / n), Math.ceil(limit / n)]).toContain(s);
    }
  });

  test('the relay that takes the remainder depends on the endpoint, so no relay takes every extra slot', () => {
    const extra = Array.from({ length: 3 }, (_, i) => endpoints.filter((id) => shareOf(4, 3, i, id) === 2).length);
    for (const count of extra) expect(count).toBeGreaterThan(30);
  });

  test('rates split evenly between the relays that can send at all, each keeping 5 % headroom', () => {
    expect(rateShareOf(20, 3, 16) * 3).toBeCloseTo(19);
    expect(rateShareOf(20, 3, 1)).toBeCloseTo(19); // max_in_flight 1: only one relay sends, at the whole rate
    expect(rateShareOf(20, 3, 2) * 2).toBeCloseTo(19);
  });
});

const poll = (p: Partial<Poll> & { sentAtMs: number }): Poll => ({ peers: [], joinedMsAgo: 0, breakers: [], ...p });

describe('the cluster view', () => {
  const options = { me: 'b', pollMs: 1_000, leaseMs: 5_000 };

  test('nothing may be sent before the first poll, nor once the last poll is older than lease − poll', () => {
    const view = createClusterView(options);
    expect(view.concurrency(EP, 6, 0)).toBe(0);
    view.apply(poll({ sentAtMs: 0 }));
    expect(view.concurrency(EP, 6, 100)).toBe(6); // alone
    expect(view.concurrency(EP, 6, 3_999)).toBe(6);
    expect(view.concurrency(EP, 6, 4_000)).toBe(0); // its row may expire soon: peers would take its share
  });

  test('shares follow membership: three relays share 6 as 2 each, and a leaving peer gives its share back', () => {
    const view = createClusterView(options);
    view.apply(poll({ sentAtMs: 0, peers: ['a', 'c'], joinedMsAgo: 10_000 }));
    expect(view.concurrency(EP, 6, 10)).toBe(2);
    expect(view.rate(EP, 30, 6)).toBeCloseTo(9.5);
    view.apply(poll({ sentAtMs: 1_000, peers: ['a'], joinedMsAgo: 11_000 }));
    expect(view.concurrency(EP, 6, 1_010)).toBe(3);
    expect(view.rate(EP, 30, 6)).toBeCloseTo(14.25);
  });

  test('a relay joining a running cluster takes no share for two poll intervals, so its peers shrink first', () => {
    const view = createClusterView(options);
    view.apply(poll({ sentAtMs: 0, peers: ['a'], joinedMsAgo: 0 }));
    expect(view.concurrency(EP, 6, 10)).toBe(0);
    view.apply(poll({ sentAtMs: 1_000, peers: ['a'], joinedMsAgo: 1_000 }));
    expect(view.concurrency(EP, 6, 1_010)).toBe(0);
    view.apply(poll({ sentAtMs: 2_000, peers: ['a'], joinedMsAgo: 2_000 }));
    expect(view.concurrency(EP, 6, 2_010)).toBe(3);
  });

  test('a relay whose row may have expired (no poll for lease − poll) waits out the join grace again', () => {
    const view = createClusterView(options);
    view.apply(poll({ sentAtMs: 0, peers: ['a'], joinedMsAgo: 10_000 }));
    expect(view.concurrency(EP, 6, 10)).toBe(3);
    view.apply(poll({ sentAtMs: 4_500, peers: ['a'], joinedMsAgo: 14_500 })); // frozen for 4.5 s
    expect(view.concurrency(EP, 6, 4_510)).toBe(0);
    view.apply(poll({ sentAtMs: 6_500, peers: ['a'], joinedMsAgo: 16_500 }));
    expect(view.concurrency(EP, 6, 6_510)).toBe(3);
  });

  test('an endpoint this relay has no share of is blocked (claims leave it to the relay that has one)', () => {
    const views = ['a', 'b', 'c'].map((me) => createClusterView({ ...options, me }));
    views.forEach((v, i) =>
      v.apply(poll({ sentAtMs: 0, peers: ['a', 'b', 'c'].filter((_, j) => j !== i), joinedMsAgo: 10_000 })),
    );
    const shares = views.map((v) => v.concurrency(EP, 1, 10));
    expect(shares.sort()).toEqual([0, 0, 1]);
    expect(views.filter((v) => v.blocked().includes(EP))).toHaveLength(2);
  });

  test('a shared open breaker stops sends and blocks claims until its time; then a probe is due', () => {
    const view = createClusterView(options);
    view.apply(poll({ sentAtMs: 0 }));
    const became = view.apply(
      poll({ sentAtMs: 500, breakers: [{ endpointId: EP, state: 'open', remainingMs: 2_000, probeOwner: null }] }),
    );
    expect(became).toEqual([EP]);
    expect(view.gate(EP, 600)).toEqual({ kind: 'open', untilMs: 2_500 });
    expect(view.concurrency(EP, 6, 600)).toBe(0);
    expect(view.blocked()).toEqual([EP]);
    expect(view.probesDue(2_499)).toEqual([]);
    expect(view.probesDue(2_500)).toEqual([EP]);
  });

  test('the relay that owns the probe sends exactly one request; the others stay blocked', () => {
    const view = createClusterView(options);
    const other = createClusterView({ ...options, me: 'a' });
    const half = { endpointId: EP, state: 'half-open' as const, remainingMs: 10_000, probeOwner: 'b' };
    view.apply(poll({ sentAtMs: 0, breakers: [half] }));
    other.apply(poll({ sentAtMs: 0, breakers: [half] }));
    expect(view.gate(EP, 10)).toEqual({ kind: 'probe' });
    expect(view.concurrency(EP, 6, 10)).toBe(1);
    expect(view.blocked()).toEqual([EP]); // claims take no more: the probe has its one delivery
    expect(view.toHandBack()).toEqual([]); // and that delivery stays
    view.probeStarted(EP);
    expect(view.gate(EP, 10).kind).toBe('open'); // a second request would be a second probe
    expect(other.gate(EP, 10).kind).toBe('open');
    expect(other.probesDue(10)).toEqual([]); // until the owner's time runs out
    expect(other.probesDue(10_000)).toEqual([EP]);
    view.closed(EP);
    expect(view.gate(EP, 20)).toEqual({ kind: 'closed' });
    expect(view.concurrency(EP, 6, 20)).toBe(6);
  });

  test('limits shown for metrics are bounded to the 50 endpoints most recently used', () => {
    const view = createClusterView(options);
    view.apply(poll({ sentAtMs: 0 }));
    for (const id of endpoints) {
      view.concurrency(id, 4, 1);
      view.rate(id, 20, 4);
    }
    const shown = view.limits(1);
    expect(shown).toHaveLength(50);
    expect(shown[0]).toEqual({
      endpointId: endpoints[150],
      maxInFlight: 4,
      share: 4,
      ratePerSecond: 20,
      rateShare: 19,
    });
  });
});

describe('the scheduler with cluster limits', () => {
  test('claims and fan-out give blocked endpoints a quota of 0, listed or not', () => {
    const scheduler = createScheduler({
      capacity: 100,
      concurrency: 10,
      perEndpointConcurrency: 4,
      limits: { concurrency: () => 0, rate: () => null, blocked: () => ['B', 'C'] },
      log: createLogger('silent'),
      attempt: () => new Promise(() => {}),
      finished: () => {},
      handBack: async () => {},
    });
    const reserved = scheduler.reserve(2);
    const jobOf = (deliveryId: string, endpointId: string) => ({
      deliveryId,
      outboxId: deliveryId,
      endpointId,
      tenant: null,
      url: 'https://x.example/',
      secrets: [],
      maxInFlight: null,
      ratePerSecond: null,
      attempt: 1,
      eventType: 'e',
      payload: '{}',
      createdAtMs: 0,
      traceparent: null,
    });
    scheduler.accept([jobOf('1', 'A'), jobOf('2', 'B')], reserved);
    const quotas = scheduler.quotas();
    const of = (id: string) => quotas.quotas[quotas.endpointIds.indexOf(id)];
    expect(of('A')).toBeGreaterThan(0);
    expect(of('B')).toBe(0);
    expect(of('C')).toBe(0);
    expect(scheduler.inFlight()).toBe(0); // a share of 0 starts nothing
  });
});
