// The Helm chart's values against its schema and against the relay itself: every env knob of src/config.ts is
// reachable from values with the relay's own default, and typos or wrong types fail at install time.
// (helm is not needed: the schema is checked with Ajv, the env mapping is read from the templates' text.)
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { loadConfig, parseDuration } from '../src/config.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CHART = `${ROOT}helm/outbox-relay/`;
const text = (path: string) => readFileSync(path, 'utf8');

type Values = Record<string, unknown>;
const defaults = parse(text(`${CHART}values.yaml`)) as Values;
const schema = JSON.parse(text(`${CHART}values.schema.json`)) as Values;
const helpers = text(`${CHART}templates/_helpers.tpl`);
const standalone = parse(text(`${CHART}examples/standalone-values.yaml`)) as Values;
const sidecar = (parse(text(`${CHART}examples/sidecar-values.yaml`)) as { outboxRelay: Values }).outboxRelay;

const ajv = new Ajv({ allErrors: true, allowUnionTypes: true });
const validateSchema = ajv.compile(schema);

/** Helm's coalescing of a -f file onto the chart's defaults: maps merge, null deletes, anything else replaces. */
function coalesce(base: Values, override: Values): Values {
  const out: Values = { ...base };
  for (const [key, value] of Object.entries(override)) {
    const current = out[key];
    if (value === null) delete out[key];
    else if (isMap(value) && isMap(current)) out[key] = coalesce(current, value);
    else out[key] = value;
  }
  return out;
}
const isMap = (v: unknown): v is Values => typeof v === 'object' && v !== null && !Array.isArray(v);

function errorsOf(values: Values): ErrorObject[] {
  return validateSchema(values) ? [] : (validateSchema.errors ?? []);
}

/** `DELIVERY_CONCURRENCY` -> `deliveryConcurrency`. */
const camel = (env: string) => env.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * The variable names the relay reads, taken from loadConfig itself: it looks up each key of its (private)
 * EnvSchema in the env object it is given, so a recording Proxy sees exactly that list.
 */
function relayEnvNames(): string[] {
  const seen = new Set<string>();
  const env = new Proxy<NodeJS.ProcessEnv>(
    {},
    {
      get(_target, key) {
        if (typeof key === 'string' && /^[A-Z][A-Z0-9_]*$/.test(key)) seen.add(key);
        return undefined;
      },
    },
  );
  loadConfig(env);
  return [...seen].sort();
}
// The standard OTEL_* variables are not chart knobs: they come through extraEnv (or the OpenTelemetry Operator's
// injection), as for any other instrumented workload, so a Secret can hold OTEL_EXPORTER_OTLP_HEADERS.
const ALL_ENV_NAMES = relayEnvNames();
const OTEL_NAMES = ALL_ENV_NAMES.filter((name) => name.startsWith('OTEL_'));
/** The console's own variables: set by templates/console.yaml from console.*, never on a relay container. */
const CONSOLE_ENV_NAMES = ALL_ENV_NAMES.filter((name) => name.startsWith('CONSOLE_'));
const ENV_NAMES = ALL_ENV_NAMES.filter((name) => !name.startsWith('CONSOLE_') && !name.startsWith('OTEL_'));
const SPECIAL = ['DATABASE_URL', 'WORKER_ID', 'METRICS_TOKEN'];

/** `- name: X` / `value: {{ ... .Values.config.k ... }}` pairs of the "outbox-relay.env" template. */
function templateEnvMapping(): Map<string, { key: string; join: boolean }> {
  const mapping = new Map<string, { key: string; join: boolean }>();
  for (const m of helpers.matchAll(/- name: ([A-Z_]+)\n\s+value: \{\{(.*?)\}\}/g)) {
    const key = /\.Values\.config\.(\w+)/.exec(m[2]!)?.[1];
    if (key !== undefined) mapping.set(m[1]!, { key, join: m[2]!.includes('join ","') });
  }
  return mapping;
}
const MAPPING = templateEnvMapping();

/** The environment the chart renders for the relay from a `config:` block (all values become strings). */
function renderedEnv(config: Values): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, { key, join }] of MAPPING) {
    const value = config[key];
    env[name] = join ? (value as string[]).join(',') : String(value);
  }
  return env;
}

