/** SQLSTATEs the relay branches on (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
export const SqlState = {
  OBJECT_IN_USE: '55006', // replication slot is active for another connection
  OBJECT_NOT_IN_PREREQUISITE_STATE: '55000', // e.g. slot invalidated (wal_status lost)
  UNDEFINED_OBJECT: '42704', // slot or publication does not exist
  DUPLICATE_OBJECT: '42710', // slot already exists
  FOREIGN_KEY_VIOLATION: '23503',
  UNIQUE_VIOLATION: '23505',
  ADMIN_SHUTDOWN: '57P01',
  CRASH_SHUTDOWN: '57P02',
  CANNOT_CONNECT_NOW: '57P03',
} as const;

export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];

/** The SQLSTATE of a pg/slonik error, looking through `cause` chains; undefined for non-database errors. */
export function sqlStateOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
