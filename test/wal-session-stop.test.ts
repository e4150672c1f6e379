// A stop that comes while a replication session is still starting must end it. The session registers its abort
// listener, then reads the slot's position and prepares (loads endpoints): a stop during those awaits used to be
// recorded and then waited for again with a listener on an already-aborted signal, so the session, and with it
// the relay's stop, never ended (a CI run stalled on one such stop).
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import { createLogger } from '../src/log.ts';
import { runWalSession, type WalSessionOptions } from '../src/replication/wal-stream.ts';
import { test } from './fixtures.ts';
import type { TestDb } from './support/postgres.ts';

function options(db: TestDb, extra: Partial<WalSessionOptions>): WalSessionOptions {
  return {
    databaseUrl: db.url,
    slotName: db.slotName,
    publicationName: db.publicationName,
    statusIntervalMs: 1_000,
    streamIdleTimeoutMs: 60_000,
    fanoutBatch: 100,
    maxQueuedBytes: 16 * 2 ** 20,
    log: createLogger('silent'),
    fanOut: () => Promise.resolve({ resolved: Promise.resolve() }),
    confirmedLsn: () => Promise.resolve(undefined),
    onStreaming: () => {},
    ...extra,
  };
}

// The stop comes inside each await the session makes before it streams.
const during = {
  'reads the slot position': (stop: AbortController): Partial<WalSessionOptions> => ({
    confirmedLsn: async () => {
      stop.abort();
      await sleep(50);
      return undefined;
    },
  }),
  'prepares (loads endpoints)': (stop: AbortController): Partial<WalSessionOptions> => ({
    prepare: async () => {
      stop.abort();
      await sleep(50);
      return { liveAfter: undefined, endpointsPublication: undefined };
    },
  }),
};

for (const [step, hook] of Object.entries(during)) {
  test(`a stop while the session ${step} ends the session`, async ({ db }) => {
    const stop = new AbortController();
    const session = runWalSession(options(db, hook(stop)), stop.signal);
    const outcome = await Promise.race([session.then(() => 'ended'), sleep(5_000).then(() => 'still running')]);
    expect(outcome).toBe('ended');
  });
}
