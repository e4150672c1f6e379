// Output of a bench run: a table on stdout, bench/results/<timestamp>.json (+ latest.json), and a hand-written SVG
// (commit→receipt latency CDF per system in the steady scenario, and throughput bars) as <timestamp>.svg + latest.svg.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type Lat = { p50: number; p95: number; p99: number; max: number; n: number };
export type Result = {
  system: string;
  error?: string;
  expected: number;
  deliveriesExpected: number;
  received: number;
  missing: number;
  lostDone?: number;
  duplicated: number;
  extraRequests: number;
  latencyMs?: Lat;
  cdf?: number[];
  drainMs: number;
  deliveriesPerS: number;
  insertRate?: number;
  peakRssMb: number;
  slowReceived?: number;
  cpuUsPerDelivery?: { system: number; postgres: number; machine?: number };
  rowWritesPerDelivery?: number;
  maxSustained?: number;
  maxLimitedBy?: 'system' | 'inserts' | 'rates-exhausted';
  stoppedBy?: 'drained' | 'deadline' | 'stall';
  loadavg?: string;
};
export type Scenario = { name: string; results: Result[]; steps?: Record<string, unknown[]> };
export type RunResult = {
  startedAt: string;
  elapsedS: number;
  command: string;
  machine: { cores: number; cpuModel: string; memGb: number; node: string; postgres: string };
  settings: Record<string, unknown>;
  scenarios: Scenario[];
};

const DIR = fileURLToPath(new URL('./results/', import.meta.url));
const SYSTEMS = ['outbox-relay', 'poller', 'pg-transactional-outbox'] as const;
const COLORS: Record<string, string> = {
  'outbox-relay': '#1f77b4',
  poller: '#ff7f0e',
  'pg-transactional-outbox': '#2ca02c',
};

type Row = {
  scenario: string;
  metric: string;
  better: 'lower' | 'higher' | 'none';
  values: Record<string, number | undefined>;
  fmt: (n: number) => string;
  /** Systems whose wait ended before everything arrived: their missing count is marked †. */
  cut?: Set<string>;
  /** Per-system suffix for the value (‡, +). */
  mark?: Map<string, string>;
};

const ms = (n: number) => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0));
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const sec = (n: number) => (n / 1000).toFixed(2);
const mb = (n: number) => n.toFixed(0);

