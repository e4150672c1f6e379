import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * JSON logs on stdout. Secrets, payloads and headers never reach a log call; the redact list is a second
 * line of defence for anything that slips into an error object.
 */
export function createLogger(level: LevelWithSilent, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: 'outbox-relay', ...bindings },
    redact: {
      paths: [
        'secret',
        '*.secret',
        'databaseUrl',
        '*.databaseUrl',
        'metricsToken',
        '*.metricsToken',
        'headers',
        '*.headers',
      ],
      censor: '[redacted]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
