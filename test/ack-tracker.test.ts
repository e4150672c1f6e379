import { expect, test } from 'vitest';
import type { OutboxEvent } from '../src/domain.ts';
import {
  createAckTracker,
  type AckTracker,
  type AckTrackerOptions,
  type Batch,
  type StreamMessage,
} from '../src/replication/ack-tracker.ts';
import type { Lsn } from '../src/replication/lsn.ts';

const event = (id: string): OutboxEvent => ({
  id,
  eventType: 'order.created',
  endpointId: null,
  tenant: null,
  orderingKey: null,
  traceparent: null,
  payload: '{}',
  createdAtMs: 0,
});
const begin: StreamMessage = { tag: 'begin' };
const insert = (id: string): StreamMessage => ({ tag: 'insert', event: event(id) });
const commit = (endLsn: Lsn, timeMs = 0): StreamMessage => ({ tag: 'commit', endLsn, timeMs });

/** A session that started at slot position 100; statuses every 10 s, silent after 30 s; batches of 2 rows. */
function tracker(options: Partial<AckTrackerOptions> = {}): AckTracker {
  return createAckTracker({
    batchRows: 2,
    statusIntervalMs: 10_000,
    idleTimeoutMs: 30_000,
    startedAt: 100n,
    nowMs: 0,
    maxBytes: 1_000_000,
    ...options,
  });
}

/** Feeds one whole transaction (begin, its rows, commit); returns whether any message asked to pause. */
function transaction(t: AckTracker, ids: string[], endLsn: Lsn, nowMs = 0, commitTimeMs = 0): boolean {
  let pause = t.received(begin, nowMs);
  for (const id of ids) pause = t.received(insert(id), nowMs) || pause;
  return t.received(commit(endLsn, commitTimeMs), nowMs) || pause;
}

/** Takes the next batch, failing the test when there is none. */
function take(t: AckTracker): Batch {
  const batch = t.take();
  if (batch === undefined) throw new Error('expected a batch');
  return batch;
}

const ids = (batch: Batch) => batch.events.map((e) => e.id);

test('the confirmed position stays at the previous durable LSN until the batch holding a commit is done', () => {
  const t = tracker();
  expect(t.status(0)).toBe(100n); // the slot's position is known: it can be confirmed at once
  transaction(t, ['a'], 200n);
  expect(t.status(0, true)).toBe(100n); // received, not taken
  const batch = take(t);
  expect(batch.commitEndLsn).toBe(200n);
  expect(t.status(0, true)).toBe(100n); // taken, fan-out not finished
  expect(t.durable()).toBe(100n);
  t.done(batch, 0);
  expect(t.durable()).toBe(200n);
  expect(t.status(0, true)).toBe(200n);
});

test('a batch spanning several commits confirms the last commit it contains', () => {
  const t = tracker({ batchRows: 4 });
  transaction(t, ['a'], 200n, 0, 1_000);
  transaction(t, ['b'], 300n, 0, 2_000);
  transaction(t, ['c'], 400n, 0, 3_000);
  const batch = take(t);
  expect(ids(batch)).toEqual(['a', 'b', 'c']);
  expect(batch).toMatchObject({ commitEndLsn: 400n, commitTimeMs: 3_000 });
  t.done(batch, 0);
  expect(t.status(0, true)).toBe(400n);
});

test('a full batch takes the commit right after its last row and leaves the next transaction queued', () => {
  const t = tracker({ batchRows: 2 });
  transaction(t, ['a'], 200n);
  transaction(t, ['b'], 300n);
  transaction(t, ['c'], 400n);
  const first = take(t);
  expect(ids(first)).toEqual(['a', 'b']);
  expect(first.commitEndLsn).toBe(300n);
  t.done(first, 0);
  expect(t.status(0, true)).toBe(300n);
  expect(t.hasQueued()).toBe(true);
  const second = take(t);
  expect(ids(second)).toEqual(['c']);
  expect(second.commitEndLsn).toBe(400n);
});

