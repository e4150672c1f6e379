import { test as base } from 'vitest';
import { cloneTemplate, type TestDb } from './support/postgres.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { spawnRelay, type RelayProcess } from './support/relay-process.ts';
import { startTestRelay, type TestRelay } from './support/relay.ts';

/** Starts an in-process relay on the test's database; it is stopped when the test ends, whatever happened. */
export type StartRelay = (env?: Record<string, string>, state?: 'streaming' | 'standby') => Promise<TestRelay>;
/** Spawns `outbox-relay <args>` as a child process; it is resumed and killed when the test ends. */
export type SpawnRelay = (env: Record<string, string>, args?: string | string[]) => RelayProcess;

/**
 * Each test gets its own database (with its own slot) and a fresh receiver. Relays started through `startRelay`
 * or `spawnRelay` are torn down before the database is dropped (fixtures tear down in reverse order), so a test
 * needs no try/finally of its own.
 */
export const test = base.extend<{ db: TestDb; receiver: Receiver; startRelay: StartRelay; spawnRelay: SpawnRelay }>({
  db: async ({}, use) => {
    const db = await cloneTemplate();
    await use(db);
    await db.drop();
  },

  receiver: async ({}, use) => {
    const receiver = await startReceiver();
    await use(receiver);
    await receiver.close();
  },

  startRelay: async ({ db }, use) => {
    const started: TestRelay[] = [];
    await use(async (env = {}, state = 'streaming') => {
      const relay = await startTestRelay(db, env, state);
      started.push(relay);
      return relay;
    });
    await Promise.all(started.map((relay) => relay.stop())); // stop() is idempotent: a test may stop one itself
  },

  spawnRelay: async ({}, use) => {
    const spawned: RelayProcess[] = [];
    await use((env, args) => {
      const relay = spawnRelay(env, args);
      spawned.push(relay);
      return relay;
    });
    for (const relay of spawned) {
      if (relay.child.exitCode !== null || relay.child.signalCode !== null) continue;
      relay.kill('SIGCONT'); // a test may have frozen it
      relay.kill('SIGKILL');
      await relay.exited;
    }
  },
});
