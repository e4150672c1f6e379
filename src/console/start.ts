import type { AddressInfo } from 'node:net';
import { requireDatabaseUrl, type Config } from '../config.ts';
import { createDatabasePool } from '../db/pool.ts';
import { RelayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { createOperations } from '../ops/operations.ts';
import type { LoginLimiter } from './auth.ts';
import { buildConsole } from './server.ts';

/** How long `close` waits for requests in flight before it cuts the remaining connections. */
const CLOSE_GRACE_MS = 1_000;

export type RunningConsole = { url: string; close(): Promise<void> };

/**
 * Opens a small pool and serves the console and API on CONSOLE_HOST:CONSOLE_PORT. Refuses to start without a
 * token: the console never runs open. `close` stops accepting, finishes requests in flight and ends the pool.
 */
export async function startConsole(
  config: Config,
  log: Logger,
  { loginLimiter }: { loginLimiter?: LoginLimiter } = {},
): Promise<RunningConsole> {
  const { console: c } = config;
  if (c.tokens.length + c.readTokens.length === 0) {
    throw new RelayError(
      'CONFIG_INVALID',
      'the console needs at least one token: set CONSOLE_TOKENS (full access) and/or CONSOLE_READ_TOKENS (read-only), ' +
        'e.g. CONSOLE_TOKENS=$(openssl rand -base64 32)',
    );
  }
  const pool = await createDatabasePool(requireDatabaseUrl(config), {
    maximumPoolSize: 5,
    applicationName: 'outbox-relay console',
  });
  try {
    const app = await buildConsole(
      createOperations(pool, { slotName: config.slotName }),
      {
        tokens: c.tokens,
        readTokens: c.readTokens,
        sessionTtlMs: c.sessionTtlMs,
        secureCookie: c.secureCookie,
        loginLimiter,
      },
      log,
    );
    await app.listen({ host: c.host, port: c.port });
    const { address, port } = app.server.address() as AddressInfo;
    const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
    log.info({ url, fullTokens: c.tokens.length, readTokens: c.readTokens.length }, 'console listening');
    return {
      url,
      close: async () => {
        // Requests in flight finish; a browser's open keep-alive or preconnected sockets (a socket that never
        // carried a request counts as active, and would hold the close until the headers timeout) are cut after a short grace.
        const cut = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
        await app.close();
        clearTimeout(cut);
        await pool.end();
      },
    };
  } catch (err) {
    await pool.end();
    throw err;
  }
}