function rows(run: RunResult): Row[] {
  const out: Row[] = [];
  const by = (name: string) => run.scenarios.find((s) => s.name === name);
  const pick = (s: Scenario | undefined, f: (r: Result) => number | undefined) =>
    Object.fromEntries((s?.results ?? []).map((r) => [r.system, r.error ? undefined : f(r)]));
  const add = (
    scenario: string,
    metric: string,
    better: Row['better'],
    s: Scenario | undefined,
    f: (r: Result) => number | undefined,
    fmt: Row['fmt'],
  ) => {
    if (s) out.push({ scenario, metric, better, values: pick(s, f), fmt });
  };
  const loss = (label: string, s: Scenario | undefined) => {
    add(label, 'missing (expected − distinct ids)', 'lower', s, (r) => r.missing, int);
    const last = out.at(-1);
    if (s && last)
      last.cut = new Set(
        s.results.filter((r) => r.stoppedBy !== undefined && r.stoppedBy !== 'drained').map((r) => r.system),
      );
    add(label, 'lost: recorded done, never received', 'lower', s, (r) => r.lostDone, int);
    add(label, 'duplicated ids', 'lower', s, (r) => r.duplicated, int);
  };
  const cpu = (label: string, s: Scenario | undefined) => {
    add(label, 'CPU µs/delivery: system', 'lower', s, (r) => r.cpuUsPerDelivery?.system, int);
    add(label, 'CPU µs/delivery: Postgres', 'lower', s, (r) => r.cpuUsPerDelivery?.postgres, int);
    add(label, 'CPU µs/delivery: whole machine', 'lower', s, (r) => r.cpuUsPerDelivery?.machine, int);
    add(
      label,
      'Postgres row writes/delivery',
      'lower',
      s,
      (r) => r.rowWritesPerDelivery,
      (v) => v.toFixed(2),
    );
  };
  const steady = by('steady');
  add('steady', 'p50 ms', 'lower', steady, (r) => r.latencyMs?.p50, ms);
  add('steady', 'p95 ms', 'lower', steady, (r) => r.latencyMs?.p95, ms);
  add('steady', 'p99 ms', 'lower', steady, (r) => r.latencyMs?.p99, ms);
  add('steady', 'max ms', 'lower', steady, (r) => r.latencyMs?.max, ms);
  add('steady', 'insert rate /s', 'none', steady, (r) => r.insertRate, int);
  add('steady', 'delivered /s', 'higher', steady, (r) => r.deliveriesPerS, int);
  add('steady', 'peak RSS MB', 'lower', steady, (r) => r.peakRssMb, mb);
  cpu('steady', steady);
  loss('steady', steady);
  const burst = by('burst');
  add('burst', 'drain s', 'lower', burst, (r) => r.drainMs, sec);
  add('burst', 'deliveries /s', 'higher', burst, (r) => r.deliveriesPerS, int);
  cpu('burst', burst);
  loss('burst', burst);
  const fan = by('fanout');
  add('fanout ×10', 'drain s', 'lower', fan, (r) => r.drainMs, sec);
  add('fanout ×10', 'deliveries /s', 'higher', fan, (r) => r.deliveriesPerS, int);
  cpu('fanout ×10', fan);
  loss('fanout ×10', fan);
  const unorderedRun = by('ordered-off');
  const orderedRun = by('ordered');
  add(
    'ordered, 1 endpoint × 1,000 keys',
    'unordered deliveries /s',
    'higher',
    unorderedRun,
    (r) => r.deliveriesPerS,
    int,
  );
  add('ordered, 1 endpoint × 1,000 keys', 'ordered deliveries /s', 'higher', orderedRun, (r) => r.deliveriesPerS, int);
  if (unorderedRun && orderedRun) {
    add(
      'ordered, 1 endpoint × 1,000 keys',
      'ordered ÷ unordered',
      'higher',
      orderedRun,
      (r) => {
        const off = unorderedRun.results.find((x) => x.system === r.system);
        return off === undefined || off.error ? undefined : r.deliveriesPerS / off.deliveriesPerS;
      },
      (v) => v.toFixed(2),
    );
  }
  cpu('ordered', orderedRun);
  loss('ordered', orderedRun);
  const base = by('isolation-baseline');
  const slow = by('isolation-slow');
  add('isolation', 'p99 ms, 10 fast', 'lower', base, (r) => r.latencyMs?.p99, ms);
  add('isolation', 'p99 ms, 9 fast + 1 slow', 'lower', slow, (r) => r.latencyMs?.p99, ms);
  if (base && slow) {
    out.push({
      scenario: 'isolation',
      metric: 'p99 slow ÷ p99 baseline',
      better: 'lower',
      values: Object.fromEntries(
        SYSTEMS.map((s) => {
          const a = slow.results.find((r) => r.system === s)?.latencyMs?.p99;
          const b = base.results.find((r) => r.system === s)?.latencyMs?.p99;
          return [s, a !== undefined && b !== undefined ? a / b : undefined];
        }),
      ),
      fmt: (n) => n.toFixed(2),
    });
  }
  loss('isolation (9 fast)', slow);
  const backlog = by('backlog');
  add('backlog', 'peak RSS MB', 'lower', backlog, (r) => r.peakRssMb, mb);
  add('backlog', 'drain s', 'lower', backlog, (r) => r.drainMs, sec);
  add('backlog', 'deliveries /s', 'higher', backlog, (r) => r.deliveriesPerS, int);
  cpu('backlog', backlog);
  loss('backlog', backlog);
  const max = by('max');
  add('max steady', 'highest rate kept up /s', 'higher', max, (r) => r.maxSustained, int);
  const last = out.at(-1);
  if (max && last)
    last.mark = new Map(
      max.results
        .filter((r) => r.maxLimitedBy !== undefined && r.maxLimitedBy !== 'system')
        .map((r) => [r.system, r.maxLimitedBy === 'inserts' ? ' ‡' : ' +']),
    );
  return out;
}

