import { createPool, createTypeParserPreset, type DatabasePool } from 'slonik';
import { connectWith, parseDatabaseUrl } from './connection-options.ts';

export type { DatabasePool };

export type PoolOptions = {
  maximumPoolSize?: number;
  applicationName?: string;
  /** Server-side statement_timeout (default 60 s); migrations and repair scans run without one. */
  statementTimeoutMs?: number | 'DISABLE_TIMEOUT';
};

/**
 * A slonik pool. int8 arrives as a decimal string (ids stay exact and serialisable); counts are cast to int
 * in SQL. timestamptz arrives as epoch milliseconds. TLS as DATABASE_URL's sslmode says (see connection-options);
 * slonik connects once while creating the pool, so a certificate that does not verify fails here, at start.
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
  return connectWith(conn, (ssl) =>
    createPool(url.toString(), {
      ...(ssl === false ? {} : { ssl }),
      typeParsers,
      maximumPoolSize: options.maximumPoolSize ?? 10,
      connectionTimeout: 10_000,
      statementTimeout: options.statementTimeoutMs ?? 60_000,
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
