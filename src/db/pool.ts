import { createPool, createTypeParserPreset, type DatabasePool } from 'slonik';

export type { DatabasePool };

export type PoolOptions = {
  maximumPoolSize?: number;
  applicationName?: string;
  /** Server-side statement_timeout (default 60 s); migrations and repair scans run without one. */
  statementTimeoutMs?: number | 'DISABLE_TIMEOUT';
};

/**
 * A slonik pool. int8 arrives as a decimal string (ids stay exact and serialisable); counts are cast to int
 * in SQL. timestamptz arrives as epoch milliseconds.
 */
export async function createDatabasePool(databaseUrl: string, options: PoolOptions = {}): Promise<DatabasePool> {
  const typeParsers = [
    ...createTypeParserPreset().filter((parser) => parser.name !== 'int8'),
    { name: 'int8', parse: (value: string) => value },
  ];
  const url = new URL(databaseUrl);
  if (options.applicationName !== undefined && !url.searchParams.has('application_name')) {
    url.searchParams.set('application_name', options.applicationName);
  }
  return createPool(url.toString(), {
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
  });
}
