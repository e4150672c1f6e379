import { describe, expect } from 'vitest';
import { ENV_VARIABLES, loadConfig, parseDuration, type EnvVariable } from '../src/config.ts';
import { RelayError } from '../src/errors.ts';
import { test } from './fixtures.ts';
import { untilReady } from './support/relay-process.ts';

describe('parseDuration', () => {
  test.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['1.5s', 1_500],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['0', 0],
    [' 10s ', 10_000],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  test.each(['', '10', 'ten seconds', '5 minutes', '-1s', '1e3ms', '5M'])('"%s" is rejected', (text) =>
    expect(parseDuration(text)).toBeUndefined(),
  );
});

describe('loadConfig', () => {
  test('defaults describe a safe production relay', () => {
    const c = loadConfig({ DATABASE_URL: 'postgres://u:p@db/app' });
    expect(c).toMatchObject({
      httpPort: 8080,
      allowPrivateNetworks: false,
      slotName: 'outbox_relay',
      leaseMs: 60_000,
      requestTimeoutMs: 15_000,
      retryScheduleMs: [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000],
      retryJitter: 0.2,
    });
    expect(c.workerId).toMatch(/-\d+$/);
    expect(Object.isFrozen(c)).toBe(true);
  });

  test('every bad variable is named in one error, with what to fix', () => {
    let error: unknown;
    try {
      loadConfig({ HTTP_PORT: '80a', LEASE: '5 minutes', ALLOW_PRIVATE_NETWORKS: 'maybe', SLOT_NAME: 'Bad-Name' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(RelayError);
    expect((error as RelayError).code).toBe('CONFIG_INVALID');
    const message = (error as Error).message;
    expect(message).toContain('HTTP_PORT: expected a whole number 0-65535, got "80a"');
    expect(message).toContain('LEASE: expected a duration such as 500ms, 30s, 5m or 2h, got "5 minutes"');
    expect(message).toContain('ALLOW_PRIVATE_NETWORKS: expected true or false, got "maybe"');
    expect(message).toContain('SLOT_NAME: expected a lower-case Postgres identifier');
  });

  test('a lease that does not outlive an attempt plus two heartbeats is refused', () => {
    expect(() => loadConfig({ LEASE: '20s', REQUEST_TIMEOUT: '15s', HEARTBEAT_INTERVAL: '5s' })).toThrow(
      /LEASE: must exceed REQUEST_TIMEOUT \+ 2 x HEARTBEAT_INTERVAL \(25s\).*got 20s/,
    );
    expect(() => loadConfig({ LEASE: '26s', REQUEST_TIMEOUT: '15s', HEARTBEAT_INTERVAL: '5s' })).not.toThrow();
  });

  test('empty strings count as unset', () => {
    expect(loadConfig({ HTTP_PORT: '', LOG_LEVEL: '' }).httpPort).toBe(8080);
  });

  test('RETRY_SCHEDULE is the list of waits after each failed attempt', () => {
    expect(loadConfig({ RETRY_SCHEDULE: '1s, 10s,1m' }).retryScheduleMs).toEqual([1_000, 10_000, 60_000]);
  });
});

test('PAYLOAD_BUDGET reads sizes with units and refuses what it cannot read, naming an example', () => {
  expect(loadConfig({ PAYLOAD_BUDGET: '512MB' }).payloadBudgetBytes).toBe(512_000_000);
  expect(loadConfig({ PAYLOAD_BUDGET: '1GiB' }).payloadBudgetBytes).toBe(2 ** 30);
  expect(loadConfig({}).payloadBudgetBytes).toBe(64 * 2 ** 20);
  expect(() => loadConfig({ PAYLOAD_BUDGET: 'lots' })).toThrow(/PAYLOAD_BUDGET: expected a size .* such as 64MiB/);
  expect(() => loadConfig({ PAYLOAD_BUDGET: '10kB' })).toThrow(/PAYLOAD_BUDGET/); // below 1 MiB
});

/**
 * Valid values for one variable, away from its default: half and double of a number or duration and the ends of
 * its range (clamped to the range), the other value of a boolean, other choices, other lists.
 */
function alternatives(v: EnvVariable): string[] {
  const clamp = (n: number) => Math.min(v.max ?? Infinity, Math.max(v.min ?? 0, n));
  const around = (n: number) => [...new Set([n / 2, n * 2, v.min ?? 0, v.max ?? n * 10].map(clamp))];
  switch (v.kind) {
    case 'duration':
      return around(v.default as number).map((ms) => `${Math.round(ms)}ms`);
    case 'integer':
      return around(v.default as number).map((n) => String(Math.round(n)));
    case 'ratio':
      return around(v.default as number).map(String);
    case 'boolean':
      return [String(!(v.default as boolean))];
    case 'enum':
      return (v.choices ?? []).filter((choice) => choice !== v.default);
    case 'durations': {
      const schedule = v.default as number[];
      return [
        schedule.map((ms) => `${ms / 2}ms`).join(','),
        schedule.map((ms) => `${ms * 2}ms`).join(','),
        '1s',
        Array.from({ length: v.max ?? 1 }, () => '1m').join(','),
      ];
    }
    case 'cidrs':
      return ['10.0.0.0/8', '64:ff9b::/96', '10.0.0.0/8, fd00::/8, 192.0.2.7'];
    case 'identifier':
      return ['other_slot'];
    case 'url':
      return ['postgres://u:p@db:5432/app'];
    case 'text':
      return ['pod-7'];
    case 'address':
      return ['127.0.0.1', '0.0.0.0', '::1', '::'];
    case 'secret':
      return ['s3cr3t-metrics-token-0123456789'];
    case 'secrets':
      return ['s3cr3t-console-token-0123456789', 'first-console-token-0123, second-console-token-4567'];
    case 'bytes':
      return around(v.default as number).map((n) => String(Math.round(n)));
    case 'endpoint':
      return ['http://otel-collector:4318', 'https://otlp.example.com/v1/traces'];
    case 'pairs':
      return ['api-key=abc', 'authorization=Bearer%20abc,team=web'];
  }
}

describe('every variable set alone is accepted: defaults adapt to it', () => {
  test('the list comes from the schema and covers the variables DESIGN.md names', () => {
    expect(ENV_VARIABLES.map((v) => v.name)).toEqual(
      expect.arrayContaining(['DATABASE_URL', 'WORKER_ID', 'HTTP_PORT', 'LOG_LEVEL', 'ALLOW_PRIVATE_NETWORKS']),
    );
    expect(ENV_VARIABLES.length).toBeGreaterThan(40);
  });

  test.each(ENV_VARIABLES.flatMap((v) => alternatives(v).map((value) => [v.name, value] as const)))(
    '%s=%s',
    (name, value) => {
      expect(() => loadConfig({ [name]: value })).not.toThrow();
    },
  );

  test.each([
    ['BREAKER_RESET_TIMEOUT', '10s', { breakerResetTimeoutMs: 10_000, breakerWindowMs: 10_000 }],
    ['BREAKER_WINDOW', '1m', { breakerResetTimeoutMs: 60_000, breakerWindowMs: 60_000 }],
    ['REQUEST_TIMEOUT', '60s', { requestTimeoutMs: 60_000, heartbeatIntervalMs: 10_000, leaseMs: 90_000 }],
    ['HEARTBEAT_INTERVAL', '20s', { requestTimeoutMs: 15_000, heartbeatIntervalMs: 20_000, leaseMs: 75_000 }],
    ['LEASE', '30s', { requestTimeoutMs: 15_000, heartbeatIntervalMs: 5_000, leaseMs: 30_000 }],
    ['LEASE', '2s', { requestTimeoutMs: 1_000, heartbeatIntervalMs: 333, leaseMs: 2_000 }],
    ['DELIVERY_CONCURRENCY', '5000', { deliveryConcurrency: 5_000, schedulerCapacity: 5_000 }],
    ['SCHEDULER_CAPACITY', '10', { deliveryConcurrency: 10, schedulerCapacity: 10 }],
    ['STATUS_INTERVAL', '30s', { statusIntervalMs: 30_000, streamIdleTimeoutMs: 90_000 }],
    ['STREAM_IDLE_TIMEOUT', '3s', { statusIntervalMs: 1_000, streamIdleTimeoutMs: 3_000 }],
  ])('%s=%s alone moves the unset side of its rule', (name, value, expected) => {
    expect(loadConfig({ [name]: value })).toMatchObject(expected);
  });

  test('a short lease with a set timeout derives the heartbeat from what the timeout leaves', () => {
    expect(loadConfig({ LEASE: '20s', REQUEST_TIMEOUT: '14s' })).toMatchObject({ heartbeatIntervalMs: 2_000 });
    expect(loadConfig({ LEASE: '20s', HEARTBEAT_INTERVAL: '4s' })).toMatchObject({ requestTimeoutMs: 6_000 });
  });

  test('two values set that contradict each other still stop the start, naming the rule', () => {
    expect(() => loadConfig({ BREAKER_RESET_TIMEOUT: '10s', BREAKER_WINDOW: '30s' })).toThrow(
      'BREAKER_WINDOW: must not exceed BREAKER_RESET_TIMEOUT (10s), got 30s',
    );
    expect(() => loadConfig({ SCHEDULER_CAPACITY: '10', DELIVERY_CONCURRENCY: '64' })).toThrow(
      'SCHEDULER_CAPACITY: must be at least DELIVERY_CONCURRENCY (64), got 10',
    );
    expect(() => loadConfig({ STREAM_IDLE_TIMEOUT: '5s', STATUS_INTERVAL: '10s' })).toThrow(
      'STREAM_IDLE_TIMEOUT: must be at least 2 x STATUS_INTERVAL (20s), got 5s',
    );
    expect(() => loadConfig({ LEASE: '30s', REQUEST_TIMEOUT: '60s' })).toThrow(
      /LEASE: must exceed REQUEST_TIMEOUT \+ 2 x HEARTBEAT_INTERVAL/,
    );
  });

  test('a bad METRICS_TOKEN is refused without repeating it', () => {
    expect(() => loadConfig({ METRICS_TOKEN: 'short secret' })).toThrow(
      'METRICS_TOKEN: expected 16-4096 printable characters without spaces (value not shown)',
    );
    expect(() => loadConfig({ METRICS_TOKEN: 'short secret' })).not.toThrow(/short secret/);
    expect(() => loadConfig({ HTTP_HOST: 'localhost' })).toThrow(
      'HTTP_HOST: expected an IP address to listen on, e.g. 127.0.0.1, 0.0.0.0 or ::',
    );
  });

  test('BREAKER_RESET_TIMEOUT=10s alone starts a relay', async ({ db, spawnRelay }) => {
    const relay = spawnRelay({
      DATABASE_URL: db.url,
      SLOT_NAME: db.slotName,
      PUBLICATION_NAME: db.publicationName,
      HTTP_PORT: '0',
      BREAKER_RESET_TIMEOUT: '10s',
    });
    await untilReady(relay);
    expect(relay.stderr()).toBe('');
  });
});

describe('OpenTelemetry variables', () => {
  test('tracing is off unless an OTLP endpoint is set', () => {
    expect(loadConfig({}).tracing).toBeNull();
    expect(loadConfig({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }).tracing).toBeNull();
  });

  test('the signal-agnostic endpoint gets /v1/traces; the traces endpoint is used as is and wins', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing).toMatchObject({
      url: 'http://collector:4318/v1/traces',
      serviceName: 'outbox-relay',
      sampler: 'parentbased_always_on',
    });
    expect(
      loadConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example.com/otlp',
      }).tracing?.url,
    ).toBe('https://traces.example.com/otlp');
  });

  test('OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none turn it off despite an endpoint', () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' };
    expect(loadConfig({ ...endpoint, OTEL_SDK_DISABLED: 'true' }).tracing).toBeNull();
    expect(loadConfig({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }).tracing).toBeNull();
  });

  test('headers (signal-specific ones win), resource attributes and batch settings are read', () => {
    const tracing = loadConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_EXPORTER_OTLP_HEADERS: 'api-key=one,team=web',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'api-key=two%20three',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod',
      OTEL_BSP_SCHEDULE_DELAY: '200',
      OTEL_BSP_MAX_QUEUE_SIZE: '100',
    }).tracing;
    expect(tracing).toMatchObject({
      headers: { 'api-key': 'two three', team: 'web' },
      resourceAttributes: { 'deployment.environment': 'prod' },
      scheduledDelayMs: 200,
      maxQueueSize: 100,
      maxExportBatchSize: 100, // the default 512 follows a smaller queue
    });
  });

  test('bad values name the variable and what to fix, never echoing a header value', () => {
    let message = '';
    try {
      loadConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        OTEL_EXPORTER_OTLP_HEADERS: 'Bearer-s3cret-token',
        OTEL_TRACES_SAMPLER: 'sometimes',
      });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/OTEL_EXPORTER_OTLP_ENDPOINT: expected an http:\/\/ or https:\/\/ URL/);
    expect(message).toMatch(/OTEL_EXPORTER_OTLP_PROTOCOL: expected http\/json/);
    expect(message).toMatch(/OTEL_EXPORTER_OTLP_HEADERS: expected comma-separated key=value pairs/);
    expect(message).toMatch(/OTEL_TRACES_SAMPLER: /);
    expect(message).not.toContain('s3cret');
  });
});
