import { expect, inject } from 'vitest';
import { test } from './fixtures.ts';
import { addEndpoint, countWhere, insertEvents, withAdmin } from './support/postgres.ts';
import { relayEnv } from './support/relay.ts';
import { untilReady } from './support/relay-process.ts';
import { until } from './support/until.ts';

test('a slot dropped while the relay was stopped: start fails loudly, readiness is red, repair recovers every delivery', async ({
  db,
  receiver,
  spawnRelay,
}) => {
  await addEndpoint(db, receiver.url);
  const env = relayEnv(db);
  const first = spawnRelay(env);
  await untilReady(first);
  await insertEvents(
    db,
    Array.from({ length: 10 }, (_, i) => ({ type: 'before', payload: `{"i": ${i}}` })),
  );
  await until(async () => (await countWhere(db, 'delivered')) === 10);
  first.kill('SIGTERM');
  expect((await first.exited).code).toBe(0);

  await withAdmin(inject('pgAdminUrl'), (c) => c.query('SELECT pg_drop_replication_slot($1)', [db.slotName]));
  const missed = await insertEvents(
    db,
    Array.from({ length: 20 }, (_, i) => ({ type: 'missed', payload: `{"i": ${i}}` })),
  );

  // With migrate on start (the default), the relay refuses to start and says what to do.
  const refused = spawnRelay(env);
  expect((await refused.exited).code).toBe(1);
  expect(refused.stderr()).toContain(`replication slot "${db.slotName}" is missing`);
  expect(refused.stderr()).toContain('outbox-relay repair --since');

  // Without it, the process stays up for health checks but is not ready, and the reason is in /readyz.
  const unready = spawnRelay({ ...env, MIGRATE_ON_START: 'false' });
  const body = await until(
    async () => {
      const port = unready.httpPort();
      if (port === undefined) return undefined;
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      const json = (await res.json()) as { stream: string; problem?: string };
      return res.status === 503 && json.stream === 'failed' ? json : undefined;
    },
    { what: 'readyz 503 with the slot problem' },
  );
  expect(body.problem).toContain('outbox-relay repair --since');
  // The log line travels through a pipe; readiness can answer before it has been read.
  await until(() => unready.logs.some((l) => l.level === 50 && String(l.msg).includes('is missing')), {
    what: 'the missing slot logged as an error',
  });
  // Stopped here, before the repair: part of the scenario, not teardown.
  unready.kill('SIGTERM');
  await unready.exited;

  const repair = spawnRelay(env, 'repair');
  // spawnRelay runs `outbox-relay repair` without arguments: a usage error, exit 2.
  expect((await repair.exited).code).toBe(2);
  const repaired = spawnRelay(env, ['repair', '--since', '1h', '--json']);
  expect((await repaired.exited).code).toBe(0);
  expect(JSON.parse(repaired.stdout())).toEqual({ slot: 'created', scanned: 30, fannedOut: 20, deliveries: 20 });
  const twice = spawnRelay(env, ['repair', '--since', '1h', '--json']);
  expect((await twice.exited).code).toBe(0);
  expect(JSON.parse(twice.stdout())).toEqual({ slot: 'kept', scanned: 30, fannedOut: 0, deliveries: 0 });

  const after = spawnRelay(env);
  await untilReady(after);
  await until(async () => (await countWhere(db, 'delivered')) === 30, { what: '30 delivered' });
  const ids = receiver.requests.map((r) => r.headers['webhook-id']);
  expect(ids).toHaveLength(30); // the 10 delivered before were not sent again
  for (const id of missed) expect(ids).toContain(`msg_${id}`);
});
