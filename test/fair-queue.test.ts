import { expect, test } from 'vitest';
import type { Job } from '../src/domain.ts';
import { createFairQueue, type FairQueue } from '../src/scheduler/fair-queue.ts';

/** A job for `endpointId`, with no cap or rate of its own unless given. */
const job = (deliveryId: string, endpointId: string, extra: Partial<Job> = {}): Job => ({
  deliveryId,
  outboxId: `outbox-${deliveryId}`,
  endpointId,
  tenant: null,
  url: `https://${endpointId.toLowerCase()}.example/hook`,
  secrets: ['whsec_test'],
  maxInFlight: null,
  ratePerSecond: null,
  traceparent: null,
  attempt: 1,
  eventType: 'order.created',
  payload: '{}',
  createdAtMs: 0,
  ...extra,
});

/** What the next take gives, as a short string: the delivery id, `throttled:<endpoint>@<ms>`, or undefined. */
function next(q: FairQueue, nowMs = 0): string | undefined {
  const taken = q.take(nowMs);
  if (taken === undefined) return undefined;
  if ('job' in taken) return taken.job.deliveryId ?? undefined;
  return `throttled:${taken.throttled}@${taken.untilMs}`;
}

/** Takes until nothing is ready; the delivery ids in take order. */
function drain(q: FairQueue, nowMs = 0): string[] {
  const out: string[] = [];
  for (let taken = next(q, nowMs); taken !== undefined; taken = next(q, nowMs)) {
    out.push(taken);
    if (out.length > 1_000) throw new Error(`take never ran dry: ${out.slice(0, 10).join(', ')}, …`);
  }
  return out;
}

test('endpoints take turns: A,A,A,B,B queued come out as A,B,A,B,A', () => {
  const q = createFairQueue(10);
  for (const j of [job('a1', 'A'), job('a2', 'A'), job('a3', 'A'), job('b1', 'B'), job('b2', 'B')]) q.push(j);
  expect(drain(q)).toEqual(['a1', 'b1', 'a2', 'b2', 'a3']);
  expect(q.queued()).toBe(0);
});

test('an endpoint at the default cap is skipped until one of its attempts finishes', () => {
  const q = createFairQueue(1);
  for (const j of [job('a1', 'A'), job('a2', 'A'), job('b1', 'B')]) q.push(j);
  expect(drain(q)).toEqual(['a1', 'b1']);
  expect(q.active('A')).toBe(1);
  expect(q.queued()).toBe(1);
  q.finished('A', 0);
  expect(q.active('A')).toBe(0);
  expect(drain(q)).toEqual(['a2']);
});

test("a job's maxInFlight replaces the default cap for its endpoint, above or below it", () => {
  const above = createFairQueue(1);
  for (const id of ['a1', 'a2', 'a3']) above.push(job(id, 'A', { maxInFlight: 2 }));
  expect(drain(above)).toEqual(['a1', 'a2']);
  above.finished('A', 0);
  expect(drain(above)).toEqual(['a3']);

  const below = createFairQueue(5);
  for (const id of ['b1', 'b2']) below.push(job(id, 'B', { maxInFlight: 1 }));
  expect(drain(below)).toEqual(['b1']);
  below.finished('B', 0);
  expect(drain(below)).toEqual(['b2']);
});

test("one endpoint's long backlog delays another endpoint's first job by at most one round", () => {
  const q = createFairQueue(1_000);
  for (let i = 1; i <= 100; i++) q.push(job(`a${i}`, 'A'));
  for (let i = 1; i <= 100; i++) q.push(job(`c${i}`, 'C'));
  expect([next(q), next(q), next(q), next(q), next(q)]).toEqual(['a1', 'c1', 'a2', 'c2', 'a3']);
  q.push(job('b1', 'B'));
  // Ready were C and A: B comes out within one round of the three endpoints.
  expect([next(q), next(q), next(q)]).toEqual(['c3', 'a4', 'b1']);
});

