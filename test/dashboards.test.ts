// The chart's Grafana dashboard and PrometheusRule read only metrics a running relay exports: every metric name
// in their PromQL must appear in a real /metrics scrape, so renaming a metric fails here, not on a dashboard.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect } from 'vitest';
import { parse } from 'yaml';
import { test } from './fixtures.ts';
import { addEndpoint, insertEvents } from './support/postgres.ts';
import { until } from './support/until.ts';

const CHART = fileURLToPath(new URL('../helm/outbox-relay/', import.meta.url));
const text = (path: string) => readFileSync(`${CHART}${path}`, 'utf8');

type Panel = { title?: string; targets?: { expr: string }[]; panels?: Panel[] };
type Dashboard = { panels: Panel[]; templating: { list: { name: string; query?: string | { query: string } }[] } };

const dashboard = JSON.parse(text('dashboards/outbox-relay.json')) as Dashboard;

/** Every PromQL expression of the dashboard: panel targets and the variables' label_values() queries. */
function dashboardExpressions(): string[] {
  const panels = (list: Panel[]): Panel[] => list.flatMap((p) => [p, ...panels(p.panels ?? [])]);
  const targets = panels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  const variables = dashboard.templating.list
    .map((v) => (typeof v.query === 'string' ? v.query : v.query?.query))
    .filter((q): q is string => q !== undefined && q.startsWith('label_values('))
    .map((q) => /^label_values\((.*),\s*\w+\)$/.exec(q)![1]!);
  return [...targets, ...variables];
}

/** The `expr:` of every alert in the PrometheusRule template (Helm actions removed: they are values, not names). */
function ruleExpressions(): string[] {
  const source = text('templates/prometheusrule.yaml')
    .split('\n')
    .filter((line) => !/^\s*\{\{-?.*-?\}\}\s*$/.test(line)) // control lines
    .join('\n')
    .replace(/\{\{-?[^}]*?-?\}\}/g, '1'); // inline values: thresholds, windows, the selector
  const rule = parse(source) as { spec: { groups: { rules: { alert: string; expr: string }[] }[] } };
  return rule.spec.groups.flatMap((g) => g.rules.map((r) => r.expr));
}

const PROMQL_WORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/**
 * Metric names an expression reads: identifiers left after removing strings, label matchers, range selectors,
 * grouping clauses (their label lists), Grafana variables and function calls.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/\$\{?\w+\}?/g, ' ')
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*/gi, ' ') // numbers, durations
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = [...stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*(?![a-zA-Z0-9_:])(?!\s*\()/g)].map((m) => m[0]);
  return [...new Set(names.filter((n) => !PROMQL_WORDS.has(n.toLowerCase()) && !/^\d/.test(n)))];
}

/** Sample names a scrape can serve: each `# TYPE` family, with a histogram's or summary's suffixed series. */
function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const [, name, type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${name}${s}`);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(`${name}${s}`);
  }
  return names;
}

describe('PromQL name extraction', () => {
  test('finds metrics, not functions, labels, matchers, windows or variables', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (le) (rate(outbox_relay_delivery_latency_seconds_bucket{job=~"$job"}[$__rate_interval])))',
      ),
    ).toEqual(['outbox_relay_delivery_latency_seconds_bucket']);
    expect(metricNames('min by (job) (deriv(a_bytes{x="y"}[15m])) > 0 and max by (job) (b_bytes) > 67108864')).toEqual([
      'a_bytes',
      'b_bytes',
    ]);
    expect(metricNames('count by (tenant) (max by (tenant, endpoint_id) (m{t=~"$tenant"}) == 1)')).toEqual(['m']);
  });
});

test('every metric the dashboard and the alert rules read exists in a real /metrics scrape', async ({
  db,
  receiver,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  const relay = await startRelay();
  await insertEvents(db, [{ type: 't', payload: '{}' }]);
  await until(() => receiver.requests.length === 1);
  const exposition = await (await fetch(`http://127.0.0.1:${relay.httpPort}/metrics`)).text();
  const exported = exportedNames(exposition);
  expect(exported.has('outbox_relay_delivery_latency_seconds_bucket')).toBe(true);

  const expressions = [...dashboardExpressions(), ...ruleExpressions()];
  expect(dashboardExpressions().length).toBeGreaterThan(20);
  expect(ruleExpressions()).toHaveLength(8);
  const unknown: string[] = [];
  for (const expr of expressions) {
    const names = metricNames(expr);
    expect(names.length, `no metric in ${expr}`).toBeGreaterThan(0);
    for (const name of names) if (!exported.has(name)) unknown.push(`${name} (in ${expr})`);
  }
  expect(unknown).toEqual([]);
});

describe('the chart carries both, off by default', () => {
  const values = parse(text('values.yaml')) as {
    metrics: { prometheusRule: { enabled: boolean } };
    grafanaDashboard: { enabled: boolean };
  };

  test('the PrometheusRule: off by default, one alert per README suggestion, thresholds from values', () => {
    expect(values.metrics.prometheusRule.enabled).toBe(false);
    const source = text('templates/prometheusrule.yaml');
    expect(source).toMatch(/^\{\{- if \.Values\.metrics\.prometheusRule\.enabled \}\}/);
    const alerts = [...source.matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
    expect(alerts).toEqual([
      'OutboxRelayNoSlotHolder',
      'OutboxRelayReplicationLag',
      'OutboxRelayReplicationLagGrowing',
      'OutboxRelayRetainedWal',
      'OutboxRelayBacklogAge',
      'OutboxRelayDeadDeliveries',
      'OutboxRelayEndpointDisabled',
      'OutboxRelayOrderedKeyBlocked',
    ]);
    expect(source).toContain('> {{ $r.backlogAge.seconds }}');
    expect(source).toContain('> {{ $r.replicationLag.seconds }}');
  });

  test('the dashboard ConfigMap: off by default, labelled grafana_dashboard, holding the JSON file', () => {
    expect(values.grafanaDashboard.enabled).toBe(false);
    const source = text('templates/grafana-dashboard.yaml');
    expect(source).toMatch(/^\{\{- if \.Values\.grafanaDashboard\.enabled \}\}/);
    expect(source).toMatch(/\n\s+grafana_dashboard: "1"\n/);
    expect(source).toContain('.Files.Get "dashboards/outbox-relay.json"');
    expect(dashboard).toMatchObject({ uid: 'outbox-relay', title: 'outbox-relay' });
  });
});
