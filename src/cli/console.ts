import { once } from 'node:events';
import { loadConfig } from '../config.ts';
import { startConsole } from '../console/start.ts';
import { createLogger } from '../log.ts';
import { parseCommand, printText, wantsHelp } from '../ops/args.ts';

const USAGE = `usage: outbox-relay console

  Serves the operator console (HTML) and the management API (/api/v1, OpenAPI at /api/v1/openapi.json) on
  CONSOLE_HOST (default 127.0.0.1) : CONSOLE_PORT (default 8081), over DATABASE_URL. Every request needs a token:
  CONSOLE_TOKENS (comma-separated, full access) or CONSOLE_READ_TOKENS (read-only); browsers sign in once and
  hold a session cookie. Never part of "run". SIGTERM/SIGINT: finish requests in flight and exit 0.`;

/** `outbox-relay console`: the web console and REST API, a process of its own. */
export async function main(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    printText([USAGE]);
    return 0;
  }
  parseCommand(args, {}, USAGE);
  const config = loadConfig();
  const log = createLogger(config.logLevel, { component: 'console' });
  const running = await startConsole(config, log);
  const signal = await Promise.race([once(process, 'SIGTERM'), once(process, 'SIGINT')]).then(() => 'stop');
  log.info({ signal }, 'console stopping');
  await running.close();
  return 0;
}