describe('chart values validate against values.schema.json', () => {
  test.each([
    ['values.yaml', defaults],
    ['examples/standalone-values.yaml', coalesce(defaults, standalone)],
    ['examples/sidecar-values.yaml (outboxRelay block)', coalesce(defaults, sidecar)],
  ])('%s is valid', (_name, values) => {
    expect(errorsOf(values)).toEqual([]);
  });

  test('the PrometheusRule and the dashboard switched on, with a selector and labels, are valid', () => {
    const on = {
      metrics: {
        prometheusRule: { enabled: true, selector: 'job="shop", namespace="prod"', labels: { release: 'kps' } },
      },
      grafanaDashboard: { enabled: true, namespace: 'monitoring', annotations: { grafana_folder: 'Webhooks' } },
    };
    expect(errorsOf(coalesce(defaults, on))).toEqual([]);
  });

  test('Helm\'s "global" key, present when the chart is a dependency, is allowed', () => {
    expect(errorsOf(coalesce(defaults, { global: { imageRegistry: 'x' } }))).toEqual([]);
  });

  test.each([
    ['a string replica count', { replicaCount: 'two' }, '/replicaCount', 'type'],
    ['a duration in words', { config: { lease: '5 minutes' } }, '/config/lease', 'pattern'],
    ['a port above 65535', { config: { httpPort: 70_000 } }, '/config/httpPort', 'maximum'],
    ['a fractional concurrency', { config: { deliveryConcurrency: 1.5 } }, '/config/deliveryConcurrency', 'type'],
    ['a concurrency of 0', { config: { deliveryConcurrency: 0 } }, '/config/deliveryConcurrency', 'minimum'],
    ['an unknown log level', { config: { logLevel: 'loud' } }, '/config/logLevel', 'enum'],
    ['a quoted boolean', { config: { allowPrivateNetworks: 'yes' } }, '/config/allowPrivateNetworks', 'type'],
    ['an upper-case slot name', { config: { slotName: 'Outbox' } }, '/config/slotName', 'pattern'],
    ['a jitter above 1', { config: { retryJitter: 1.5 } }, '/config/retryJitter', 'maximum'],
    ['an empty retry schedule', { config: { retrySchedule: [] } }, '/config/retrySchedule', 'minItems'],
    ['a bad retry step', { config: { retrySchedule: ['5s', 'soon'] } }, '/config/retrySchedule/1', 'pattern'],
    ['an unknown mode', { mode: 'daemonset' }, '/mode', 'enum'],
    ['a service port above 65535', { service: { port: 70_000 } }, '/service/port', 'maximum'],
    ['a host name as bind address', { config: { httpHost: 'localhost' } }, '/config/httpHost', 'pattern'],
    ['a derived duration in words', { config: { breakerWindow: 'half a minute' } }, '/config/breakerWindow', 'pattern'],
    [
      'a network policy without the database',
      { networkPolicy: { enabled: true } },
      '/networkPolicy/database/cidrs',
      'minItems',
    ],
    [
      'a webhook port above 65535',
      { networkPolicy: { webhooks: { ports: [443, 70_000] } } },
      '/networkPolicy/webhooks/ports/1',
      'maximum',
    ],
    [
      'a database CIDR without a prefix',
      { networkPolicy: { database: { cidrs: ['10.0.0.7'] } } },
      '/networkPolicy/database/cidrs/0',
      'pattern',
    ],
    [
      'DATABASE_URL through extraEnv',
      { extraEnv: [{ name: 'DATABASE_URL', value: 'postgres://u:p@db/app' }] },
      '/extraEnv/0/name',
      'not',
    ],
    ['a config knob through extraEnv', { extraEnv: [{ name: 'LEASE', value: '5m' }] }, '/extraEnv/0/name', 'not'],
    [
      'an alert window in words',
      { metrics: { prometheusRule: { deadDeliveries: { window: 'an hour' } } } },
      '/metrics/prometheusRule/deadDeliveries/window',
      'pattern',
    ],
    [
      'a backlog threshold of 0',
      { metrics: { prometheusRule: { backlogAge: { seconds: 0 } } } },
      '/metrics/prometheusRule/backlogAge/seconds',
      'exclusiveMinimum',
    ],
    [
      'a retained-WAL threshold as a size string',
      { metrics: { prometheusRule: { retainedWal: { bytes: '10GiB' } } } },
      '/metrics/prometheusRule/retainedWal/bytes',
      'type',
    ],
    [
      'a rule selector in braces',
      { metrics: { prometheusRule: { selector: '{job="shop"}' } } },
      '/metrics/prometheusRule/selector',
      'pattern',
    ],
  ])('rejects %s at %s', (_name, override, path, keyword) => {
    const errors = errorsOf(coalesce(defaults, override));
    expect(errors.map((e) => `${e.instancePath} ${e.keyword}`)).toContain(`${path} ${keyword}`);
  });

  test.each([
    ['an unknown top-level key', { replicas: 2 }, '', 'replicas'],
    ['a database URL in plain text', { databaseUrl: 'postgres://u:p@db/app' }, '', 'databaseUrl'],
    ['a misspelt config knob', { config: { deliveryConcurency: 8 } }, '/config', 'deliveryConcurency'],
    ['a misspelt nested key', { serviceMonitor: { enable: true } }, '/serviceMonitor', 'enable'],
    ['a misspelt network policy key', { networkPolicy: { egress: [] } }, '/networkPolicy', 'egress'],
    ['a misspelt rule key', { metrics: { prometheusRule: { enable: true } } }, '/metrics/prometheusRule', 'enable'],
    ['a misspelt dashboard key', { grafanaDashboard: { label: { a: 'b' } } }, '/grafanaDashboard', 'label'],
    ['a token in plain text', { metricsTokenSecret: { value: 'x' } }, '/metricsTokenSecret', 'value'],
    ['a misspelt resources key', { resources: { limit: { memory: '1Gi' } } }, '/resources', 'limit'],
    [
      'a misspelt securityContext key',
      { securityContext: { readOnlyRootFileSystem: true } },
      '/securityContext',
      'readOnlyRootFileSystem',
    ],
  ])('rejects %s, naming it', (_name, override, path, property) => {
    const errors = errorsOf(coalesce(defaults, override));
    expect(errors).toContainEqual(
      expect.objectContaining({
        instancePath: path,
        keyword: 'additionalProperties',
        params: { additionalProperty: property },
      }),
    );
  });
});

