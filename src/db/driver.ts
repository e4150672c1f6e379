// The slonik driver: node-postgres clients built as slonik's own driver (@slonik/pg-driver) builds them, plus
// what a flaky link needs and that driver cannot be told: TCP keepalive on every connection, and a client-side
// deadline on every statement. slonik's statement timeout is server-side, and a black-holed connection never
// answers, so without a deadline a statement on it would hold its caller and its pool slot forever.
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import {
  BackendTerminatedError,
  createDriverFactory,
  parseDsn,
  StatementTimeoutError,
  type DriverConfiguration,
  type DriverFactory,
  type DriverTypeParser,
} from 'slonik';
import { RelayError } from '../errors.ts';

export type LinkGuards = {
  /**
   * A statement with no answer after this long is given up and its connection destroyed (the pool opens a
   * fresh one). Set it above the server's statement_timeout, so a merely slow statement ends on the server
   * first. Undefined: no deadline (migrations, repair scans).
   */
  deadlineMs: number | undefined;
  /** TCP keepalive: an idle connection is probed after this long, then every 1 s, 10 times (Node's settings). */
  keepAliveInitialDelayMs: number;
};

/** How long a clean close (Terminate, then FIN) may take before the socket is simply destroyed. */
const END_GRACE_MS = 1_000;

/** A connection of the pool, as the deadline sees it. */
type Live = { socket: () => Socket; openedAt: number };

/**
 * A slonik DriverFactory whose connections carry `guards`. A statement that misses its deadline means the path
 * to the server is dead (the server's statement_timeout would have answered first): its connection is reset,
 * and so is every connection opened before that statement began. They crossed the same path, and would
 * otherwise each cost their next caller (or the one waiting now) another deadline, or wait for keepalive.
 */
export function createGuardedDriverFactory(guards: LinkGuards): DriverFactory {
  return createDriverFactory(async ({ driverConfiguration }) => {
    const config = clientConfig(driverConfiguration, guards);
    const types = { getTypeParser: await typeOverrides(config, driverConfiguration.typeParsers, guards) };
    const live = new Set<Live>();
    const pathDied = (startedAt: number) => {
      for (const other of live) {
        if (other.openedAt >= startedAt) continue;
        live.delete(other);
        abandon(other.socket());
      }
    };
    return {
      // slonik awaits this; nothing here is asynchronous until connect().
      createPoolClient: ({ clientEventEmitter }) => {
        const client = new pg.Client({ ...config, types });
        const self: Live = { socket: () => client.connection.stream as Socket, openedAt: Infinity };
        // A socket error after this connection left the pool (nobody listens then) must not crash the process.
        client.on('error', (err) => {
          if (clientEventEmitter.listenerCount('error') > 0) clientEventEmitter.emit('error', err);
        });
        return Promise.resolve({
          connect: async () => {
            await client.connect();
            self.openedAt = performance.now();
            live.add(self);
          },
          end: async () => {
            live.delete(self);
            const socket = self.socket();
            await Promise.race([client.end().catch(() => {}), sleep(END_GRACE_MS, undefined, { ref: false })]);
            if (!socket.destroyed) socket.destroy(); // a silent peer never acknowledges the close: no half-open socket
          },
          query: async (text, values, queryOptions) => {
            let expired = false;
            const startedAt = performance.now();
            const timer =
              guards.deadlineMs === undefined
                ? undefined
                : setTimeout(() => {
                    expired = true;
                    live.delete(self);
                    abandon(self.socket());
                    pathDied(startedAt);
                  }, guards.deadlineMs);
            try {
              const result = await client.query({
                text,
                ...(values === undefined ? {} : { values }),
                ...(queryOptions?.name === undefined ? {} : { name: queryOptions.name }),
              });
              return {
                command: result.command as 'SELECT',
                fields: result.fields.map((field) => ({ dataTypeId: field.dataTypeID, name: field.name })),
                rowCount: result.rowCount,
                rows: result.rows as Record<string, unknown>[],
              };
            } catch (err) {
              if (expired) {
                throw new RelayError(
                  'DB_DEADLINE',
                  `the database did not answer within ${guards.deadlineMs} ms; the connection was abandoned`,
                  { cause: err },
                );
              }
              throw wrapError(err);
            } finally {
              clearTimeout(timer);
            }
          },
          stream: () => {
            throw new Error('streaming queries are not supported by this driver');
          },
        });
      },
    };
  });
}

