// One measured run (bench/run.ts drives the scenarios): the shared helpers for talking to the helper processes,
// reading /proc, and turning receipts plus the load generator's commit times into figures.
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';
import type { System } from './systems.ts';

export const LOAD_CONNS = 32;
/** A drain wait also ends after this long without a new receipt. */
const STALL_MS = 10_000;
/** Pause between a system reporting ready and the load, the same for every system (connections, JIT). */
const SETTLE_MS = 300;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.timeOrigin + performance.now();

/** One request to a helper process; fails if it exits or does not answer within `timeoutMs`. */
export function ask<T>(child: ChildProcess, msg: object, type: string, timeoutMs = 15 * 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = () => {
      child.off('message', on);
      child.off('exit', onExit);
      clearTimeout(timer);
    };
    const on = (m: { type: string; error?: string }) => {
      if (m.type === type || m.type === 'error') {
        done();
        if (m.type === 'error') reject(new Error(m.error));
        else resolve(m as T);
      }
    };
    const onExit = (code: number | null) => {
      done();
      reject(new Error(`helper process exited (${code}) before answering ${type}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${type} answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    child.on('message', on);
    child.once('exit', onExit);
    child.send(msg);
  });
}
export function procStatus(pid: number | undefined): { hwmKb: number; rssKb: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
    return { hwmKb: kb('VmHWM'), rssKb: kb('VmRSS') };
  } catch {
    return { hwmKb: 0, rssKb: 0 };
  }
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const CLK_TCK = 100;

/** CPU seconds (user + system, all threads) a process has used so far; 0 once it is gone. */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime: fields 14 and 15
  } catch {
    return 0;
  }
}

/** CPU seconds of every Postgres process (postmaster, backends, WAL sender, writers), by pid. */
function postgresCpu(): Map<number, number> {
  const byPid = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'postgres') continue;
    } catch {
      continue; // exited meanwhile
    }
    byPid.set(Number(entry), cpuSeconds(Number(entry)));
  }
  return byPid;
}

/** Busy CPU seconds of the whole machine so far (every core: all but idle and iowait), from /proc/stat. */
function machineCpuSeconds(): number {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = ticks.map(Number);
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - n[3]! - n[4]!) / CLK_TCK;
}

/** Postgres CPU seconds used since `before` (processes started since count whole; ones that exited are missed). */
function postgresCpuSince(before: Map<number, number>): number {
  let used = 0;
  for (const [pid, seconds] of postgresCpu()) used += seconds - (before.get(pid) ?? 0);
  return used;
}

/** The system's own row writes so far (cumulative statistics; a fresh snapshot for each read). */
async function rowWrites(monitor: pg.Client, writesSql: string): Promise<number> {
  await monitor.query('SELECT pg_stat_clear_snapshot()');
  return Number((await monitor.query<{ n: number }>(writesSql)).rows[0]?.n ?? 0);
}

// ---- one measured run -------------------------------------------------------------------------------------------
export type Load =
  { kind: 'paced'; rate: number; durationMs: number } | { kind: 'burst'; n: number } | { kind: 'backlog'; n: number };
type PortStats = { requests: number; distinct: number; duplicated: number; firstRecv: Float64Array };
type LoadResult = {
  committedAt: Float64Array;
  committed: number;
  errors: number;
  t0: number;
  lastCommitAt: number;
  achievedRate: number;
  maxLateMs: number;
};

export type Measured = {
  system: string;
  expected: number;
  deliveriesExpected: number;
  received: number;
  missing: number;
  duplicated: number;
  extraRequests: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number; n: number } | undefined;
  cdf: number[] | undefined;
  drainMs: number;
  deliveriesPerS: number;
  insertRate: number | undefined;
  loadMaxLateMs: number | undefined;
  peakRssMb: number;
  slowReceived?: number;
  /**
   * CPU per delivery received, from the system being up to the end of the drain wait: the system's own process,
   * and every Postgres process (which includes the load generator's inserts: the application's share).
   */
  cpuUsPerDelivery?: { system: number; postgres: number; machine: number };
  /**
   * Rows the system itself wrote (its delivery bookkeeping: inserts, updates, deletes, from pg_stat_user_tables)
   * per delivery received; the application's outbox inserts are not counted.
   */
  rowWritesPerDelivery?: number;
  /** Why the wait for deliveries ended: everything arrived, the deadline passed, or nothing arrived for a while. */
  stoppedBy?: 'drained' | 'deadline' | 'stall';
  /** Deliveries the system recorded as done (delivered / processed) whose seq never reached that receiver. */
  lostDone?: number;
  /** /proc/loadavg just before the load (the machine is shared). */
  loadavg?: string;
};

/** What a measurement needs from the run: the shared Postgres, receivers and load generator. */
export type Bench = {
  url: string;
  monitor: pg.Client;
  receiver: ChildProcess;
  receiverPorts: number[];
  loader: ChildProcess;
  track: (c: ChildProcess) => void;
  deadlineS: number;
  backlogDeadlineS: number;
};

/**
 * One measured run of one system: reset its tables and the receivers, start it, apply the load, wait for the
 * drain (bounded), stop it, then count receipts and compare them with what the system recorded as done.
 */
export async function measure(
  b: Bench,
  sys: System,
  load: Load,
  endpoints: number,
  slow: number[] = [],
): Promise<Measured> {
  const { url, monitor, receiver, receiverPorts, loader, track } = b;
  const urls = receiverPorts.slice(0, endpoints).map((p) => `http://127.0.0.1:${p}/hook`);
  const healthy = [...Array(endpoints).keys()].filter((i) => !slow.includes(i));
  await sys.reset(monitor, urls);
  await ask(receiver, { cmd: 'reset', slow }, 'reset');
  for (const slot of ['outbox_relay', 'bench_pgto_slot']) {
    await monitor.query(
      'SELECT pg_replication_slot_advance(slot_name, pg_current_wal_lsn()) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active',
      [slot],
    );
  }
  let loadResult: LoadResult | undefined;
  if (load.kind === 'backlog') {
    const t = now();
    await monitor.query(sys.backlogSql, [t, load.n]);
    if (!sys.backlogViaSlot && sys.slot !== undefined) {
      await monitor.query('SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())', [sys.slot]);
    }
  }
  const tBeforeStart = now(); // a backlog's clock starts here: the system delivers as soon as it is up
  const running = await sys.start(url, urls, track);
  const pid = running.child.pid;
  let peakRssKb = 0;
  const sampler = setInterval(() => (peakRssKb = Math.max(peakRssKb, procStatus(pid).rssKb)), 200);
  // CPU from here (the system is up; its start-up is not counted) to the end of the drain wait.
  const cpuBefore = { system: cpuSeconds(pid), postgres: postgresCpu(), machine: machineCpuSeconds() };
  const writesBefore = await rowWrites(monitor, sys.writesSql);
  try {
    await sleep(SETTLE_MS);
    const loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    if (load.kind === 'paced') {
      loadResult = await ask<LoadResult>(
        loader,
        { cmd: 'paced', url, sql: sys.insertSql, rate: load.rate, durationMs: load.durationMs, conns: LOAD_CONNS },
        'done',
      );
    } else if (load.kind === 'burst') {
      loadResult = await ask<LoadResult>(loader, { cmd: 'burst', url, sql: sys.burstSql, n: load.n }, 'done');
    } else {
      loadResult = {
        committedAt: new Float64Array(load.n).fill(tBeforeStart),
        committed: load.n,
        errors: 0,
        t0: tBeforeStart,
        lastCommitAt: tBeforeStart,
        achievedRate: NaN,
        maxLateMs: 0,
      };
    }
    const expected = loadResult.committed;
    // Drain: until every healthy endpoint has every event, the deadline passes, or nothing arrives for STALL_MS.
    const deadlineS = load.kind === 'backlog' ? b.backlogDeadlineS : b.deadlineS;
    const deadline = now() + deadlineS * 1000;
    const stallMs = Math.min(STALL_MS, deadlineS * 1000);
    let stoppedBy: Measured['stoppedBy'] = 'drained';
    let last = -1;
    let lastChange = now();
    for (;;) {
      const p = await ask<{ ports: { distinct: number }[] }>(receiver, { cmd: 'progress' }, 'progress');
      const got = healthy.reduce((s, i) => s + Math.min(expected, p.ports[i]!.distinct), 0);
      if (got >= expected * healthy.length) break;
      if (got !== last) {
        last = got;
        lastChange = now();
      }
      if (now() > deadline || now() - lastChange > stallMs) {
        stoppedBy = now() > deadline ? 'deadline' : 'stall';
        break;
      }
      await sleep(100);
    }
    peakRssKb = Math.max(peakRssKb, procStatus(pid).hwmKb);
    clearInterval(sampler);
    const cpu = {
      system: cpuSeconds(pid) - cpuBefore.system,
      postgres: postgresCpuSince(cpuBefore.postgres),
      machine: machineCpuSeconds() - cpuBefore.machine,
    };
    await running.stop(); // nothing is sent after this: receipts and the system's own records are final
    await sleep(200); // let the last answers' bookkeeping land in the receiver
    const { ports } = await ask<{ ports: PortStats[] }>(receiver, { cmd: 'collect' }, 'collect');
    const done = (await monitor.query<{ seq: number; url: string | null }>(sys.doneSql)).rows;
    const m = summarise(sys.name, load, loadResult, ports, healthy, slow, peakRssKb);
    if (m.received > 0) {
      const per = (seconds: number) => (seconds / m.received) * 1e6;
      m.cpuUsPerDelivery = { system: per(cpu.system), postgres: per(cpu.postgres), machine: per(cpu.machine) };
      // The system's backends have exited (it stopped), so their table statistics are flushed.
      m.rowWritesPerDelivery = ((await rowWrites(monitor, sys.writesSql)) - writesBefore) / m.received;
    }
    // Lost for sure: the system recorded the delivery as done, yet its receiver never saw that seq.
    let lostDone = 0;
    for (const { seq, url: u } of done) {
      for (const i of u === null ? healthy : [urls.indexOf(u)]) {
        if (!healthy.includes(i)) continue;
        if (Number.isNaN(ports[i]!.firstRecv[seq] ?? NaN)) lostDone++;
      }
    }
    return { ...m, lostDone, stoppedBy, loadavg };
  } finally {
    clearInterval(sampler);
    await running.stop();
  }
}

function summarise(
  system: string,
  load: Load,
  lr: LoadResult,
  ports: PortStats[],
  healthy: number[],
  slow: number[],
  peakRssKb: number,
): Measured {
  const expected = lr.committed;
  const lat: number[] = [];
  let lastRecv = 0;
  let received = 0;
  let missing = 0;
  let duplicated = 0;
  let extra = 0;
  for (const i of healthy) {
    const p = ports[i]!;
    received += p.distinct;
    missing += Math.max(0, expected - p.distinct);
    duplicated += p.duplicated;
    extra += p.requests - p.distinct;
    for (let seq = 0; seq < Math.min(p.firstRecv.length, lr.committedAt.length); seq++) {
      const r = p.firstRecv[seq]!;
      const c = lr.committedAt[seq]!;
      if (Number.isNaN(r)) continue;
      if (r > lastRecv) lastRecv = r;
      if (!Number.isNaN(c)) lat.push(r - c);
    }
  }
  const sorted = Float64Array.from(lat).sort();
  const pct = (x: number) => sorted[Math.min(sorted.length - 1, Math.floor((x / 100) * sorted.length))]!;
  const start = load.kind === 'paced' ? lr.t0 : lr.lastCommitAt;
  const drainMs = lastRecv > 0 ? lastRecv - start : NaN;
  const m: Measured = {
    system,
    expected,
    deliveriesExpected: expected * healthy.length,
    received,
    missing,
    duplicated,
    extraRequests: extra,
    latencyMs:
      sorted.length > 0
        ? { p50: pct(50), p95: pct(95), p99: pct(99), max: sorted[sorted.length - 1]!, n: sorted.length }
        : undefined,
    cdf: sorted.length > 0 ? Array.from({ length: 101 }, (_, k) => pct(Math.min(k, 99.99))) : undefined,
    drainMs,
    deliveriesPerS: received / (drainMs / 1000),
    insertRate: load.kind === 'paced' ? lr.achievedRate : undefined,
    loadMaxLateMs: load.kind === 'paced' ? lr.maxLateMs : undefined,
    peakRssMb: peakRssKb / 1024,
  };
  if (slow.length > 0) m.slowReceived = slow.reduce((s, i) => s + ports[i]!.distinct, 0);
  return m;
}
