import { expect, test } from 'vitest';
import { createCapacity } from '../src/scheduler/capacity.ts';

/** Reserves `n` places and admits them all for one endpoint, as a claim or fan-out that filled them would. */
const hold = (c: ReturnType<typeof createCapacity>, endpointId: string, n: number) =>
  c.admit(
    c.reserve(n),
    Array.from({ length: n }, () => endpointId),
  );

test('reserve grants what is asked while there is room, and reserving exactly the room marks no backlog', () => {
  const c = createCapacity(10);
  expect(c.reserve(4)).toBe(4);
  expect(c.held()).toBe(4);
  expect(c.reserve(6)).toBe(6);
  expect(c.room()).toBe(0);
  expect(c.release('A', 0)).toBe(false); // no backlog: nothing to wake for
});

test('reserve grants at most the room and marks a backlog when it falls short', () => {
  const c = createCapacity(8);
  hold(c, 'A', 6);
  expect(c.reserve(5)).toBe(2);
  c.admit(2, []);
  // Backlog marked: freeing a quarter of the capacity (2) wakes the claimer.
  hold(c, 'A', 2);
  expect(c.release('A', 1)).toBe(false);
  expect(c.release('A', 1)).toBe(true);
});

test('admit turns reserved places into per-endpoint places and frees the unused ones', () => {
  const c = createCapacity(10);
  const reserved = c.reserve(5);
  c.admit(reserved, ['A', 'A', 'B']);
  expect(c.held()).toBe(3);
  expect(c.heldBy('A')).toBe(2);
  expect(c.heldBy('B')).toBe(1);
  c.release('A', 2);
  expect(c.heldBy('A')).toBe(0);
  expect(c.quotas().endpointIds).toEqual(['B']); // an endpoint holding nothing is forgotten
});

test('fair share: with n endpoints holding places each may hold capacity / (n + 1), a newcomer capacity / (n + 2)', () => {
  const c = createCapacity(12);
  expect(c.quotas()).toEqual({ endpointIds: [], quotas: [], fresh: 6 }); // alone, an endpoint may take half
  hold(c, 'A', 4);
  expect(c.share()).toBe(6);
  expect(c.quotas()).toEqual({ endpointIds: ['A'], quotas: [2], fresh: 4 });
  hold(c, 'B', 1);
  expect(c.share()).toBe(4);
  // A is at its share of three: nothing new for it; B may take 3 more; a third endpoint 4.
  expect(c.quotas()).toEqual({ endpointIds: ['A', 'B'], quotas: [0, 3], fresh: 3 });
});

test('a slow endpoint that filled the scheduler first cannot take the places a newcomer needs', () => {
  const c = createCapacity(2000);
  hold(c, 'slow', c.quotas().fresh); // alone it may take half
  expect(c.heldBy('slow')).toBe(1000);
  expect(c.quotaOf('slow')).toBe(0);
  // The other half stays free: a newcomer's first deliveries go in at once.
  expect(c.quotas().fresh).toBe(666);
  expect(c.room()).toBe(1000);
  hold(c, 'fast', 10);
  // Now three ways: the slow one gets nothing new until it drains below 666.
  expect(c.quotaOf('slow')).toBe(0);
  c.release('slow', 400);
  expect(c.quotaOf('slow')).toBe(66);
});

test('an endpoint left with due rows by its quota wakes the claimer once a quarter of its share is free', () => {
  const c = createCapacity(100);
  hold(c, 'A', 50); // share 50: at its share
  c.claimed(['A'], false); // the claim left A's rows: quota, not total
  const wakes = Array.from({ length: 12 }, () => c.release('A', 1));
  expect(wakes.indexOf(true)).toBe(11); // 12 freed ≥ 50/4: worth one claim, not one per completion
  // An endpoint with nothing waiting never wakes the claimer on its own account.
  hold(c, 'B', 10);
  expect(c.release('B', 1)).toBe(false);
});

test('a claim that stopped at its total keeps the backlog; one that saw everything clears it', () => {
  const c = createCapacity(8);
  c.markBacklog();
  hold(c, 'A', 2);
  expect(c.release('A', 2)).toBe(true);
  c.claimed([], false);
  hold(c, 'A', 2);
  expect(c.release('A', 2)).toBe(false);
  c.claimed([], true);
  hold(c, 'A', 2);
  expect(c.release('A', 2)).toBe(true);
});

test('with a capacity under four, one free place is enough to wake the claimer', () => {
  const c = createCapacity(3);
  hold(c, 'A', 3);
  c.markBacklog();
  expect(c.release('A', 1)).toBe(true);
});

test('stopAccepting leaves no room: reserve grants nothing and release never wakes the claimer', () => {
  const c = createCapacity(10);
  hold(c, 'A', 4);
  c.markBacklog();
  c.stopAccepting();
  expect(c.room()).toBe(0);
  expect(c.reserve(3)).toBe(0);
  expect(c.release('A', 4)).toBe(false);
});

test('with large payloads the byte budget binds before the count, but one place is always free when empty', () => {
  const c = createCapacity(1_000, 10_000);
  expect(c.room()).toBe(9); // 10,000 bytes at the starting estimate of 1 KiB each
  for (let i = 0; i < 100; i++) c.holdBytes(5_000); // the estimate learns the real size
  c.dropBytes(500_000);
  expect(c.room()).toBeLessThanOrEqual(3);
  c.holdBytes(9_000);
  expect(c.room()).toBe(1); // nothing held by count: a payload as large as the budget still goes, alone
  c.admit(c.reserve(1), ['A']);
  expect(c.room()).toBe(0);
});

test('a backlog marked while a claim ran survives that claim’s result', () => {
  const c = createCapacity(8);
  const before = c.marks();
  c.markBacklog(); // fan-out left rows pending while the claim was in flight
  c.claimed([], false, before); // the claim saw nothing: its snapshot predates those rows
  hold(c, 'A', 2);
  expect(c.release('A', 2)).toBe(true);
});