/**
 * Resets the connection (RST, unsent bytes discarded, so a statement still queued in the kernel can never reach
 * the server later); a TLS socket, which cannot be reset from here, is destroyed.
 */
function abandon(socket: Socket): void {
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** Errors slonik itself branches on, as its own driver wraps them; everything else as pg raised it (SQLSTATE in `code`). */
function wrapError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const code = (err as { code?: unknown }).code;
  if (/^connection terminated$/i.test(err.message) || code === '57P01') return new BackendTerminatedError(err);
  if (code === '57014' && !err.message.includes('canceling statement due to user request')) {
    return new StatementTimeoutError(err);
  }
  return err;
}

type ClientConfig = pg.ClientConfig & { queryMode?: 'extended' };

function clientConfig(d: DriverConfiguration, guards: LinkGuards): ClientConfig {
  const dsn = parseDsn(d.connectionUri);
  const timeout = (value: 'DISABLE_TIMEOUT' | number) => (value === 'DISABLE_TIMEOUT' ? undefined : Math.max(1, value));
  const statementTimeout = timeout(d.statementTimeout);
  const idleInTransactionTimeout = timeout(d.idleInTransactionSessionTimeout);
  const connectTimeout = timeout(d.connectionTimeout);
  const password = typeof d.password === 'string' ? d.password : dsn.password;
  return {
    ...(dsn.host === undefined ? {} : { host: dsn.host }),
    ...(dsn.port === undefined ? {} : { port: dsn.port }),
    ...(dsn.databaseName === undefined ? {} : { database: dsn.databaseName }),
    ...(dsn.username === undefined ? {} : { user: dsn.username }),
    ...(password === undefined ? {} : { password }),
    ...(dsn.applicationName === undefined ? {} : { application_name: dsn.applicationName }),
    ...(dsn.options === undefined ? {} : { options: dsn.options }),
    ssl:
      d.ssl ?? (dsn.sslMode === 'require' ? true : dsn.sslMode === 'no-verify' ? { rejectUnauthorized: false } : false),
    // Always the extended protocol, as slonik's driver does (parameters stay out of the SQL text).
    queryMode: 'extended',
    keepAlive: true,
    keepAliveInitialDelayMillis: guards.keepAliveInitialDelayMs,
    ...(connectTimeout === undefined ? {} : { connectionTimeoutMillis: connectTimeout }),
    ...(statementTimeout === undefined ? {} : { statement_timeout: statementTimeout }),
    ...(idleInTransactionTimeout === undefined
      ? {}
      : { idle_in_transaction_session_timeout: idleInTransactionTimeout }),
  };
}

type ArrayParser = { create(source: string, transform: (entry: string) => unknown): { parse(): unknown[] } };

/** The configured type parsers by oid (and their array types), looked up once over a connection of their own. */
async function typeOverrides(
  config: ClientConfig,
  parsers: readonly DriverTypeParser[],
  guards: LinkGuards,
): Promise<(oid: number) => (value: string) => unknown> {
  const client = new pg.Client({
    ...config,
    ...(guards.deadlineMs === undefined ? {} : { query_timeout: guards.deadlineMs }),
  });
  client.on('error', () => {});
  let rows: { oid: number; typarray: number; typname: string }[];
  try {
    await client.connect();
    ({ rows } = await client.query<{ oid: number; typarray: number; typname: string }>(
      'SELECT oid, typarray, typname FROM pg_type WHERE typname = ANY ($1::text[])',
      [parsers.map((p) => p.name)],
    ));
  } finally {
    await client.end().catch(() => {});
  }
  const arrays = (pg.types as unknown as { arrayParser: ArrayParser }).arrayParser;
  const byOid = new Map<number, (value: string) => unknown>();
  for (const parser of parsers) {
    const type = rows.find((row) => row.typname === parser.name);
    if (type === undefined) throw new Error(`database type "${parser.name}" not found`);
    byOid.set(type.oid, (value) => parser.parse(value));
    if (type.typarray !== 0) byOid.set(type.typarray, (value) => arrays.create(value, parser.parse).parse());
  }
  return (oid) => byOid.get(oid) ?? (pg.types.getTypeParser(oid) as (value: string) => unknown);
}
