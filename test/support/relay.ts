import { loadConfig, type Config } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { startRelay, type RunningRelay } from '../../src/relay.ts';
import type { TestDb } from './postgres.ts';
import { until } from './until.ts';

/** Environment for a relay under test: fast timers, private networks allowed (receivers are on 127.0.0.1). */
export function relayEnv(db: TestDb, env: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    SLOT_NAME: db.slotName,
    PUBLICATION_NAME: db.publicationName,
    HTTP_PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ALLOW_PRIVATE_NETWORKS: 'true',
    ALLOW_HTTP: 'true',
    CLAIM_INTERVAL: '100ms',
    SWEEP_INTERVAL: '500ms',
    HEARTBEAT_INTERVAL: '1s',
    STATUS_INTERVAL: '1s',
    REQUEST_TIMEOUT: '5s',
    LEASE: '10s',
    RETRY_SCHEDULE: '100ms,100ms,100ms',
    SHUTDOWN_GRACE: '5s',
    STANDBY_RETRY_INTERVAL: '300ms',
    ...env,
  };
}

export type TestRelay = RunningRelay & { config: Config };

/** Starts a relay in this process and waits until it streams the slot (or stands by, when told). */
export async function startTestRelay(
  db: TestDb,
  env: Record<string, string> = {},
  state: 'streaming' | 'standby' = 'streaming',
): Promise<TestRelay> {
  const config = loadConfig(relayEnv(db, env));
  const relay = await startRelay(config, createLogger(config.logLevel));
  try {
    await until(() => relay.streamState() === state, { what: `relay ${state}` });
  } catch (err) {
    // Nobody holds this relay yet (not the caller, not the startRelay fixture): stop it here or it outlives the test.
    await relay.stop();
    throw err;
  }
  return { ...relay, config };
}

/** Reads one sample from a relay's /metrics (summing over series whose labels include `labels`). */
export async function scrape(httpPort: number, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+|NaN)$/.exec(line);
    if (match?.[1] !== name) continue;
    const tags = match[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => tags.includes(`${k}="${v}"`))) sum += Number(match[3]);
  }
  return sum;
}