test('a batch that ends mid-transaction has no commit and does not advance the confirmed position', () => {
  const t = tracker({ batchRows: 2 });
  transaction(t, ['a', 'b', 'c'], 200n);
  const first = take(t);
  expect(ids(first)).toEqual(['a', 'b']);
  expect(first.commitEndLsn).toBeUndefined();
  expect(first.commitTimeMs).toBeUndefined();
  expect(t.done(first, 0).lagSeconds).toBeUndefined();
  expect(t.durable()).toBe(100n);
  expect(t.status(0, true)).toBe(100n);

  const second = take(t);
  expect(ids(second)).toEqual(['c']);
  expect(second.commitEndLsn).toBe(200n);
  t.done(second, 0);
  expect(t.status(0, true)).toBe(200n);
});

test('rows of a transaction still arriving wait for its commit, unless reading paused (too big to hold whole)', () => {
  const t = tracker({ batchRows: 2, maxRows: 3 });
  t.received(begin, 0);
  t.received(insert('a'), 0);
  t.received(insert('b'), 0);
  expect(t.take()).toBeUndefined(); // its commit is usually a moment away: the rows can then go out from the stream
  expect(t.received(insert('c'), 0)).toBe(true); // paused
  const batch = take(t); // a big transaction: taken in batches, without a commit to confirm
  expect(ids(batch)).toEqual(['a', 'b']);
  expect(batch.commitEndLsn).toBeUndefined();
  expect(batch.live.to - batch.live.from).toBe(0); // none may be sent from the stream: its commit is not here
  t.done(batch, 0);
  expect(t.status(0, true)).toBe(100n);
});

test('the first batches of a committed transaction bigger than a batch are live too', () => {
  const t = tracker({ batchRows: 2, liveAfter: 50n });
  t.received(begin, 0);
  for (const id of ['a', 'b', 'c']) t.received({ tag: 'insert', event: event(id), lsn: 60n }, 0);
  t.received(commit(200n), 0);
  const first = take(t);
  expect(first).toMatchObject({ commitEndLsn: undefined, live: { from: 0, to: 2 } });
  t.dispatched(first);
  const second = take(t);
  expect(second).toMatchObject({ commitEndLsn: 200n, live: { from: 0, to: 1 } });
});

test('a transaction behind a complete one waits for its commit; the complete one goes at once', () => {
  const t = tracker({ batchRows: 10 });
  transaction(t, ['a'], 200n);
  t.received(begin, 0);
  t.received(insert('b'), 0);
  const first = take(t);
  expect(ids(first)).toEqual(['a']);
  t.done(first, 0);
  expect(t.take()).toBeUndefined();
  t.received(commit(300n), 0);
  expect(ids(take(t))).toEqual(['b']);
});

test('rows written after the session started are live, from the first of them to the last commit in the batch', () => {
  const t = tracker({ batchRows: 10, liveAfter: 150n });
  t.received(begin, 0);
  t.received({ tag: 'insert', event: event('old'), lsn: 120n }, 0);
  t.received(commit(140n), 0);
  t.received(begin, 0);
  t.received({ tag: 'insert', event: event('new1'), lsn: 160n }, 0);
  t.received({ tag: 'insert', event: event('new2'), lsn: 170n }, 0);
  t.received(commit(180n), 0);
  const batch = take(t);
  expect(ids(batch)).toEqual(['old', 'new1', 'new2']);
  expect(batch.live).toEqual({ from: 1, to: 3 });
  expect(tracker({ batchRows: 10 }).take()).toBeUndefined();
});

