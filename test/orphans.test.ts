// When rows claimed for this relay but not held are released (pure: a fake clock, no database).
import { describe, expect, test } from 'vitest';
import { createOrphanGuard } from '../src/scheduler/orphans.ts';

function guardAt(settleMs = 5_000) {
  const clock = { ms: 1_000 };
  const guard = createOrphanGuard({ settleMs, now: () => clock.ms });
  return { guard, clock };
}

const failing = () => Promise.reject(new Error('connection terminated'));

describe('when a release is due', () => {
  test('nothing is due until a claiming statement fails; then at once, and again settleMs after', async () => {
    const { guard, clock } = guardAt(5_000);
    await guard.claiming(() => Promise.resolve('rows'));
    expect(guard.dueInMs()).toBeUndefined();

    await expect(guard.claiming(failing)).rejects.toThrow('connection terminated');
    expect(guard.dueInMs()).toBe(0);
    await guard.exclusive(() => Promise.resolve(0));
    // A statement the server was still running when its connection broke commits by the deadline at the latest.
    expect(guard.dueInMs()).toBe(5_000);
    clock.ms += 5_000;
    expect(guard.dueInMs()).toBe(0);
    await guard.exclusive(() => Promise.resolve(0));
    expect(guard.dueInMs()).toBeUndefined();
  });

  test('a failed hand-back makes a release due too', () => {
    const { guard } = guardAt();
    guard.failed();
    expect(guard.dueInMs()).toBe(0);
  });

  test('a release that fails (the database still away) is retried, backing off to 2 s', async () => {
    const { guard, clock } = guardAt(60_000);
    guard.failed();
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      await expect(guard.exclusive(failing)).rejects.toThrow();
      waits.push(guard.dueInMs()!);
      clock.ms += waits.at(-1)!;
    }
    expect(waits).toEqual([250, 500, 1_000, 2_000, 2_000]);
    await guard.exclusive(() => Promise.resolve(0));
    expect(guard.dueInMs()).toBe(60_000 - 5_750); // only the late release is left
  });

  test('a failure during a release keeps a release due afterwards', async () => {
    const { guard } = guardAt();
    guard.failed();
    await guard.exclusive(() => {
      guard.failed(); // e.g. a hand-back: its rows may have left memory after the release read what is held
      return Promise.resolve(0);
    });
    expect(guard.dueInMs()).toBe(0);
  });
});

describe('a release never sees rows committed but not yet held', () => {
  test('it waits for claims in flight (with their results taken into memory), and claims wait for it', async () => {
    const { guard } = guardAt();
    const order: string[] = [];
    const claim = Promise.withResolvers<void>();
    const first = guard.claiming(async () => {
      await claim.promise;
      order.push('claim committed and accepted');
    });
    const release = guard.exclusive(async () => {
      order.push('release ran');
      await Promise.resolve();
      order.push('release done');
      return 0;
    });
    const second = guard.claiming(() => {
      order.push('later claim ran');
      return Promise.resolve();
    });
    await Promise.resolve();
    expect(order).toEqual([]); // the release waits for the claim in flight; the later claim for the release
    claim.resolve();
    await Promise.all([first, release, second]);
    expect(order).toEqual(['claim committed and accepted', 'release ran', 'release done', 'later claim ran']);
  });

  test('a release with no claim in flight runs at once; claims resume after a failed release', async () => {
    const { guard } = guardAt();
    await expect(guard.exclusive(failing)).rejects.toThrow();
    expect(await guard.claiming(() => Promise.resolve('rows'))).toBe('rows');
  });
});
