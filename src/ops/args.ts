// Shared plumbing of the operator commands (status, endpoints, deliveries, replay): argument checks that end
// in exit 2 with the usage line, and a short-lived database pool.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { ConnectionError } from 'slonik';
import { loadConfig, parseDuration, requireDatabaseUrl, type Config } from '../config.ts';
import { createDatabasePool, type DatabasePool } from '../db/pool.ts';
import { isConnectRefusal, isSchemaMissing, sqlStateOf } from '../db/pg-errors.ts';
import { coerceError, RelayError } from '../errors.ts';
import { createOperations, type Operations } from './operations.ts';

export const usageError = (message: string, usage: string) => new RelayError('USAGE', `${message}\n${usage}`);

/** `--help` or `-h` anywhere: the command prints its usage on stdout and exits 0. */
export const wantsHelp = (args: readonly string[]) => args.includes('--help') || args.includes('-h');

/** node:util parseArgs, strict; an unknown flag or a missing value is a usage error (exit 2). */
export function parseCommand<const O extends ParseArgsOptionsConfig>(
  args: string[],
  options: O,
  usage: string,
  positionals = 0,
) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: positionals > 0, strict: true });
  } catch (err) {
    throw usageError(coerceError(err).message, usage);
  }
  if (parsed.positionals.length > positionals) {
    throw usageError(`unexpected argument "${parsed.positionals[positionals] ?? ''}"`, usage);
  }
  return parsed;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An endpoint id: a malformed one is a usage error, so it never reaches the database as a cast failure. */
export function uuidArg(value: string | undefined, what: string, usage: string): string {
  if (value === undefined) throw usageError(`${what}: an endpoint id is required`, usage);
  if (!UUID.test(value)) throw usageError(`${what}: expected an endpoint id (uuid), got "${value}"`, usage);
  return value.toLowerCase();
}

export function optionalUuid(value: string | undefined, what: string, usage: string): string | undefined {
  return value === undefined ? undefined : uuidArg(value, what, usage);
}

const DAY_MS = 86_400_000;

/** The longest duration a flag takes unless it says otherwise: 100 years, as far back as any history goes. */
export const MAX_DURATION_MS = 36_500 * DAY_MS;

/**
 * A duration flag (`30s`, `1h`, `7d`) in ms; `zeroOk` lets `0` through. Above `maxMs` it is a usage error naming
 * the maximum: an absurd value (`99999999999999999999d`, which is beyond a bigint of milliseconds, or Infinity)
 * would otherwise reach the database and fail there with a stack trace.
 */
export function durationArg(
  value: string | undefined,
  what: string,
  usage: string,
  { zeroOk = false, maxMs = MAX_DURATION_MS }: { zeroOk?: boolean; maxMs?: number } = {},
) {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || (ms === 0 && !zeroOk)) {
    throw usageError(`${what}: expected a duration such as 10m, 1h or 7d, got "${value}"`, usage);
  }
  if (!(ms <= maxMs)) throw usageError(`${what}: at most ${maxMs / DAY_MS}d, got "${value}"`, usage);
  return ms;
}

/** A tenant name, as the schema takes it: 1-255 characters. */
export function tenantArg(value: string | undefined, usage: string): string | undefined {
  if (value === undefined) return undefined;
  if (value.length < 1 || value.length > 255) {
    throw usageError(`--tenant: expected a tenant name of 1-255 characters, got "${value}"`, usage);
  }
  return value;
}

export function intArg(value: string | undefined, what: string, usage: string, fallback: number, max: number) {
  if (value === undefined) return fallback;
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw usageError(`${what}: expected a whole number 1-${max}, got "${value}"`, usage);
  }
  return n;
}

export function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], what: string, usage: string) {
  if (value === undefined || (allowed as readonly string[]).includes(value)) return value as T | undefined;
  throw usageError(`${what}: expected one of ${allowed.join(', ')}, got "${value}"`, usage);
}

/** `a,b, c` → ['a','b','c']; empty items are refused rather than silently dropped. */
export function listArg(value: string | undefined, what: string, usage: string, item: RegExp = /^.{1,255}$/) {
  if (value === undefined) return undefined;
  const items = value.split(',').map((s) => s.trim());
  const bad = items.find((s) => !item.test(s));
  if (bad !== undefined) throw usageError(`${what}: cannot read "${bad}" in "${value}"`, usage);
  return items;
}

/** Writes `outbox-relay: <message>` to stderr (as main.ts does for errors) and returns exit code 1. */
export function fail(message: string): number {
  process.stderr.write(`outbox-relay: ${message}\n`);
  return 1;
}

export const printJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
export const printText = (lines: string[]) => process.stdout.write(`${lines.join('\n')}\n`);

/**
 * Loads the configuration, opens a small pool for one command and always closes it. An unreachable database or
 * a database without the schema becomes one readable line and exit 1 instead of a stack trace.
 */
export async function withDatabase(
  command: string,
  fn: (pool: DatabasePool, config: Config) => Promise<number>,
  config: Config = loadConfig(),
): Promise<number> {
  let pool: DatabasePool | undefined;
  try {
    pool = await createDatabasePool(requireDatabaseUrl(config), {
      maximumPoolSize: 3,
      applicationName: `outbox-relay ${command}`,
    });
    return await fn(pool, config);
  } catch (err) {
    const state = sqlStateOf(err);
    if (err instanceof ConnectionError || isNetworkError(err) || isConnectRefusal(state)) {
      return fail(`cannot connect to the database: ${causeMessage(coerceError(err))}`);
    }
    if (isSchemaMissing(state)) {
      return fail('schema "webhooks" is missing or incomplete: run "outbox-relay migrate" first');
    }
    throw err;
  } finally {
    await pool?.end();
  }
}

/** A socket-level failure (ECONNREFUSED, ENOTFOUND, ETIMEDOUT, …): the error Node raises carries a syscall. */
function isNetworkError(err: unknown): boolean {
  return typeof (err as { syscall?: unknown } | null)?.syscall === 'string';
}

function causeMessage(err: Error): string {
  const cause = err.cause;
  return cause instanceof Error && cause.message !== '' ? cause.message : err.message;
}

/** withDatabase, handing the command the shared operations (src/ops/operations.ts) instead of the pool. */
export const withOperations = (
  command: string,
  fn: (ops: Operations, config: Config) => Promise<number>,
  config: Config = loadConfig(),
): Promise<number> =>
  withDatabase(command, (pool, c) => fn(createOperations(pool, { slotName: c.slotName }), c), config);
