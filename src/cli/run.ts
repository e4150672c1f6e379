import { loadConfig } from '../config.ts';
import { createLogger } from '../log.ts';
import { buildRelay } from '../relay.ts';

/**
 * `outbox-relay run`: owns the process signals. SIGTERM/SIGINT drain and exit 0; a loop that dies on its own
 * stops the relay and the process exits 1 (main.ts prints the reason), so the orchestrator restarts it.
 */
export async function main(_args: string[]): Promise<number> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, { workerId: config.workerId });
  const relay = await buildRelay(config, log);
  const stop = new AbortController();
  const onSignal = (signal: string) => {
    log.info({ signal }, 'signal received');
    stop.abort();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await relay.run(stop.signal);
  return 0;
}
