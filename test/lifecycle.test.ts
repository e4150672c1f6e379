import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'slonik';
import { expect, test as unit } from 'vitest';
import { z } from 'zod';
import { loadConfig } from '../src/config.ts';
import { isRelayError } from '../src/errors.ts';
import { createReleasers } from '../src/lifecycle/releasers.ts';
import { supervise } from '../src/lifecycle/supervise.ts';
import { createLogger } from '../src/log.ts';
import { buildRelay } from '../src/relay.ts';
import { test } from './fixtures.ts';
import { addEndpoint, cloneTemplate, insertEvents, type TestDb } from './support/postgres.ts';
import { relayEnv } from './support/relay.ts';
import { until } from './support/until.ts';

const log = createLogger('silent');

/** Sessions the relay opened on this test's database (its pool and its replication stream). */
const relaySessions = (db: TestDb) =>
  db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE datname = current_database() AND application_name LIKE 'outbox-relay%'`);

unit('releases run last-opened first, every one even after a failure, and the first failure is thrown', async () => {
  const { hold, releaseAll } = createReleasers();
  const order: string[] = [];
  hold('pool', (r) => void order.push(r));
  hold('http', () => {
    order.push('http');
    throw new Error('http close failed');
  });
  hold('server', (r) => {
    order.push(r);
    return Promise.reject(new Error('server close failed'));
  });
  await expect(releaseAll()).rejects.toThrow('server close failed');
  expect(order).toEqual(['server', 'http', 'pool']);
  await expect(releaseAll()).rejects.toThrow('server close failed'); // idempotent: nothing runs twice
  expect(order).toHaveLength(3);
});

unit('stages stop in order, each after the one before has finished and its after step has run', async () => {
  const events: string[] = [];
  const loop = (name: string) => async (signal: AbortSignal) => {
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    await sleep(5);
    events.push(`${name} done`);
  };
  const stop = new AbortController();
  const supervised = supervise(
    [
      { loops: { a: loop('a'), b: loop('b') }, after: () => Promise.resolve(void events.push('drained')) },
      { loops: { writer: loop('writer') } },
      { loops: { heartbeat: loop('heartbeat') } },
    ],
    stop.signal,
    log,
    () => events.push('stopping'),
  );
  await sleep(20);
  expect(events).toEqual([]);
  stop.abort();
  await supervised;
  expect(events.slice(0, 1)).toEqual(['stopping']);
  expect(events.slice(1, 3).sort()).toEqual(['a done', 'b done']);
  expect(events.slice(3)).toEqual(['drained', 'writer done', 'heartbeat done']);
});

unit('a loop that rejects stops every other loop and supervise rejects with LOOP_FAILED naming it', async () => {
  const stopped: string[] = [];
  const waiter = (name: string) => async (signal: AbortSignal) => {
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    stopped.push(name);
  };
  const never = new AbortController(); // nobody asks it to stop
  const err = await supervise(
    [
      {
        loops: {
          steady: waiter('steady'),
          broken: async () => {
            await sleep(10);
            throw new Error('socket exploded');
          },
        },
      },
      { loops: { heartbeat: waiter('heartbeat') } },
    ],
    never.signal,
    log,
  ).catch((e: unknown) => e);
  expect(isRelayError(err, 'LOOP_FAILED')).toBe(true);
  expect((err as Error).message).toContain('broken');
  expect((err as Error).message).toContain('socket exploded');
  expect(stopped).toEqual(['steady', 'heartbeat']);
});

unit('a loop that returns while nobody asked it to stop is a failure too', async () => {
  const err = await supervise([{ loops: { quitter: async () => {} } }], new AbortController().signal, log).catch(
    (e: unknown) => e,
  );
  expect(isRelayError(err, 'LOOP_FAILED')).toBe(true);
  expect((err as Error).message).toContain('the quitter loop ended on its own');
});

test('a relay loop that dies stops the whole relay: run() rejects and the pool, stream and port are closed', async ({
  db,
  receiver,
}) => {
  await addEndpoint(db, receiver.url);
  const config = loadConfig(relayEnv(db));
  const die = Promise.withResolvers<void>();
  const relay = await buildRelay(config, log, {
    doomed: () => die.promise.then(() => Promise.reject(new Error('boom'))),
  });
  const running = relay.run(new AbortController().signal).catch((e: unknown) => e);
  await until(() => relay.streamState() === 'streaming', { what: 'streaming' });
  await insertEvents(db, [{ type: 'x', payload: '{}' }]);
  await until(() => receiver.requests.length === 1, { what: 'the relay works before the loop dies' });
  expect(await relaySessions(db)).toBeGreaterThan(0);

  die.resolve();
  const err = await running;
  expect(isRelayError(err, 'LOOP_FAILED')).toBe(true);
  expect((err as Error).message).toContain('doomed');
  expect(relay.streamState()).toBe('stopped');
  await expect(fetch(`http://127.0.0.1:${relay.httpPort}/healthz`)).rejects.toThrow();
  await until(async () => (await relaySessions(db)) === 0, { what: 'every relay session closed' });
});

test('a start that fails half-way (HTTP_PORT taken) exits 1 on its own with one clear line, leaving no session', async ({
  db,
  spawnRelay,
}) => {
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '0.0.0.0', resolve));
  const port = (squatter.address() as AddressInfo).port;
  try {
    const relay = spawnRelay(relayEnv(db, { HTTP_PORT: String(port) }));
    // The pool and the HTTP agent are open before the port is bound; only releasing them lets the process end.
    const { code } = await relay.exited;
    expect(code).toBe(1);
    expect(relay.stderr()).toContain(`HTTP_PORT: port ${port} is already in use`);
    expect(relay.stderr()).not.toContain('    at ');
    expect(await relaySessions(db)).toBe(0);
  } finally {
    squatter.close();
  }
});

test('run with MIGRATE_ON_START=false on a database that was never migrated stops at once and says what to run', async ({
  spawnRelay,
}) => {
  const db = await cloneTemplate({ slot: false });
  try {
    await db.pool.query(sql.unsafe`DROP SCHEMA webhooks CASCADE`);
    const relay = spawnRelay(relayEnv(db, { MIGRATE_ON_START: 'false' }));
    expect((await relay.exited).code).toBe(1);
    expect(relay.stderr()).toContain('schema "webhooks" is not migrated in this database: run "outbox-relay migrate"');
  } finally {
    await db.drop();
  }
});