describe('every relay environment variable is reachable from values', () => {
  test('the relay reads the variables DESIGN.md names (the Proxy sees EnvSchema)', () => {
    expect(ENV_NAMES).toEqual(
      expect.arrayContaining(['DATABASE_URL', 'WORKER_ID', 'HTTP_PORT', 'LOG_LEVEL', 'ALLOW_PRIVATE_NETWORKS']),
    );
    expect(ENV_NAMES.length).toBeGreaterThan(10);
  });

  test('DATABASE_URL comes from the Secret and WORKER_ID from the pod name', () => {
    expect(helpers).toMatch(
      /- name: DATABASE_URL\n\s+valueFrom:\n\s+secretKeyRef:\n\s+name: .*\.Values\.databaseUrlSecret\.name.*\n\s+key: .*\.Values\.databaseUrlSecret\.key/,
    );
    expect(helpers).toMatch(/- name: WORKER_ID\n\s+valueFrom:\n\s+fieldRef:\n\s+fieldPath: metadata\.name/);
  });

  test('METRICS_TOKEN comes from a Secret, only when one is named, and the ServiceMonitor sends it', () => {
    expect(helpers).toMatch(
      /\{\{- if \.Values\.metricsTokenSecret\.name \}\}\n- name: METRICS_TOKEN\n\s+valueFrom:\n\s+secretKeyRef:\n\s+name: \{\{ \.Values\.metricsTokenSecret\.name \| quote \}\}\n\s+key: .*\.Values\.metricsTokenSecret\.key/,
    );
    expect(text(`${CHART}templates/servicemonitor.yaml`)).toMatch(
      /\{\{- if \.Values\.metricsTokenSecret\.name \}\}[\s\S]*authorization:\n\s+type: Bearer\n\s+credentials:\n\s+name: \{\{ \.Values\.metricsTokenSecret\.name \| quote \}\}\n\s+key: \{\{ \.Values\.metricsTokenSecret\.key \| quote \}\}/,
    );
    expect(defaults.metricsTokenSecret).toEqual({ name: '', key: 'token' });
  });

  test('each other variable is set from config.<camelCase name>, and config holds nothing else', () => {
    const expected = ENV_NAMES.filter((name) => !SPECIAL.includes(name)).map((name) => [name, camel(name)]);
    const actual = [...MAPPING].map(([name, { key }]) => [name, key]);
    expect(actual.sort()).toEqual(expected.sort());
    const configKeys = Object.keys(defaults.config as Values).sort();
    expect(configKeys).toEqual(expected.map(([, key]) => key).sort());
    const schemaConfig = (schema.properties as Record<string, { properties: Values }>).config!.properties;
    expect(Object.keys(schemaConfig).sort()).toEqual(configKeys);
  });

  test('HTTP_PORT (config.httpPort) also sets the container port the probes and Service use', () => {
    expect(helpers).toMatch(/containerPort: \{\{ \.Values\.config\.httpPort \| int64 \}\}/);
    expect(text(`${CHART}templates/service.yaml`)).toMatch(
      /port: \{\{ \.Values\.service\.port \}\}\n\s+targetPort: relay-http/,
    );
  });

  test('extraEnv refuses exactly the variables the chart sets', () => {
    const items = (
      schema.properties as Record<string, { items: { properties: { name: { not: { enum: string[] } } } } }>
    ).extraEnv!.items.properties.name.not.enum;
    expect([...items].sort()).toEqual(ENV_NAMES);
  });

  test('the OTEL_* variables the relay reads go through extraEnv, from a value or a Secret', () => {
    expect(OTEL_NAMES).toEqual(expect.arrayContaining(['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_SERVICE_NAME']));
    const extraEnv = [
      { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: 'http://otel-collector.observability:4318' },
      { name: 'OTEL_EXPORTER_OTLP_HEADERS', valueFrom: { secretKeyRef: { name: 'otlp', key: 'headers' } } },
    ];
    expect(errorsOf(coalesce(defaults, { extraEnv }))).toEqual([]);
  });

  test("values.yaml's config defaults are the relay's own defaults", () => {
    const base = { DATABASE_URL: 'postgres://u:p@db/app', WORKER_ID: 'pod-0' };
    expect(loadConfig({ ...base, ...renderedEnv(defaults.config as Values) })).toEqual(loadConfig(base));
  });

  // The keys a cross-field rule ties together default to "" (the relay derives them), so each can change alone.
  test.each([
    ['lease', '2s'],
    ['lease', '10m'],
    ['heartbeatInterval', '20s'],
    ['requestTimeout', '60s'],
    ['breakerResetTimeout', '10s'],
    ['breakerWindow', '1m'],
    ['deliveryConcurrency', 5_000],
    ['schedulerCapacity', 10],
    ['statusInterval', '30s'],
    ['streamIdleTimeout', '3s'],
    ['httpHost', '127.0.0.1'],
    ['httpHost', '::'],
  ])('config.%s: %j alone renders a configuration the relay accepts', (key, value) => {
    const values = coalesce(defaults, { config: { [key]: value } });
    expect(errorsOf(values)).toEqual([]);
    const env = { DATABASE_URL: 'postgres://u:p@db/app', WORKER_ID: 'pod-0', ...renderedEnv(values.config as Values) };
    expect(() => loadConfig(env)).not.toThrow();
  });

  test.each([
    ['standalone', coalesce(defaults, standalone)],
    ['sidecar', coalesce(defaults, sidecar)],
  ])('the %s example renders a configuration the relay accepts', (_name, values) => {
    const env = { DATABASE_URL: 'postgres://u:p@db/app', WORKER_ID: 'pod-0', ...renderedEnv(values.config as Values) };
    expect(() => loadConfig(env)).not.toThrow();
  });
});

