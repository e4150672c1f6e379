// The chart's Grafana dashboard and PrometheusRule read only metrics a running relay exports: every metric name
// in their PromQL must appear in a real /metrics scrape, so renaming a metric fails here, not on a dashboard.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect } from 'vitest';
import { parse } from 'yaml';
import { createMetrics } from '../src/metrics/metrics.ts';
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

/** The label each `label_values(selector, label)` variable lists, with its selector. */
function variableLabels(): { selector: string; label: string }[] {
  return dashboard.templating.list
    .map((v) => (typeof v.query === 'string' ? v.query : v.query?.query))
    .filter((q): q is string => q !== undefined && q.startsWith('label_values('))
    .map((q) => /^label_values\((.*),\s*(\w+)\)$/.exec(q)!)
    .map(([, selector, label]) => ({ selector: selector!, label: label! }));
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

/**
 * Label names an expression relies on: the keys of its label matchers and the labels of its grouping clauses
 * (`by`, `without`, `on`, `ignoring`).
 */
export function labelNames(expr: string): string[] {
  const unquoted = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const matched = [...unquoted.matchAll(/\{([^}]*)\}/g)].flatMap(([, inside]) =>
    [...inside!.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!),
  );
  const grouped = [...unquoted.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)].flatMap(([, list]) =>
    list!
      .split(',')
      .map((l) => l.trim())
      .filter((l) => l !== ''),
  );
  return [...new Set([...matched, ...grouped])];
}

/** Labels Prometheus adds to every series it scrapes (the ServiceMonitor's target labels). */
const TARGET_LABELS = new Set(['namespace', 'job', 'pod', 'instance', 'service', 'container', 'endpoint']);

/** The labels the relay's own code gives each sample name (a histogram's buckets add `le`). */
function relayLabels(): Map<string, Set<string>> {
  const labels = new Map<string, Set<string>>();
  for (const metric of createMetrics().registry.getMetricsAsArray()) {
    const { name, labelNames: names = [] } = metric as unknown as { name: string; labelNames?: string[] };
    labels.set(name, new Set(names));
    for (const suffix of ['_sum', '_count']) labels.set(`${name}${suffix}`, new Set(names));
    labels.set(`${name}_bucket`, new Set([...names, 'le']));
  }
  return labels;
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
  test('finds the labels of matchers and grouping clauses, not label values', () => {
    expect(labelNames('count by (tenant) (max by (tenant, endpoint_id) (m{job=~"$job", tenant=~"a=b"}) == 1)')).toEqual(
      ['job', 'tenant', 'endpoint_id'],
    );
    expect(labelNames('sum by (namespace, job) (increase(m{namespace="x", outcome="dead"}[1h])) > 0')).toEqual([
      'namespace',
      'outcome',
      'job',
    ]);
  });

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

test('every label the dashboard and the rules group or filter by is one the relay gives that metric', () => {
  const labels = relayLabels();
  expect(labels.get('outbox_relay_deliveries_total')).toEqual(new Set(['outcome'])); // the registry's labels are read
  const unknown: string[] = [];
  for (const expr of [...dashboardExpressions(), ...ruleExpressions()]) {
    const own = new Set(metricNames(expr).flatMap((name) => [...(labels.get(name) ?? [])]));
    for (const label of labelNames(expr)) {
      if (!TARGET_LABELS.has(label) && !own.has(label)) unknown.push(`${label} (in ${expr})`);
    }
  }
  for (const { selector, label } of variableLabels()) {
    const own = new Set(metricNames(selector).flatMap((name) => [...(labels.get(name) ?? [])]));
    if (!TARGET_LABELS.has(label) && !own.has(label)) unknown.push(`${label} (variable over ${selector})`);
  }
  expect(unknown).toEqual([]);
});

test('the dashboard covers flow, latency, backlog, the slot, breakers, disabled endpoints and tenants', () => {
  const read = (name: string) => dashboardExpressions().filter((expr) => metricNames(expr).includes(name));
  const covered = {
    'deliveries by outcome': read('outbox_relay_deliveries_total').some((e) => labelNames(e).includes('outcome')),
    'latency quantiles from the histogram': read('outbox_relay_delivery_latency_seconds_bucket').some((e) =>
      e.startsWith('histogram_quantile('),
    ),
    backlog: read('outbox_relay_deliveries_pending').length > 0,
    'oldest pending': read('outbox_relay_oldest_pending_seconds').length > 0,
    'slot lag in time': read('outbox_relay_replication_lag_seconds').length > 0,
    'slot lag in bytes': read('outbox_relay_replication_lag_bytes').length > 0,
    'retained WAL': read('outbox_relay_slot_retained_wal_bytes').length > 0,
    'slot holder': read('outbox_relay_slot_holder').length > 0,
    breakers: read('outbox_relay_breakers_open').length > 0,
    'disabled endpoints': read('outbox_relay_disabled_endpoints').length > 0,
    'per tenant': read('outbox_relay_breaker_open').some((e) => /\bby \(tenant\)/.test(e)),
  };
  expect(Object.entries(covered).filter(([, yes]) => !yes)).toEqual([]);
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