test('several batches may be outstanding once dispatched; the slot is confirmed only past a prefix of resolved ones', () => {
  const t = tracker({ batchRows: 1 });
  transaction(t, ['a'], 200n);
  transaction(t, ['b'], 300n);
  transaction(t, ['c'], 400n);
  const a = take(t);
  expect(t.take()).toBeUndefined(); // still being dispatched
  t.dispatched(a);
  const b = take(t);
  t.dispatched(b);
  const c = take(t);
  t.dispatched(c);
  expect(t.outstanding()).toBe(3);
  t.done(b, 0); // b resolved before a: nothing may be confirmed yet
  expect(t.status(0, true)).toBe(100n);
  t.done(a, 0);
  expect(t.status(0, true)).toBe(300n); // a and b
  t.keepalive(900n, false, 0);
  expect(t.status(0, true)).toBe(300n); // c unresolved: not idle
  t.done(c, 0);
  expect(t.status(0, true)).toBe(900n);
  expect(t.outstanding()).toBe(0);
});

test('only one batch is in flight at a time, and there is none to take when nothing is queued', () => {
  const t = tracker({ batchRows: 1 });
  expect(t.take()).toBeUndefined();
  transaction(t, ['a'], 200n);
  transaction(t, ['b'], 300n);
  const first = take(t);
  expect(t.take()).toBeUndefined(); // the first is still being fanned out
  t.done(first, 0);
  expect(ids(take(t))).toEqual(['b']);
});

test('a keepalive position is confirmed when everything received is processed', () => {
  const t = tracker();
  t.keepalive(500n, false, 0);
  expect(t.idle()).toBe(true);
  expect(t.status(0)).toBe(500n);
});

test('a keepalive position is never confirmed while a transaction is open', () => {
  const t = tracker();
  t.received(begin, 0);
  t.keepalive(500n, false, 0);
  expect(t.idle()).toBe(false);
  expect(t.status(0, true)).toBe(100n);
  t.received(insert('a'), 0);
  for (let i = 0; i < 8; i++) t.received(insert(`b${i}`), 0); // paused: taken before its commit
  const batch = take(t); // the open transaction's first rows, taken and done: still mid-transaction
  t.done(batch, 0);
  expect(t.status(0, true)).toBe(100n);
});

test('a keepalive position is not confirmed while received rows are queued or a batch is in flight', () => {
  const t = tracker();
  transaction(t, ['a'], 200n);
  t.keepalive(300n, false, 0);
  expect(t.status(0, true)).toBe(100n); // queued
  const batch = take(t);
  expect(t.status(0, true)).toBe(100n); // in flight
  t.done(batch, 0);
  expect(t.status(0, true)).toBe(300n); // idle: the keepalive is past everything received
});

test('a reply-requested keepalive makes a status due at once within the interval, and only once', () => {
  const t = tracker({ statusIntervalMs: 10_000 });
  expect(t.status(0)).toBe(100n);
  t.keepalive(100n, false, 1_000);
  expect(t.status(1_000)).toBeUndefined(); // a plain keepalive forces nothing
  t.keepalive(100n, true, 2_000);
  expect(t.status(2_000)).toBe(100n);
  expect(t.status(3_000)).toBeUndefined();
});

test('a reply requested during an open transaction confirms the durable position, not the keepalive', () => {
  const t = tracker();
  expect(t.status(0)).toBe(100n);
  t.received(begin, 1_000);
  t.keepalive(500n, true, 1_000);
  expect(t.status(1_000)).toBe(100n);
});

test('periodic statuses are throttled to one per statusIntervalMs unless forced', () => {
  const t = tracker({ statusIntervalMs: 10_000 });
  expect(t.status(0)).toBe(100n);
  expect(t.status(9_999)).toBeUndefined();
  expect(t.status(10_000)).toBe(100n);
  expect(t.status(15_000)).toBeUndefined();
  expect(t.status(15_000, true)).toBe(100n);
  expect(t.status(24_999)).toBeUndefined(); // the forced one restarted the interval
  expect(t.status(25_000)).toBe(100n);
});

