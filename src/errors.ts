export type RelayErrorCode =
  /** A bad environment variable; the message names each one and how to fix it. */
  | 'CONFIG_INVALID'
  /** Another connection streams the slot (SQLSTATE 55006): stand by and retry. */
  | 'SLOT_IN_USE'
  /** The slot does not exist though the schema does: events may have been missed; run repair. */
  | 'SLOT_MISSING'
  /** The server invalidated the slot (wal_status lost): events may have been missed; run repair. */
  | 'SLOT_INVALIDATED'
  | 'MIGRATION_FAILED'
  /** The database server's TLS certificate did not verify (sslmode verify-ca / verify-full, or require with a CA). */
  | 'DB_TLS_UNVERIFIED'
  /** `run` found no migrated schema (MIGRATE_ON_START=false and nobody ran migrate). */
  | 'SCHEMA_MISSING'
  /** The replication stream broke (server gone, watchdog, protocol error): rebuild it from the slot. */
  | 'STREAM_FAILED'
  | 'LEASE_LOST'
  /** A database statement got no answer within its deadline: its connection was abandoned (a silent link). */
  | 'DB_DEADLINE'
  /** A supervised loop ended or failed while the relay was not stopping: the relay stops and exits non-zero. */
  | 'LOOP_FAILED'
  | 'USAGE'
  /** An operator request (CLI, management API or console) breaks an operations rule; the message says which. */
  | 'INVALID_REQUEST';

/** An error the relay understands; branch on `code`, never on `message`. */
export class RelayError extends Error {
  readonly code: RelayErrorCode;
  constructor(code: RelayErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RelayError';
    this.code = code;
  }
}

export function isRelayError(err: unknown, code?: RelayErrorCode): err is RelayError {
  return err instanceof RelayError && (code === undefined || err.code === code);
}

/** Anything thrown, as an Error: a thrown string or object keeps its text, and the original stays as `cause`. */
export function coerceError(err: unknown): Error {
  if (err instanceof Error) return err;
  let text: string;
  try {
    text = typeof err === 'string' ? err : JSON.stringify(err);
  } catch {
    text = String(err);
  }
  return new Error(text, { cause: err });
}
