import { loadConfig } from '../../src/config.ts';
import type { LoginLimiter } from '../../src/console/auth.ts';
import { startConsole, type RunningConsole } from '../../src/console/start.ts';
import { createLogger } from '../../src/log.ts';
import type { TestDb } from './postgres.ts';
import { relayEnv } from './relay.ts';

export const FULL_TOKEN = 'full-token-0123456789abcdef';
export const READ_TOKEN = 'read-token-0123456789abcdef';

export type TestConsole = RunningConsole & {
  /** A JSON request to the API; `token` null sends no Authorization header. */
  api<T = unknown>(
    method: 'GET' | 'POST',
    path: string,
    options?: { token?: string | null; body?: unknown; headers?: Record<string, string> },
  ): Promise<{ status: number; body: T; headers: Headers }>;
};

/** The console in this process, on 127.0.0.1 and a free port, over the test's database. */
export async function startTestConsole(
  db: TestDb,
  env: Record<string, string> = {},
  options: { loginLimiter?: LoginLimiter } = {},
): Promise<TestConsole> {
  const config = loadConfig(
    relayEnv(db, { CONSOLE_PORT: '0', CONSOLE_TOKENS: FULL_TOKEN, CONSOLE_READ_TOKENS: READ_TOKEN, ...env }),
  );
  const running = await startConsole(config, createLogger(config.logLevel), options);
  return {
    ...running,
    async api(method, path, { token = FULL_TOKEN, body, headers = {} } = {}) {
      const res = await fetch(`${running.url}${path}`, {
        method,
        headers: {
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as never, headers: res.headers };
    },
  };
}
