export type RelayErrorCode =
  | 'CONFIG_INVALID'
  | 'SLOT_IN_USE'
  | 'SLOT_MISSING'
  | 'SLOT_INVALIDATED'
  | 'MIGRATION_FAILED'
  | 'STREAM_FAILED'
  | 'LEASE_LOST'
  | 'USAGE';

/** An error the relay understands; branch on `code`, never on `message`. */
export class RelayError extends Error {
  readonly code: RelayErrorCode;
  constructor(code: RelayErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RelayError';
    this.code = code;
  }
}