test('a rate-limited endpoint is throttled until its next slot, and a job comes out after unthrottle', () => {
  const q = createFairQueue(10);
  for (const id of ['a1', 'a2', 'a3']) q.push(job(id, 'A', { ratePerSecond: 2 }));
  expect(next(q, 1_000)).toBe('a1');
  expect(q.take(1_000)).toEqual({ throttled: 'A', untilMs: 1_500 });
  expect(next(q, 1_000)).toBeUndefined(); // out of the round-robin while throttled
  expect(next(q, 1_600)).toBeUndefined(); // even past its slot: only unthrottle brings it back
  expect(q.queued()).toBe(2);
  q.unthrottle('A');
  expect(next(q, 1_500)).toBe('a2');
  expect(next(q, 1_500)).toBe('throttled:A@2000');
});

test('a throttled endpoint does not hold up the others', () => {
  const q = createFairQueue(10);
  q.push(job('a1', 'A', { ratePerSecond: 1 }));
  q.push(job('a2', 'A', { ratePerSecond: 1 }));
  q.push(job('b1', 'B'));
  q.push(job('b2', 'B'));
  expect(drain(q, 0)).toEqual(['a1', 'b1', 'throttled:A@1000', 'b2']);
});

test('a rate slot still ahead survives an idle period shorter than the slot: a burst cannot reset it', () => {
  const q = createFairQueue(10);
  q.push(job('a1', 'A', { ratePerSecond: 1 }));
  expect(next(q, 0)).toBe('a1');
  q.finished('A', 10); // nothing queued or in flight for A now
  q.push(job('a2', 'A', { ratePerSecond: 1 }));
  expect(next(q, 20)).toBe('throttled:A@1000');
});

test('after an idle period longer than the slot, a rate-limited endpoint starts at once', () => {
  const q = createFairQueue(10);
  q.push(job('a1', 'A', { ratePerSecond: 1 }));
  expect(next(q, 0)).toBe('a1');
  q.finished('A', 1_500);
  q.push(job('a2', 'A', { ratePerSecond: 1 }));
  expect(next(q, 1_600)).toBe('a2');
});

test('an endpoint whose rate limit is lifted is no longer throttled', () => {
  const q = createFairQueue(10);
  for (const id of ['a1', 'a2']) q.push(job(id, 'A', { ratePerSecond: 1 }));
  expect(next(q, 0)).toBe('a1');
  q.push(job('a3', 'A', { ratePerSecond: null })); // the endpoint row changed
  expect(drain(q, 0)).toEqual(['a2', 'a3']);
});

test('remove takes one queued job out, forgets it and keeps the count right', () => {
  const q = createFairQueue(10);
  for (const j of [job('a1', 'A'), job('a2', 'A'), job('b1', 'B')]) q.push(j);
  expect(q.remove((j) => j.deliveryId === 'a2')?.deliveryId).toBe('a2');
  expect(q.remove((j) => j.deliveryId === 'a2')).toBeUndefined();
  expect(q.remove((j) => j.deliveryId === 'nope')).toBeUndefined();
  expect(q.queued()).toBe(2);
  expect(q.queuedJobs().map((j) => j.deliveryId)).toEqual(['a1', 'b1']);
  expect(q.remove((j) => j.deliveryId === 'b1')?.deliveryId).toBe('b1'); // B's only job: B leaves the round-robin
  expect(q.queued()).toBe(1);
  expect(drain(q)).toEqual(['a1']);
  expect(q.queued()).toBe(0);
});

test('remove does not touch a job already started', () => {
  const q = createFairQueue(10);
  q.push(job('a1', 'A'));
  expect(next(q)).toBe('a1');
  expect(q.remove((j) => j.deliveryId === 'a1')).toBeUndefined();
  expect(q.active('A')).toBe(1);
});

