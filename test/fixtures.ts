import { test as base } from 'vitest';
import { createLoginLimiter } from '../src/console/auth.ts';
import { startTestConsole, type TestConsole } from './support/console.ts';
import { cloneTemplate, type TestDb } from './support/postgres.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { spawnRelay, type RelayProcess } from './support/relay-process.ts';
import { startTestRelay, type TestRelay } from './support/relay.ts';
import { within } from './support/until.ts';

/** The longest any teardown may take: a relay's SHUTDOWN_GRACE in tests is 5 s, a clean stop far less. */
const TEARDOWN_MS = 30_000;

/** Starts an in-process relay on the test's database; it is stopped when the test ends, whatever happened. */
export type StartRelay = (env?: Record<string, string>, state?: 'streaming' | 'standby') => Promise<TestRelay>;
/** Spawns `outbox-relay <args>` as a child process; it is resumed and killed when the test ends. */
export type SpawnRelay = (env: Record<string, string>, args?: string | string[]) => RelayProcess;

/** Starts `outbox-relay console` in this process over the test's database (tokens: support/console.ts). */
export type StartConsole = (env?: Record<string, string>) => Promise<TestConsole>;

/**
 * Each test gets its own database (with its own slot) and a fresh receiver. Relays started through `startRelay`
 * or `spawnRelay` are torn down before the database is dropped (fixtures tear down in reverse order), so a test
 * needs no try/finally of its own.
 */
export const test = base.extend<{
  db: TestDb;
  receiver: Receiver;
  startRelay: StartRelay;
  spawnRelay: SpawnRelay;
  startConsole: StartConsole;
}>({
  db: async ({}, use) => {
    const db = await cloneTemplate();
    await use(db);
    await within(TEARDOWN_MS, 'dropping the test database', () => db.drop());
  },

  receiver: async ({}, use) => {
    const receiver = await startReceiver();
    await use(receiver);
    await within(TEARDOWN_MS, 'closing the receiver', () => receiver.close());
  },

  startRelay: async ({ db }, use) => {
    const started: TestRelay[] = [];
    await use(async (env = {}, state = 'streaming') => {
      const relay = await startTestRelay(db, env, state);
      started.push(relay);
      return relay;
    });
    // stop() is idempotent: a test may stop one itself.
    await Promise.all(
      started.map((relay) =>
        within(
          TEARDOWN_MS,
          `stopping relay ${relay.owner}`,
          relay.stop,
          () => `waiting for ${relay.unfinished().join(', ')}`,
        ),
      ),
    );
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
      await within(TEARDOWN_MS, 'a killed relay process exiting', () => relay.exited);
    }
  },

  startConsole: async ({ db }, use) => {
    const started: TestConsole[] = [];
    await use(async (env = {}) => {
      // Three failed sign-ins per address and minute, so a test can reach the limit quickly.
      const c = await startTestConsole(db, env, { loginLimiter: createLoginLimiter({ maxFailures: 3 }) });
      started.push(c);
      return c;
    });
    for (const c of started) await within(TEARDOWN_MS, 'closing the console', () => c.close());
  },
});
