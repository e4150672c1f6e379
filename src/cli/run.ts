import { loadConfig } from '../config.ts';
import { createLogger } from '../log.ts';
import { startRelay } from '../relay.ts';

/** `outbox-relay run`: owns the process signals; SIGTERM/SIGINT drain and exit 0. */
export async function main(_args: string[]): Promise<number> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, { workerId: config.workerId });
  const relay = await startRelay(config, log);
  const stop = (signal: string) => {
    log.info({ signal }, 'signal received');
    void relay.stop();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await relay.done;
  return 0;
}