describe('network policy', () => {
  const policy = text(`${CHART}templates/networkpolicy.yaml`);

  test('is off by default, standalone only, and needs the database when on', () => {
    expect(defaults.networkPolicy).toMatchObject({ enabled: false, database: { cidrs: [], peers: [], port: 5432 } });
    expect(policy).toMatch(/^\{\{- if and \(eq \.Values\.mode "standalone"\) \.Values\.networkPolicy\.enabled \}\}/);
    expect(policy).toMatch(/\{\{- if not \(or \$np\.database\.cidrs \$np\.database\.peers\) \}\}\n\{\{- fail /);
    const on = { networkPolicy: { enabled: true, database: { cidrs: ['10.0.12.7/32'] } } };
    expect(errorsOf(coalesce(defaults, on))).toEqual([]);
    const peers = {
      networkPolicy: { enabled: true, database: { peers: [{ podSelector: { matchLabels: { app: 'db' } } }] } },
    };
    expect(errorsOf(coalesce(defaults, peers))).toEqual([]);
  });

  test('egress: the database port, webhook ports outside private ranges, DNS; ingress: the relay port only', () => {
    expect(policy).toMatch(/policyTypes:\n\s+- Ingress\n\s+- Egress/);
    expect(policy).toMatch(/ingress:\n\s+- ports:\n\s+- port: relay-http\n\s+protocol: TCP/);
    expect(policy).toMatch(/port: \{\{ \$np\.database\.port \| int64 \}\}/);
    expect(policy).toMatch(/\{\{- range \$np\.webhooks\.ports \}\}\n\s+- port: \{\{ \. \| int64 \}\}/);
    expect(policy).toMatch(/- port: 53\n\s+protocol: UDP\n\s+- port: 53\n\s+protocol: TCP/);
    const webhooks = (
      defaults.networkPolicy as { webhooks: { ports: number[]; ipBlocks: { cidr: string; except: string[] }[] } }
    ).webhooks;
    expect(webhooks.ports).toEqual([443]);
    const [v4, v6] = webhooks.ipBlocks;
    expect(v4?.cidr).toBe('0.0.0.0/0');
    expect(v4?.except).toEqual(
      expect.arrayContaining(['10.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16']),
    );
    expect(v6?.cidr).toBe('::/0');
    expect(v6?.except).toEqual(expect.arrayContaining(['fc00::/7', 'fe80::/10']));
  });
});

describe('console', () => {
  const template = text(`${CHART}templates/console.yaml`);
  const consoleValues = (override: Values) => coalesce(defaults, { console: override });

  test('is off by default; enabled, it needs a token Secret and validates', () => {
    expect(defaults.console).toMatchObject({ enabled: false, replicaCount: 1, port: 8081, secureCookie: false });
    expect(template).toMatch(/^\{\{- if \.Values\.console\.enabled \}\}/);
    expect(template).toMatch(
      /\{\{- if not \(or \$c\.tokensSecret\.name \$c\.readTokensSecret\.name\) \}\}\n\{\{- fail /,
    );
    expect(errorsOf(consoleValues({ enabled: true, tokensSecret: { name: 'console-tokens', key: 'tokens' } }))).toEqual(
      [],
    );
    expect(errorsOf(consoleValues({ enabled: true, readTokensSecret: { name: 'ro', key: 'tokens' } }))).toEqual([]);
    const open = errorsOf(consoleValues({ enabled: true }));
    expect(open.map((e) => e.keyword)).toContain('anyOf');
  });

  test.each([
    ['two replicas (sessions are per process)', { replicaCount: 2 }, '/console/replicaCount', 'maximum'],
    ['a port above 65535', { port: 70_000 }, '/console/port', 'maximum'],
    ['a session ttl in words', { sessionTtl: 'a day' }, '/console/sessionTtl', 'pattern'],
    ['a host name as bind address', { host: 'localhost' }, '/console/host', 'pattern'],
    ['a quoted boolean', { secureCookie: 'yes' }, '/console/secureCookie', 'type'],
  ])('rejects %s', (_name, override, path, keyword) => {
    const errors = errorsOf(consoleValues(override));
    expect(errors.map((e) => `${e.instancePath} ${e.keyword}`)).toContain(`${path} ${keyword}`);
  });

  test('rejects tokens in plain text, naming the key', () => {
    expect(errorsOf(consoleValues({ tokens: 'x' }))).toContainEqual(
      expect.objectContaining({ instancePath: '/console', params: { additionalProperty: 'tokens' } }),
    );
  });

  test('runs `outbox-relay console` with every CONSOLE_* variable, tokens only from Secrets', () => {
    expect(template).toMatch(/args: \["console"\]/);
    const set = [...template.matchAll(/- name: (CONSOLE_[A-Z_]+)/g)].map((m) => m[1]).sort();
    expect(set).toEqual(CONSOLE_ENV_NAMES);
    for (const name of ['CONSOLE_TOKENS', 'CONSOLE_READ_TOKENS']) {
      expect(template).toMatch(new RegExp(`- name: ${name}\\n\\s+valueFrom:\\n\\s+secretKeyRef:`));
    }
    expect(template).toMatch(/- name: DATABASE_URL\n\s+valueFrom:\n\s+secretKeyRef:/);
  });

  test('its pods carry a name of their own, so the relay Service, PDB and NetworkPolicy never select them', () => {
    expect(helpers).toMatch(
      /define "outbox-relay\.consoleSelectorLabels"[\s\S]*?app\.kubernetes\.io\/name: \{\{ include "outbox-relay\.name" \. \}\}-console/,
    );
    expect([...template.matchAll(/include "outbox-relay\.(\w+)"/g)].map((m) => m[1])).not.toContain('selectorLabels');
  });

  test("the values render a configuration the console accepts, with the console's defaults", () => {
    const c = defaults.console as Values;
    const env = {
      DATABASE_URL: 'postgres://u:p@db/app',
      CONSOLE_HOST: String(c.host),
      CONSOLE_PORT: String(c.port),
      CONSOLE_SESSION_TTL: String(c.sessionTtl),
      CONSOLE_SECURE_COOKIE: String(c.secureCookie),
      CONSOLE_TOKENS: 'a-console-token-0123456789',
    };
    expect(loadConfig(env).console).toMatchObject({ port: 8081, sessionTtlMs: 12 * 3_600_000, secureCookie: false });
    expect(loadConfig({ DATABASE_URL: env.DATABASE_URL }).console.port).toBe(c.port);
  });
});

describe('chart consistency', () => {
  test('SIGTERM drain fits inside the termination grace period, with room for the final writes', () => {
    for (const values of [defaults, coalesce(defaults, standalone)]) {
      const graceMs = parseDuration((values.config as Values).shutdownGrace as string)!;
      expect(graceMs + 5_000).toBeLessThanOrEqual((values.terminationGracePeriodSeconds as number) * 1_000);
    }
    // A sidecar runs under the application pod's period: Kubernetes' default is 30s.
    const sidecarGraceMs = parseDuration((coalesce(defaults, sidecar).config as Values).shutdownGrace as string)!;
    expect(sidecarGraceMs + 5_000).toBeLessThanOrEqual(30_000);
  });

  test('the image tag follows Chart.yaml appVersion and the uid matches the Dockerfile', () => {
    const chart = parse(text(`${CHART}Chart.yaml`)) as Values;
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'outbox-relay', type: 'application' });
    expect((defaults.image as Values).tag).toBe(chart.appVersion);
    expect(text(`${ROOT}Dockerfile`)).toMatch(/^USER 10001:10001$/m);
    expect(defaults.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
  });

  test('templates reference only keys that exist in values.yaml', () => {
    const missing: string[] = [];
    for (const file of readdirSync(`${CHART}templates`)) {
      const source = text(`${CHART}templates/${file}`).replace(/\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g, ''); // comments
      for (const [, path] of source.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
        let node: unknown = defaults;
        for (const key of path!.slice(1).split('.')) {
          node = isMap(node) && key in node ? node[key] : undefined;
          if (node === undefined) {
            missing.push(`${file}: .Values${path}`);
            break;
          }
        }
      }
    }
    expect(missing).toEqual([]);
  });
});
