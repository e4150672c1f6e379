import { sql, type DatabasePoolConnection } from 'slonik';
import { createDatabasePool } from './pool.ts';

export type Session = DatabasePoolConnection;

/** Serialises migrate and repair across replicas and processes: one key for the whole database. */
const MIGRATE_LOCK_KEY = 'outbox-relay:migrate';

/**
 * Runs `fn` on one database session (one connection, closed afterwards) holding the migrate advisory lock.
 * Migrate and repair need a session, not a pool: the lock is session-level, and a slot must be created outside
 * any transaction that has written. No statement timeout: a migration or a repair scan may take long.
 */
export async function withMigrateLock<T>(
  databaseUrl: string,
  applicationName: string,
  fn: (session: Session) => Promise<T>,
): Promise<T> {
  const pool = await createDatabasePool(databaseUrl, {
    maximumPoolSize: 1,
    applicationName,
    statementTimeoutMs: 'DISABLE_TIMEOUT',
  });
  try {
    return await pool.connect(async (session) => {
      await session.query(sql.unsafe`SELECT pg_advisory_lock(hashtext(${MIGRATE_LOCK_KEY}))`);
      try {
        return await fn(session);
      } finally {
        // The pool is closed next, which ends the session and its lock anyway; unlock so nothing depends on that.
        await session.query(sql.unsafe`SELECT pg_advisory_unlock(hashtext(${MIGRATE_LOCK_KEY}))`).catch(() => {});
      }
    });
  } finally {
    await pool.end();
  }
}
