import { parseArgs } from 'node:util';
import { loadConfig, parseDuration, requireDatabaseUrl } from '../config.ts';
import { repair } from '../db/repair.ts';
import { coerceError, RelayError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { MAX_DURATION_MS } from '../ops/args.ts';

const USAGE = 'usage: outbox-relay repair --since <duration> [--json]   e.g. --since 24h';

/** `outbox-relay repair --since 24h`: recreate a lost slot and fan out the window's rows that have no deliveries. */
export async function main(args: string[]): Promise<number> {
  let values: { since?: string; json?: boolean };
  try {
    ({ values } = parseArgs({ args, options: { since: { type: 'string' }, json: { type: 'boolean' } } }));
  } catch (err) {
    throw new RelayError('USAGE', `${coerceError(err).message}\n${USAGE}`);
  }
  const sinceMs = values.since === undefined ? undefined : parseDuration(values.since);
  if (sinceMs === undefined || sinceMs <= 0)
    throw new RelayError('USAGE', `--since: expected a duration such as 24h\n${USAGE}`);
  if (!(sinceMs <= MAX_DURATION_MS)) {
    throw new RelayError('USAGE', `--since: at most ${MAX_DURATION_MS / 86_400_000}d, got "${values.since}"\n${USAGE}`);
  }
  const config = loadConfig();
  const log = createLogger(values.json === true ? 'silent' : config.logLevel, { workerId: config.workerId });
  const result = await repair({ databaseUrl: requireDatabaseUrl(config), slotName: config.slotName, sinceMs, log });
  process.stdout.write(
    values.json === true
      ? `${JSON.stringify(result)}\n`
      : `slot ${config.slotName}: ${result.slot}\nscanned ${result.scanned} outbox rows; fanned out ${result.fannedOut} ` +
          `that had no deliveries (${result.deliveries} deliveries created, pending)\n`,
  );
  return 0;
}
