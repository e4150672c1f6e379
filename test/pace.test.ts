import { expect, test } from 'vitest';
import { createPace } from '../src/fanout/pace.ts';

test('a batch takes as many rows as their deliveries fit in the room, by the fan-out seen lately', () => {
  let room = 2_000;
  const pace = createPace(() => room);
  expect(pace.fits()).toBe(2_000); // one delivery per row until seen otherwise
  for (let i = 0; i < 20; i++) pace.observe(100, 1_000); // ten endpoints per event
  expect(pace.fits()).toBeGreaterThanOrEqual(199);
  expect(pace.fits()).toBeLessThanOrEqual(201);
  room = 0;
  expect(pace.fits()).toBe(16); // a full scheduler still moves
  for (let i = 0; i < 50; i++) pace.observe(100, 0); // rows no endpoint subscribes to
  room = 10;
  expect(pace.fits()).toBeGreaterThanOrEqual(10_000); // no fan-out: take whole batches
});
