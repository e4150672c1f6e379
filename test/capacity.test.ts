import { expect, test } from 'vitest';
import { createCapacity } from '../src/scheduler/capacity.ts';

test('reserve grants what is asked while there is room, and reserving exactly the room marks no backlog', () => {
  const c = createCapacity(8);
  expect(c.reserve(3)).toBe(3);
  expect(c.held()).toBe(3);
  expect(c.room()).toBe(5);
  expect(c.reserve(5)).toBe(5);
  expect(c.room()).toBe(0);
  expect(c.release(8)).toBe(false); // everything free, but no backlog was marked
  expect(c.held()).toBe(0);
});

test('reserve grants at most the room and marks a backlog when it falls short', () => {
  const c = createCapacity(8);
  expect(c.reserve(6)).toBe(6);
  expect(c.reserve(5)).toBe(2);
  expect(c.held()).toBe(8);
  expect(c.room()).toBe(0);
  expect(c.reserve(1)).toBe(0);
  expect(c.held()).toBe(8);
  expect(c.release(8)).toBe(true); // the backlog is remembered
});

test('release wakes the claimer only when a backlog is marked and a quarter of the capacity is free', () => {
  const c = createCapacity(8);
  expect(c.reserve(8)).toBe(8);
  expect(c.release(2)).toBe(false); // room for a quarter, but no backlog
  expect(c.reserve(3)).toBe(2); // short: backlog
  expect(c.release(1)).toBe(false); // 1 free, a quarter is 2
  expect(c.release(1)).toBe(true); // 2 free
  expect(c.release(1)).toBe(true); // still a backlog until the claimer catches up
});

test('markBacklog remembers rows waiting in the table without a short reserve', () => {
  const c = createCapacity(8);
  c.reserve(8);
  c.markBacklog();
  expect(c.release(1)).toBe(false);
  expect(c.release(1)).toBe(true);
});

test('with a capacity under four, one free place is enough to wake the claimer', () => {
  const c = createCapacity(3);
  expect(c.reserve(4)).toBe(3);
  expect(c.release(1)).toBe(true);
});

test('caughtUp clears the backlog', () => {
  const c = createCapacity(8);
  expect(c.reserve(10)).toBe(8);
  c.caughtUp();
  expect(c.release(8)).toBe(false);
  expect(c.reserve(2)).toBe(2);
  expect(c.release(2)).toBe(false);
});

test('stopAccepting leaves no room: reserve grants nothing and release never wakes the claimer', () => {
  const c = createCapacity(8);
  expect(c.reserve(3)).toBe(3);
  expect(c.accepting()).toBe(true);
  c.stopAccepting();
  expect(c.accepting()).toBe(false);
  expect(c.room()).toBe(0);
  expect(c.reserve(2)).toBe(0);
  expect(c.held()).toBe(3);
  c.markBacklog();
  expect(c.release(3)).toBe(false);
  expect(c.held()).toBe(0);
  expect(c.room()).toBe(0);
  expect(c.capacity).toBe(8);
});