test("removeEndpoint returns the endpoint's queued jobs and forgets them", () => {
  const q = createFairQueue(10);
  for (const j of [job('a1', 'A'), job('b1', 'B'), job('a2', 'A')]) q.push(j);
  expect(q.removeEndpoint('A').map((j) => j.deliveryId)).toEqual(['a1', 'a2']);
  expect(q.removeEndpoint('A')).toEqual([]);
  expect(q.removeEndpoint('unknown')).toEqual([]);
  expect(q.queued()).toBe(1);
  expect(q.queuedJobs().map((j) => j.deliveryId)).toEqual(['b1']);
  expect(drain(q)).toEqual(['b1']);
});

test('removeAll returns every queued job, leaves nothing queued and forgets throttled endpoints', () => {
  const q = createFairQueue(10);
  for (const id of ['a1', 'a2']) q.push(job(id, 'A', { ratePerSecond: 1 }));
  q.push(job('b1', 'B'));
  expect(next(q, 0)).toBe('a1');
  expect(next(q, 0)).toBe('b1');
  q.push(job('b2', 'B'));
  expect(next(q, 0)).toBe('throttled:A@1000');
  expect(
    q
      .removeAll()
      .map((j) => j.deliveryId)
      .sort(),
  ).toEqual(['a2', 'b2']);
  expect(q.queued()).toBe(0);
  expect(q.queuedJobs().map((j) => j.deliveryId)).toEqual([]);
  expect(next(q, 0)).toBeUndefined();
  // The caller cleared the throttle timer: A must not wait for an unthrottle that never comes.
  q.push(job('a3', 'A', { ratePerSecond: 1 }));
  expect(next(q, 1_000)).toBe('a3');
});

test('queuedJobs lists every job not yet started, per endpoint in queue order', () => {
  const q = createFairQueue(10);
  for (const j of [job('a1', 'A'), job('b1', 'B'), job('a2', 'A')]) q.push(j);
  expect(q.queuedJobs().map((j) => j.deliveryId)).toEqual(['a1', 'a2', 'b1']);
  expect(next(q)).toBe('a1');
  expect(q.queuedJobs().map((j) => j.deliveryId)).toEqual(['a2', 'b1']);
  expect(q.queued()).toBe(2);
});

test('a newer job that lowers the cap while its endpoint waits its turn is honoured at once', () => {
  const q = createFairQueue(3);
  q.push(job('a1', 'A'));
  q.push(job('a2', 'A'));
  expect(q.take(0)).toMatchObject({ job: { deliveryId: 'a1' } });
  q.push({ ...job('a3', 'A'), maxInFlight: 1 });
  expect(q.take(0)).toBeUndefined();
  expect(q.active('A')).toBe(1);
});

test('with cluster limits, an endpoint gets this relay’s share of its cap and rate, and a refresh applies new shares', () => {
  let members = 3;
  const limits = {
    concurrency: (_id: string, limit: number) => Math.floor(limit / members),
    rate: (_id: string, rate: number | null) => (rate === null ? null : rate / members),
    blocked: () => [],
  };
  const q = createFairQueue(16, limits);
  for (let i = 1; i <= 6; i++) q.push(job(`a${i}`, 'A', { maxInFlight: 6 }));
  expect(drain(q)).toEqual(['a1', 'a2']); // 6 / 3 relays
  members = 1; // the peers left
  q.refresh();
  expect(drain(q)).toEqual(['a3', 'a4', 'a5', 'a6']);
  const r = createFairQueue(16, limits);
  r.push(job('r1', 'R', { ratePerSecond: 30 }));
  r.push(job('r2', 'R', { ratePerSecond: 30 }));
  expect(next(r, 0)).toBe('r1');
  expect(next(r, 0)).toBe(`throttled:R@${1000 / 30}`); // alone: the whole 30/s
});

test('an endpoint whose cluster share is 0 (breaker open, or no share here) starts nothing until a refresh', () => {
  let open = true;
  const q = createFairQueue(16, {
    concurrency: (_id, limit) => (open ? 0 : limit),
    rate: (_id, rate) => rate,
    blocked: () => (open ? ['A'] : []),
  });
  q.push(job('a1', 'A'));
  expect(drain(q)).toEqual([]);
  open = false;
  q.refresh();
  expect(drain(q)).toEqual(['a1']);
});