test("the session's first progress past startedAt forces a status; later progress waits for the interval", () => {
  const t = tracker({ statusIntervalMs: 10_000 });
  expect(t.status(0)).toBe(100n);
  transaction(t, ['a'], 200n, 1_000);
  t.done(take(t), 0);
  expect(t.status(1_000)).toBe(200n); // within the interval, but the first progress
  transaction(t, ['b'], 300n, 2_000);
  t.done(take(t), 0);
  expect(t.status(2_000)).toBeUndefined();
  expect(t.status(10_999)).toBeUndefined();
  expect(t.status(11_000)).toBe(300n);
});

test('a first progress by keepalive alone also forces a status', () => {
  const t = tracker({ statusIntervalMs: 10_000 });
  expect(t.status(0)).toBe(100n);
  t.keepalive(150n, false, 1_000);
  expect(t.status(1_000)).toBe(150n);
});

test('no status while nothing is known: started at 0 with nothing fanned out, even when forced', () => {
  const t = tracker({ startedAt: 0n });
  expect(t.status(0)).toBeUndefined();
  expect(t.status(0, true)).toBeUndefined();
  transaction(t, ['a'], 200n);
  const batch = take(t);
  expect(t.status(0, true)).toBeUndefined();
  t.done(batch, 0);
  expect(t.status(0)).toBe(200n);
});

test('reading pauses once rows queued reach 4×batchRows, and the pause is signalled only once', () => {
  const t = tracker({ batchRows: 2 });
  t.received(begin, 0);
  for (let i = 1; i <= 7; i++) expect(t.received(insert(`r${i}`), 0)).toBe(false);
  expect(t.received(insert('r8'), 0)).toBe(true);
  expect(t.received(insert('r9'), 0)).toBe(false);
  expect(t.received(commit(200n), 0)).toBe(false);
});

test('commit markers and begins do not count towards the pause, only rows', () => {
  const t = tracker({ batchRows: 2 });
  for (let i = 0; i < 7; i++) expect(transaction(t, [], BigInt(200 + i))).toBe(false);
  for (let i = 1; i <= 7; i++) expect(transaction(t, [`r${i}`], BigInt(300 + i))).toBe(false);
  expect(transaction(t, ['r8'], 400n)).toBe(true);
});

test('reading resumes only once done() brings the rows queued down to batchRows', () => {
  const t = tracker({ batchRows: 2 });
  const rows = Array.from({ length: 10 }, (_, i) => `r${i + 1}`);
  expect(transaction(t, rows, 200n)).toBe(true);
  const resumes: boolean[] = [];
  while (t.hasQueued()) resumes.push(t.done(take(t), 0).resume); // 10 → 8 → 6 → 4 → 2 → 0 rows queued
  expect(resumes).toEqual([false, false, false, true, false]);
});

test('after resuming, rows queued past high water pause reading again', () => {
  const t = tracker({ batchRows: 1 });
  expect(transaction(t, ['a', 'b', 'c', 'd'], 200n)).toBe(true);
  for (const expected of [false, false, true]) expect(t.done(take(t), 0).resume).toBe(expected);
  expect(transaction(t, ['e', 'f', 'g'], 300n)).toBe(true);
});

test('lag is the age of the batch commit while more is queued, and 0 once caught up', () => {
  const t = tracker({ batchRows: 1 });
  transaction(t, ['a'], 200n, 0, 1_000_000);
  transaction(t, ['b'], 300n, 0, 1_002_000);
  expect(t.done(take(t), 1_005_000).lagSeconds).toBe(5);
  expect(t.done(take(t), 1_006_000).lagSeconds).toBe(0);
});

test('lag is the age of the commit while a new transaction is open, and never negative', () => {
  const t = tracker({ batchRows: 4 });
  transaction(t, ['a'], 200n, 0, 1_000_000);
  const batch = take(t);
  t.received(begin, 0);
  expect(t.done(batch, 1_002_500).lagSeconds).toBe(2.5);

  const skewed = tracker({ batchRows: 4 });
  transaction(skewed, ['a'], 200n, 0, 1_000_000);
  transaction(skewed, ['b', 'c', 'd', 'e'], 300n, 0, 1_000_000);
  expect(skewed.done(take(skewed), 999_000).lagSeconds).toBe(0); // server clock ahead of ours
});

