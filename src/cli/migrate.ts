import { loadConfig, requireDatabaseUrl } from '../config.ts';
import { migrate } from '../db/migrate.ts';
import { createLogger } from '../log.ts';

/** `outbox-relay migrate`: idempotent; safe from several replicas at once. */
export async function main(_args: string[]): Promise<number> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, { workerId: config.workerId });
  await migrate({
    databaseUrl: requireDatabaseUrl(config),
    slotName: config.slotName,
    publicationName: config.publicationName,
    log,
  });
  return 0;
}