function table(run: RunResult): string {
  const present = SYSTEMS.filter((s) => run.scenarios.some((sc) => sc.results.some((r) => r.system === s)));
  const head = ['scenario', 'metric', ...present.flatMap((s) => (s === 'outbox-relay' ? [s] : [s, '×']))];
  const lines: string[][] = [head];
  for (const r of rows(run)) {
    const relay = r.values['outbox-relay'];
    const cells = [r.scenario, r.metric];
    for (const s of present) {
      const v = r.values[s];
      cells.push(
        v === undefined || Number.isNaN(v)
          ? '—'
          : `${r.fmt(v)}${r.cut?.has(s) === true ? ' †' : ''}${r.mark?.get(s) ?? ''}`,
      );
      if (s === 'outbox-relay') continue;
      // × = how many times better outbox-relay is (>1: relay better), for metrics with a direction.
      let ratio = '';
      if (
        v !== undefined &&
        relay !== undefined &&
        r.better !== 'none' &&
        !r.metric.startsWith('missing') &&
        !r.metric.startsWith('lost') &&
        !r.metric.startsWith('dup')
      ) {
        const x = r.better === 'lower' ? v / relay : relay / v;
        if (Number.isFinite(x)) ratio = `${x.toFixed(2)}×`;
      }
      cells.push(ratio);
    }
    lines.push(cells);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
  const fmtLine = (l: string[]) => l.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmtLine(lines[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.slice(1).map(fmtLine)].join('\n');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

function svg(run: RunResult): string {
  const W = 960,
    H = 420;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(
    `<text x="10" y="18" font-size="14" font-weight="bold">${esc(`outbox-relay bench — ${run.startedAt} — ${run.machine.cores} cores ${run.machine.cpuModel}`)}</text>`,
  );
  // Left: latency CDF (steady), log x.
  const steady = run.scenarios.find((s) => s.name === 'steady');
  const L = { x: 60, y: 50, w: 400, h: 300 };
  parts.push(
    `<text x="${L.x}" y="${L.y - 12}" font-weight="bold">steady: commit→receipt latency CDF (ms, log scale)</text>`,
  );
  parts.push(`<rect x="${L.x}" y="${L.y}" width="${L.w}" height="${L.h}" fill="none" stroke="#999"/>`);
  const series = (steady?.results ?? []).filter((r) => r.cdf);
  const all = series.flatMap((r) => r.cdf!).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(0.1, Math.min(...all, 1)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all, 10))));
  const xOf = (v: number) =>
    L.x + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * L.w;
  const yOf = (p: number) => L.y + L.h - (p / 100) * L.h;
  for (let d = lo; d <= hi; d *= 10) {
    parts.push(
      `<line x1="${xOf(d)}" y1="${L.y}" x2="${xOf(d)}" y2="${L.y + L.h}" stroke="#eee"/><text x="${xOf(d)}" y="${L.y + L.h + 15}" text-anchor="middle">${d}</text>`,
    );
  }
  for (const p of [0, 25, 50, 75, 90, 99, 100]) {
    parts.push(
      `<line x1="${L.x}" y1="${yOf(p)}" x2="${L.x + L.w}" y2="${yOf(p)}" stroke="#f3f3f3"/><text x="${L.x - 5}" y="${yOf(p) + 4}" text-anchor="end">${p}%</text>`,
    );
  }
  for (const [i, r] of series.entries()) {
    const pts = r.cdf!.map((v, k) => `${xOf(v).toFixed(1)},${yOf(Math.min(k, 100)).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${COLORS[r.system] ?? '#000'}" stroke-width="2" points="${pts}"/>`);
    parts.push(
      `<text x="${L.x + 10}" y="${L.y + 18 + i * 16}" fill="${COLORS[r.system] ?? '#000'}">${esc(`${r.system}: p50 ${ms(r.latencyMs!.p50)} / p99 ${ms(r.latencyMs!.p99)} ms`)}</text>`,
    );
  }
  // Right: throughput bars (log-free, per metric normalised to the metric's max).
  const R = { x: 520, y: 50, w: 420, h: 300 };
  parts.push(`<text x="${R.x}" y="${R.y - 12}" font-weight="bold">throughput (higher is better)</text>`);
  const metrics: [string, string, (r: Result) => number | undefined][] = [
    ['burst', 'burst deliveries/s', (r) => r.deliveriesPerS],
    ['fanout', 'fan-out ×10 deliveries/s', (r) => r.deliveriesPerS],
    ['backlog', 'backlog deliveries/s', (r) => r.deliveriesPerS],
    ['max', 'max steady events/s', (r) => r.maxSustained],
  ];
  const groups = metrics.filter(([n]) => run.scenarios.some((s) => s.name === n));
  const gh = R.h / Math.max(1, groups.length);
  for (const [gi, [name, label, f]] of groups.entries()) {
    const sc = run.scenarios.find((s) => s.name === name)!;
    const vals = sc.results.map((r) => ({ s: r.system, v: r.error ? undefined : f(r) }));
    const top = Math.max(1, ...vals.map((x) => x.v ?? 0));
    const gy = R.y + gi * gh;
    parts.push(`<text x="${R.x}" y="${gy + 12}" font-weight="bold">${esc(label)}</text>`);
    const bh = (gh - 24) / Math.max(1, vals.length);
    for (const [i, { s, v }] of vals.entries()) {
      const y = gy + 18 + i * bh;
      const w = v === undefined || !Number.isFinite(v) ? 0 : (v / top) * (R.w - 220);
      parts.push(
        `<rect x="${R.x + 160}" y="${y}" width="${w.toFixed(1)}" height="${(bh - 3).toFixed(1)}" fill="${COLORS[s] ?? '#000'}"/>`,
      );
      parts.push(`<text x="${R.x + 155}" y="${y + bh / 2 + 2}" text-anchor="end">${esc(s)}</text>`);
      parts.push(
        `<text x="${R.x + 165 + w}" y="${y + bh / 2 + 2}">${v === undefined || !Number.isFinite(v) ? 'n/a' : int(v)}</text>`,
      );
    }
  }
  parts.push(
    `<text x="10" y="${H - 10}" fill="#555">${esc(`${run.command} · Node ${run.machine.node} · ${run.machine.postgres.split(' on ')[0]}`)}</text>`,
  );
  parts.push('</svg>');
  return parts.join('\n');
}