test('the stream is silent too long only after idleTimeoutMs without any message', () => {
  const t = tracker({ idleTimeoutMs: 30_000, nowMs: 0 });
  expect(t.silentTooLong(30_000)).toBe(false);
  expect(t.silentTooLong(30_001)).toBe(true);
  t.keepalive(100n, false, 40_000);
  expect(t.silentTooLong(70_000)).toBe(false);
  expect(t.silentTooLong(70_001)).toBe(true);
  t.received(begin, 80_000);
  expect(t.silentTooLong(110_000)).toBe(false);
  expect(t.silentTooLong(110_001)).toBe(true);
});

test('a paused stream is never silent too long', () => {
  const t = tracker({ batchRows: 1, idleTimeoutMs: 30_000, nowMs: 0 });
  expect(transaction(t, ['a', 'b', 'c', 'd'], 200n, 0)).toBe(true);
  expect(t.silentTooLong(30_001)).toBe(false);
  expect(t.silentTooLong(10_000_000)).toBe(false);
});

test('time spent paused is not silence: just after a long pause ends, the stream is not declared dead', () => {
  const t = tracker({ batchRows: 1, statusIntervalMs: 1_000, idleTimeoutMs: 10_000, startedAt: 0n });
  for (let i = 0; i < 4; i++) t.received({ tag: 'insert', event: event(String(i)) }, 0);
  expect(t.silentTooLong(60_000)).toBe(false); // paused for a minute
  const batch = t.take()!;
  t.done(batch, 60_000);
  for (let i = 0; i < 3; i++) t.done(t.take()!, 60_000);
  expect(t.silentTooLong(60_100)).toBe(false);
  expect(t.silentTooLong(70_200)).toBe(true);
});

const big = (id: string, size: number): StreamMessage => ({
  tag: 'insert',
  event: { ...event(id), payload: 'x'.repeat(size) },
});

test('payload bytes pause reading long before the row count would: a few huge rows cannot fill memory', () => {
  const t = tracker({ batchRows: 1_000, maxBytes: 1_000 });
  expect(t.received(begin, 0)).toBe(false);
  expect(t.received(big('1', 400), 0)).toBe(false);
  expect(t.received(big('2', 400), 0)).toBe(false);
  expect(t.received(big('3', 400), 0)).toBe(true); // 1,200 bytes held: pause, with 3 rows of the 4,000 allowed
  expect(t.heldBytes()).toBe(1_200);
});

test('a batch carries at most half the byte budget, but always one row however large', () => {
  const t = tracker({ batchRows: 1_000, maxBytes: 1_000 });
  t.received(begin, 0);
  t.received(big('1', 5_000), 0); // larger than the whole budget
  t.received(big('2', 10), 0);
  t.received(commit(200n), 0);
  expect(t.take()!.events.map((e) => e.id)).toEqual(['1']);
});

test('reading resumes only once held bytes fall to half the budget, the batch in flight included', () => {
  const t = tracker({ batchRows: 1_000, maxBytes: 1_000 });
  t.received(begin, 0);
  for (const id of ['1', '2', '3']) t.received(big(id, 400), 0); // paused at 1,200
  const first = t.take()!; // one row: a second would pass half the budget
  expect(first.events).toHaveLength(1);
  expect(t.heldBytes()).toBe(1_200); // taken is still held until its fan-out is done
  expect(t.done(first, 0).resume).toBe(false); // 800 left > 500
  const second = t.take()!;
  expect(t.done(second, 0).resume).toBe(true); // 400 left
  expect(t.heldBytes()).toBe(400);
});
