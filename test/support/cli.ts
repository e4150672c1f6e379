import { once } from 'node:events';
import type { TestDb } from './postgres.ts';
import { relayEnv } from './relay.ts';
import { spawnRelay } from './relay-process.ts';

/** Runs `outbox-relay <args>` as a child process; resolves once it exited and its output is complete. */
export async function cli(db: TestDb, args: string[], env: Record<string, string> = {}) {
  const child = spawnRelay(relayEnv(db, env), args);
  const [code] = (await once(child.child, 'close')) as [number | null];
  return {
    code,
    stdout: child.stdout(),
    stderr: child.stderr(),
    json: <T = unknown>() => JSON.parse(child.stdout()) as T,
  };
}
