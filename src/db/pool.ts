import { createPool, createTypeParserPreset, type DatabasePool } from 'slonik';
import { connectWith, DB_CONNECT_TIMEOUT_MS, KEEPALIVE_IDLE_MS, parseDatabaseUrl } from './connection-options.ts';
import { createGuardedDriverFactory } from './driver.ts';

export type { DatabasePool };

export type PoolOptions = {
  maximumPoolSize?: number;
  applicationName?: string;
  /**
   * Server-side statement_timeout (default 60 s); migrations and repair scans run without one. The client gives
   * a statement up (and destroys its connection) at `statementDeadlineMs` of it.
   */
  statementTimeoutMs?: number | 'DISABLE_TIMEOUT';
};

/** How long after the server's statement_timeout the client gives up waiting for the answer (network delay). */
const DEADLINE_MARGIN_MS = 2_000;

/** When a statement's connection is abandoned: its statement_timeout plus a margin for the answer to travel. */
export const statementDeadlineMs = (statementTimeoutMs: number) => statementTimeoutMs + DEADLINE_MARGIN_MS;

/**
 * A slonik pool. int8 arrives as a decimal string (ids stay exact and serialisable); counts are cast to int
 * in SQL. timestamptz arrives as epoch milliseconds. TLS as DATABASE_URL's sslmode says (see connection-options);
 * slonik connects once while creating the pool, so a certificate that does not verify fails here, at start.
 * Every connection has TCP keepalive on, and every statement a client-side deadline (see driver.ts).
 */
export async function createDatabasePool(databaseUrl: string, options: PoolOptions = {}): Promise<DatabasePool> {
  const typeParsers = [
    ...createTypeParserPreset().filter((parser) => parser.name !== 'int8'),
    { name: 'int8', parse: (value: string) => value },
  ];
  const conn = parseDatabaseUrl(databaseUrl);
  const url = new URL(conn.url);
  if (options.applicationName !== undefined && !url.searchParams.has('application_name')) {
    url.searchParams.set('application_name', options.applicationName);
  }
  const statementTimeout = options.statementTimeoutMs ?? 60_000;
  const driverFactory = createGuardedDriverFactory({
    deadlineMs: statementTimeout === 'DISABLE_TIMEOUT' ? undefined : statementDeadlineMs(statementTimeout),
    keepAliveInitialDelayMs: KEEPALIVE_IDLE_MS,
  });
  return connectWith(conn, (ssl) =>
    createPool(url.toString(), {
      ...(ssl === false ? {} : { ssl }),
      driverFactory,
      typeParsers,
      maximumPoolSize: options.maximumPoolSize ?? 10,
      connectionTimeout: DB_CONNECT_TIMEOUT_MS,
      statementTimeout,
      idleInTransactionSessionTimeout: 60_000,
      // A sidecar's pool is small and busy; slonik's idle reaper also arms a timer that outlives pool.end()
      // and held every exit back by 5 s.
      idleTimeout: 'DISABLE_TIMEOUT',
      // The relay decides what to retry; slonik's own retries would hide a lost lease or a dead database.
      queryRetryLimit: 0,
      transactionRetryLimit: 0,
      connectionRetryLimit: 1,
    }),
  );
}