export function writeReport(run: RunResult): void {
  mkdirSync(DIR, { recursive: true });
  const stamp = run.startedAt.replace(/[:.]/g, '-');
  const json = JSON.stringify(run, null, 2);
  writeFileSync(`${DIR}${stamp}.json`, json);
  writeFileSync(`${DIR}latest.json`, json);
  const chart = svg(run);
  writeFileSync(`${DIR}${stamp}.svg`, chart);
  writeFileSync(`${DIR}latest.svg`, chart);
  const m = run.machine;
  process.stdout.write(
    `\noutbox-relay bench · ${m.cores} cores ${m.cpuModel} · ${m.memGb} GB · Node ${m.node} · ${m.postgres.split(' on ')[0]}\n` +
      `${run.command} · ${run.elapsedS.toFixed(0)} s · × = times better outbox-relay is than that alternative\n\n` +
      `${table(run)}\n\n† the wait ended (deadline or no progress) before everything arrived: still undelivered then, ` +
      `not proven lost. A duplicated id is one received more than once.\n` +
      `‡ the next step failed because the load generator's inserts could not reach the rate (Postgres commits on this box), ` +
      `not because the relay fell behind. + kept up at every rate tried.\nresults: bench/results/${stamp}.json, bench/results/latest.svg\n`,
  );
}
