// Every SQLSTATE the relay branches on, and the classes it groups them into: one place, no lists elsewhere.
// https://www.postgresql.org/docs/current/errcodes-appendix.html

export const SqlState = {
  OBJECT_IN_USE: '55006', // replication slot is active for another connection
  OBJECT_NOT_IN_PREREQUISITE_STATE: '55000', // e.g. slot invalidated (wal_status lost)
  UNDEFINED_OBJECT: '42704', // slot or publication does not exist
  UNDEFINED_TABLE: '42P01',
  INVALID_SCHEMA_NAME: '3F000',
  DUPLICATE_OBJECT: '42710', // slot already exists
  FOREIGN_KEY_VIOLATION: '23503',
  UNIQUE_VIOLATION: '23505',
  CHECK_VIOLATION: '23514', // also raised by the schema's triggers: the per-tenant endpoint cap, tenant rules
  INVALID_AUTHORIZATION: '28000',
  INVALID_PASSWORD: '28P01',
  INVALID_CATALOG_NAME: '3D000', // no such database
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

/** The database server's own message of a pg/slonik error (slonik wraps it), looking through `cause` chains. */
export function databaseMessageOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof message === 'string') return message;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Classes 08 (connection), 57 (operator intervention: shutdown, cannot connect now), 53 (insufficient
 * resources) and 40 (rollback: serialization, deadlock): the statement may succeed if simply tried again.
 */
export function isTransient(state: string | undefined): boolean {
  return state !== undefined && /^(08|57|53|40)/.test(state);
}

/** The server refused us as a client: bad credentials, no such database, or not accepting connections yet. */
export function isConnectRefusal(state: string | undefined): boolean {
  return (
    state === SqlState.INVALID_AUTHORIZATION ||
    state === SqlState.INVALID_PASSWORD ||
    state === SqlState.INVALID_CATALOG_NAME ||
    state === SqlState.CANNOT_CONNECT_NOW
  );
}

/** The webhooks schema or one of its tables is missing: migrate has not run. */
export function isSchemaMissing(state: string | undefined): boolean {
  return state === SqlState.INVALID_SCHEMA_NAME || state === SqlState.UNDEFINED_TABLE;
}
