import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { z } from 'zod';
import { parseCidrs } from './delivery/ssrf.ts';
import { RelayError } from './errors.ts';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses `500ms`, `30s`, `5m`, `2h`, `7d` (or a bare `0`) into milliseconds; returns undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(text);
  if (match === null) return text.trim() === '0' ? 0 : undefined;
  return Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
}

/**
 * What a variable holds, attached to its schema with zod's `.meta()` so callers that must produce valid values
 * (the "every knob alone" test, docs) read it from the schema instead of keeping a second list.
 */
export type EnvKind =
  | 'duration'
  | 'integer'
  | 'ratio'
  | 'boolean'
  | 'durations'
  | 'cidrs'
  | 'identifier'
  | 'url'
  | 'enum'
  | 'text'
  | 'address'
  | 'secret'
  | 'bytes'
  | 'endpoint'
  | 'pairs'
  | 'secrets';
type EnvMeta = { kind: EnvKind; min?: number; max?: number; choices?: readonly string[] };
const described = <T extends z.ZodType>(schema: T, meta: EnvMeta): T => schema.meta(meta);

const durationText = (min: number, max: number) =>
  z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a duration such as 500ms, 30s, 5m or 2h, got "${text}"` });
      return z.NEVER;
    }
    if (ms < min || ms > max) {
      ctx.addIssue({ code: 'custom', message: `expected between ${fmt(min)} and ${fmt(max)}, got "${text}"` });
      return z.NEVER;
    }
    return ms;
  });

const BYTE_UNITS = {
  '': 1,
  B: 1,
  kB: 1e3,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
} as const;

/** Parses `64MiB`, `512kB`, `2GB` or a bare number of bytes; returns undefined when malformed. */
export function parseBytes(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|KiB|MiB|GiB)?\s*$/.exec(text);
  if (match === null) return undefined;
  return Math.round(Number(match[1]) * BYTE_UNITS[(match[2] ?? '') as keyof typeof BYTE_UNITS]);
}

const bytesText = (min: number, max: number) =>
  z.string().transform((text, ctx) => {
    const n = parseBytes(text);
    if (n === undefined || n < min || n > max) {
      ctx.addIssue({
        code: 'custom',
        message: `expected a size between ${min / 2 ** 20}MiB and ${max / 2 ** 30}GiB such as 64MiB or 512MB, got "${text}"`,
      });
      return z.NEVER;
    }
    return n;
  });

const integerText = (min: number, max: number) =>
  z.string().transform((text, ctx) => {
    const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `expected a whole number ${min}-${max}, got "${text}"` });
      return z.NEVER;
    }
    return n;
  });

const ratioText = z.string().transform((text, ctx) => {
  const n = /^\s*\d+(\.\d+)?\s*$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= 1)) {
    ctx.addIssue({ code: 'custom', message: `expected a number between 0 and 1, got "${text}"` });
    return z.NEVER;
  }
  return n;
});

const booleanText = z.string().transform((text, ctx) => {
  const value = text.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(value)) return true;
  if (['false', '0', 'no', ''].includes(value)) return false;
  ctx.addIssue({ code: 'custom', message: `expected true or false, got "${text}"` });
  return z.NEVER;
});

const retryScheduleText = z.string().transform((text, ctx) => {
  const parts = text.split(',').map((p) => p.trim());
  const delays = parts.map(parseDuration);
  const bad = parts.filter((_, i) => delays[i] === undefined);
  if (bad.length > 0 || parts.length === 0 || parts.length > 50) {
    ctx.addIssue({
      code: 'custom',
      message: `expected 1-50 comma-separated durations (the wait after each failed attempt), e.g. "5s,5m,30m"; could not read ${bad.map((b) => `"${b}"`).join(', ')}`,
    });
    return z.NEVER;
  }
  return delays as number[];
});

const cidrListText = z.string().transform((text, ctx) => {
  const parsed = parseCidrs(text);
  if (!Array.isArray(parsed)) {
    ctx.addIssue({
      code: 'custom',
      message: `${parsed.error}; expected comma-separated CIDRs, e.g. "10.0.0.0/8, fd00::/8"`,
    });
    return z.NEVER;
  }
  return parsed;
});

const duration = (min: number, max: number) => described(durationText(min, max), { kind: 'duration', min, max });
const integer = (min: number, max: number) => described(integerText(min, max), { kind: 'integer', min, max });
const bytes = (min: number, max: number) => described(bytesText(min, max), { kind: 'bytes', min, max });
const ratio = described(ratioText, { kind: 'ratio', min: 0, max: 1 });
const boolean = described(booleanText, { kind: 'boolean' });
const retrySchedule = described(retryScheduleText, { kind: 'durations', min: 1, max: 50 });
const cidrList = described(cidrListText, { kind: 'cidrs' });

const identifier = described(
  z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a lower-case Postgres identifier (a-z, 0-9, _; at most 63 characters)'),
  { kind: 'identifier' },
);

const databaseUrl = described(
  z.string().refine((url) => /^postgres(ql)?:\/\//.test(url), {
    message: 'expected a postgres:// or postgresql:// connection URL',
  }),
  { kind: 'url' },
);

const bindAddress = described(
  z.string().refine((text) => isIP(text) !== 0, {
    message: 'expected an IP address to listen on, e.g. 127.0.0.1, 0.0.0.0 or ::',
  }),
  { kind: 'address' },
);

// The message never repeats the value: it is a secret.
const bearerToken = described(
  z.string().regex(/^[\x21-\x7e]{16,4096}$/, 'expected 16-4096 printable characters without spaces (value not shown)'),
  { kind: 'secret' },
);

/** An OTLP/HTTP collector URL (OTEL_EXPORTER_OTLP_*ENDPOINT). */
const otlpEndpoint = described(
  z.string().refine((text) => URL.canParse(text) && /^https?:$/.test(new URL(text).protocol), {
    message: 'expected an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://otel-collector:4318',
  }),
  { kind: 'endpoint' },
);

/**
 * `key=value,key2=value2` with percent-encoded values, as the OpenTelemetry spec writes headers and resource
 * attributes. The message never repeats the value: headers carry credentials.
 */
const pairsText = z.string().transform((text, ctx) => {
  const pairs: Record<string, string> = {};
  for (const part of text.split(',')) {
    if (part.trim() === '') continue;
    const at = part.indexOf('=');
    const key = at > 0 ? part.slice(0, at).trim() : '';
    let value: string | undefined;
    try {
      value = at > 0 ? decodeURIComponent(part.slice(at + 1).trim()) : undefined;
    } catch {
      value = undefined;
    }
    if (key === '' || value === undefined) {
      ctx.addIssue({
        code: 'custom',
        message:
          'expected comma-separated key=value pairs, values percent-encoded, e.g. "api-key=abc,team=web" (value not shown)',
      });
      return z.NEVER;
    }
    pairs[key] = value;
  }
  return pairs;
});
const pairs = described(pairsText, { kind: 'pairs' });

const OTLP_PROTOCOLS = ['http/json'] as const;
const otlpProtocol = described(
  z.string().refine((text) => (OTLP_PROTOCOLS as readonly string[]).includes(text), {
    message:
      'expected http/json: the relay exports OTLP over HTTP with JSON bodies, which every OTLP/HTTP collector accepts (grpc and http/protobuf are not built in)',
  }),
  { kind: 'enum', choices: OTLP_PROTOCOLS },
);
const TRACES_EXPORTERS = ['otlp', 'none'] as const;
const SAMPLERS = [
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
  'always_on',
  'always_off',
  'traceidratio',
] as const;
// A comma-separated list of bearer tokens; like bearerToken, the message never repeats a value.
const bearerTokens = described(
  z.string().transform((text, ctx) => {
    const tokens = text
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
    if (tokens.length === 0 || tokens.some((t) => !/^[\x21-\x2b\x2d-\x7e]{16,4096}$/.test(t))) {
      ctx.addIssue({
        code: 'custom',
        message: 'expected comma-separated tokens of 16-4096 printable characters without spaces (values not shown)',
      });
      return z.NEVER;
    }
    return tokens;
  }),
  { kind: 'secrets' },
);

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/**
 * Every variable the relay reads, with its default. README's env table mirrors this. The defaults of variables
 * tied by a rule (LEASE, HEARTBEAT_INTERVAL, REQUEST_TIMEOUT; BREAKER_WINDOW, BREAKER_RESET_TIMEOUT;
 * SCHEDULER_CAPACITY, DELIVERY_CONCURRENCY) are where deriveDefaults starts from when they are unset.
 */
const EnvSchema = z.object({
  DATABASE_URL: databaseUrl.optional(),
  WORKER_ID: described(z.string().min(1).max(200), { kind: 'text' }).optional(),
  HTTP_PORT: integer(0, 65535).default(8080),
  /** Unset: every interface, IPv6 and IPv4 (Node's default), so probes reach the pod in any cluster. */
  HTTP_HOST: bindAddress.optional(),
  /** Unset: /metrics is open like /healthz and /readyz. */
  METRICS_TOKEN: bearerToken.optional(),
  LOG_LEVEL: described(z.enum(LOG_LEVELS), { kind: 'enum', choices: LOG_LEVELS }).default('info'),
  ALLOW_PRIVATE_NETWORKS: boolean.default(false),
  ALLOWED_CIDRS: cidrList.default([]),
  ALLOW_HTTP: boolean.default(false),
  CONNECT_TIMEOUT: duration(100, 60_000).default(10_000),
  SLOT_NAME: identifier.default('outbox_relay'),
  PUBLICATION_NAME: identifier.default('outbox_relay'),
  DELIVERY_CONCURRENCY: integer(1, 10_000).default(64),
  ENDPOINT_CONCURRENCY: integer(1, 10_000).default(16),
  SCHEDULER_CAPACITY: integer(1, 1_000_000).default(2_000),
  PAYLOAD_BUDGET: bytes(2 ** 20, 64 * 2 ** 30).default(64 * 2 ** 20),
  CLAIM_BATCH: integer(1, 10_000).default(500),
  CLAIM_INTERVAL: duration(10, 60_000).default(1_000),
  FANOUT_BATCH: integer(1, 50_000).default(2_000),
  FANOUT_ROOM_WAIT: duration(0, 10_000).default(0),
  PERSIST_AFTER: duration(100, 60_000).default(2_000),
  LEASE: duration(1_000, 3_600_000).default(60_000),
  HEARTBEAT_INTERVAL: duration(100, 600_000).default(10_000),
  SWEEP_INTERVAL: duration(100, 3_600_000).default(10_000),
  REQUEST_TIMEOUT: duration(100, 300_000).default(15_000),
  MAX_RESPONSE_BYTES: integer(0, 10_485_760).default(65_536),
  RETRY_SCHEDULE: retrySchedule.default([5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]),
  RETRY_JITTER: ratio.default(0.2),
  RETRY_AFTER_MAX: duration(0, 86_400_000).default(3_600_000),
  STATUS_INTERVAL: duration(100, 60_000).default(10_000),
  STREAM_IDLE_TIMEOUT: duration(1_000, 3_600_000).default(30_000),
  STANDBY_RETRY_INTERVAL: duration(100, 600_000).default(5_000),
  MIGRATE_ON_START: boolean.default(true),
  SHUTDOWN_GRACE: duration(0, 600_000).default(20_000),
  AUTO_DISABLE_AFTER: duration(0, 365 * 86_400_000).default(5 * 86_400_000),
  AUTO_DISABLE_AFTER_FAILURES: integer(0, 1_000_000).default(0),
  STATS_INTERVAL: duration(100, 3_600_000).default(15_000),
  CLUSTER_POLL_INTERVAL: duration(100, 10_000).default(1_000),
  STATEMENT_TIMEOUT: duration(1_000, 600_000).default(30_000),
  BREAKER_ERROR_THRESHOLD: integer(1, 100).default(50),
  BREAKER_VOLUME_THRESHOLD: integer(1, 100_000).default(10),
  BREAKER_RESET_TIMEOUT: duration(100, 3_600_000).default(30_000),
  BREAKER_WINDOW: duration(100, 3_600_000).default(30_000),
  RETENTION_DELIVERED: duration(0, 3650 * 86_400_000).default(7 * 86_400_000),
  RETENTION_DEAD: duration(3_600_000, 3650 * 86_400_000).default(30 * 86_400_000),
  RETENTION_INTERVAL: duration(1_000, 86_400_000).default(600_000),
  RETENTION_BATCH: integer(1, 100_000).default(1_000),
  // OpenTelemetry tracing: the standard variables (https://opentelemetry.io/docs/specs/otel/configuration/
  // sdk-environment-variables/), read here like every other knob. Tracing is on only with an endpoint.
  OTEL_SDK_DISABLED: boolean.default(false),
  OTEL_TRACES_EXPORTER: described(z.enum(TRACES_EXPORTERS), { kind: 'enum', choices: TRACES_EXPORTERS }).default(
    'otlp',
  ),
  OTEL_EXPORTER_OTLP_ENDPOINT: otlpEndpoint.optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlpEndpoint.optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol.default('http/json'),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol.default('http/json'),
  OTEL_EXPORTER_OTLP_HEADERS: pairs.optional(),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: pairs.optional(),
  OTEL_SERVICE_NAME: described(z.string().min(1).max(255), { kind: 'text' }).default('outbox-relay'),
  OTEL_RESOURCE_ATTRIBUTES: pairs.optional(),
  OTEL_TRACES_SAMPLER: described(z.enum(SAMPLERS), { kind: 'enum', choices: SAMPLERS }).default(
    'parentbased_always_on',
  ),
  OTEL_TRACES_SAMPLER_ARG: ratio.default(1),
  // The batch span processor, in milliseconds and spans as the spec has them.
  OTEL_BSP_SCHEDULE_DELAY: integer(0, 3_600_000).default(5_000),
  OTEL_BSP_EXPORT_TIMEOUT: integer(1, 3_600_000).default(30_000),
  OTEL_BSP_MAX_QUEUE_SIZE: integer(1, 1_000_000).default(2_048),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: integer(1, 1_000_000).default(512),
  // `outbox-relay console` only; the relay never reads them.
  CONSOLE_HOST: bindAddress.default('127.0.0.1'),
  CONSOLE_PORT: integer(0, 65535).default(8081),
  CONSOLE_TOKENS: bearerTokens.default([]),
  CONSOLE_READ_TOKENS: bearerTokens.default([]),
  CONSOLE_SESSION_TTL: duration(60_000, 30 * 86_400_000).default(12 * 3_600_000),
  CONSOLE_SECURE_COOKIE: boolean.default(false),
});

type Env = z.output<typeof EnvSchema>;
type EnvName = keyof Env;

export type EnvVariable = Readonly<EnvMeta & { name: EnvName; default: unknown }>;

/** Every variable the relay reads: its kind, range (numbers; durations in ms; a list's length) and schema default. */
export const ENV_VARIABLES: readonly EnvVariable[] = Object.freeze(
  Object.entries(EnvSchema.shape).map(([name, field]) => {
    const inner = field instanceof z.ZodDefault || field instanceof z.ZodOptional ? field.unwrap() : field;
    const meta = inner.meta() as EnvMeta | undefined;
    if (meta?.kind === undefined) throw new Error(`config.ts: ${name} lacks its kind (wrap it in described())`);
    const fallback: unknown = field instanceof z.ZodDefault ? field.def.defaultValue : undefined;
    return Object.freeze({ ...meta, name: name as EnvName, default: fallback });
  }),
);

export type Config = Readonly<{
  databaseUrl: string | undefined;
  workerId: string;
  httpPort: number;
  /** Bind address of the health/metrics server; undefined: every interface. */
  httpHost: string | undefined;
  /** When set, /metrics answers only `Authorization: Bearer <token>`. Never logged. */
  metricsToken: string | undefined;
  logLevel: (typeof LOG_LEVELS)[number];
  allowPrivateNetworks: boolean;
  allowedCidrs: readonly string[];
  allowHttp: boolean;
  connectTimeoutMs: number;
  slotName: string;
  publicationName: string;
  deliveryConcurrency: number;
  endpointConcurrency: number;
  schedulerCapacity: number;
  /** Payload bytes held in memory: a quarter for WAL rows not yet fanned out, the rest for the scheduler. */
  payloadBudgetBytes: number;
  claimBatch: number;
  claimIntervalMs: number;
  fanoutBatch: number;
  /** 0: overflow beyond the scheduler's room is inserted pending at once, for any replica to claim. */
  fanoutRoomWaitMs: number;
  /** A delivery sent from the stream gets a row once held this long unanswered (bounds how long it holds the slot). */
  persistAfterMs: number;
  leaseMs: number;
  heartbeatIntervalMs: number;
  sweepIntervalMs: number;
  requestTimeoutMs: number;
  maxResponseBytes: number;
  retryScheduleMs: readonly number[];
  retryJitter: number;
  retryAfterMaxMs: number;
  statusIntervalMs: number;
  streamIdleTimeoutMs: number;
  /** Server-side statement_timeout of the relay's pool; the client abandons a connection 2 s after it. */
  statementTimeoutMs: number;
  standbyRetryMs: number;
  migrateOnStart: boolean;
  shutdownGraceMs: number;
  autoDisableMs: number;
  /** Consecutive failed attempts that disable an endpoint; 0 = never (AUTO_DISABLE_AFTER alone decides). */
  autoDisableFailures: number;
  statsIntervalMs: number;
  /** How often cluster membership and shared breakers are read; a relay's membership lives 5 × this. */
  clusterPollIntervalMs: number;
  breakerErrorThresholdPercent: number;
  breakerVolumeThreshold: number;
  breakerResetTimeoutMs: number;
  breakerWindowMs: number;
  retentionDeliveredMs: number;
  retentionDeadMs: number;
  retentionIntervalMs: number;
  retentionBatch: number;
  /** OpenTelemetry trace export; null (off) unless an OTLP endpoint is configured. */
  tracing: TracingConfig | null;
  console: Readonly<{
    host: string;
    port: number;
    /** Full-access bearer tokens. Never logged. */
    tokens: readonly string[];
    /** Read-only bearer tokens. Never logged. */
    readTokens: readonly string[];
    sessionTtlMs: number;
    /** Mark the session cookie Secure: set it when TLS terminates in front of the console. */
    secureCookie: boolean;
  }>;
}>;

/** What src/tracing needs to build its provider, read from the standard OTEL_* variables. */
export type TracingConfig = Readonly<{
  /** The full traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces. */
  url: string;
  /** Sent with every export (signal-specific ones win). Never logged. */
  headers: Readonly<Record<string, string>>;
  serviceName: string;
  resourceAttributes: Readonly<Record<string, string>>;
  sampler: (typeof SAMPLERS)[number];
  samplerRatio: number;
  scheduledDelayMs: number;
  exportTimeoutMs: number;
  maxQueueSize: number;
  maxExportBatchSize: number;
}>;

/**
 * Reads and validates the environment. Every problem is reported at once, one line per variable,
 * so an operator fixes the deployment in one round.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present = Object.fromEntries(
    Object.keys(EnvSchema.shape)
      .filter((key) => env[key] !== undefined && env[key] !== '')
      .map((key) => [key, env[key]]),
  );
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
    throw new RelayError(
      'CONFIG_INVALID',
      `invalid configuration, fix these environment variables:\n${lines.join('\n')}`,
    );
  }
  const e: Env = parsed.data;
  const config: Mutable<Config> = {
    databaseUrl: e.DATABASE_URL,
    workerId: e.WORKER_ID ?? `${hostname()}-${process.pid}`,
    httpPort: e.HTTP_PORT,
    httpHost: e.HTTP_HOST,
    metricsToken: e.METRICS_TOKEN,
    logLevel: e.LOG_LEVEL,
    allowPrivateNetworks: e.ALLOW_PRIVATE_NETWORKS,
    allowedCidrs: Object.freeze(e.ALLOWED_CIDRS),
    allowHttp: e.ALLOW_HTTP,
    connectTimeoutMs: e.CONNECT_TIMEOUT,
    slotName: e.SLOT_NAME,
    publicationName: e.PUBLICATION_NAME,
    deliveryConcurrency: e.DELIVERY_CONCURRENCY,
    endpointConcurrency: e.ENDPOINT_CONCURRENCY,
    schedulerCapacity: e.SCHEDULER_CAPACITY,
    payloadBudgetBytes: e.PAYLOAD_BUDGET,
    claimBatch: e.CLAIM_BATCH,
    claimIntervalMs: e.CLAIM_INTERVAL,
    fanoutBatch: e.FANOUT_BATCH,
    fanoutRoomWaitMs: e.FANOUT_ROOM_WAIT,
    persistAfterMs: e.PERSIST_AFTER,
    leaseMs: e.LEASE,
    heartbeatIntervalMs: e.HEARTBEAT_INTERVAL,
    sweepIntervalMs: e.SWEEP_INTERVAL,
    requestTimeoutMs: e.REQUEST_TIMEOUT,
    maxResponseBytes: e.MAX_RESPONSE_BYTES,
    retryScheduleMs: Object.freeze(e.RETRY_SCHEDULE),
    retryJitter: e.RETRY_JITTER,
    retryAfterMaxMs: e.RETRY_AFTER_MAX,
    statusIntervalMs: e.STATUS_INTERVAL,
    streamIdleTimeoutMs: e.STREAM_IDLE_TIMEOUT,
    statementTimeoutMs: e.STATEMENT_TIMEOUT,
    standbyRetryMs: e.STANDBY_RETRY_INTERVAL,
    migrateOnStart: e.MIGRATE_ON_START,
    shutdownGraceMs: e.SHUTDOWN_GRACE,
    autoDisableMs: e.AUTO_DISABLE_AFTER,
    autoDisableFailures: e.AUTO_DISABLE_AFTER_FAILURES,
    statsIntervalMs: e.STATS_INTERVAL,
    clusterPollIntervalMs: e.CLUSTER_POLL_INTERVAL,
    breakerErrorThresholdPercent: e.BREAKER_ERROR_THRESHOLD,
    breakerVolumeThreshold: e.BREAKER_VOLUME_THRESHOLD,
    breakerResetTimeoutMs: e.BREAKER_RESET_TIMEOUT,
    breakerWindowMs: e.BREAKER_WINDOW,
    retentionDeliveredMs: e.RETENTION_DELIVERED,
    retentionDeadMs: e.RETENTION_DEAD,
    retentionIntervalMs: e.RETENTION_INTERVAL,
    retentionBatch: e.RETENTION_BATCH,
    tracing: tracingConfig(e),
    console: Object.freeze({
      host: e.CONSOLE_HOST,
      port: e.CONSOLE_PORT,
      tokens: Object.freeze(e.CONSOLE_TOKENS),
      readTokens: Object.freeze(e.CONSOLE_READ_TOKENS),
      sessionTtlMs: e.CONSOLE_SESSION_TTL,
      secureCookie: e.CONSOLE_SECURE_COOKIE,
    }),
  };
  deriveDefaults(config, (name) => name in present);
  checkRelations(config);
  return Object.freeze(config);
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Tracing is on only when an endpoint is configured and neither OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER=none
 * turns it off: the OpenTelemetry default endpoint (localhost:4318) is not assumed, so a relay without these
 * variables creates no provider and no exporter at all.
 */
function tracingConfig(e: Env): TracingConfig | null {
  if (e.OTEL_SDK_DISABLED || e.OTEL_TRACES_EXPORTER === 'none') return null;
  const base = e.OTEL_EXPORTER_OTLP_ENDPOINT;
  const url = e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (base === undefined ? undefined : tracesUrl(base));
  if (url === undefined) return null;
  return Object.freeze({
    url,
    headers: Object.freeze({ ...e.OTEL_EXPORTER_OTLP_HEADERS, ...e.OTEL_EXPORTER_OTLP_TRACES_HEADERS }),
    serviceName: e.OTEL_SERVICE_NAME,
    resourceAttributes: Object.freeze({ ...e.OTEL_RESOURCE_ATTRIBUTES }),
    sampler: e.OTEL_TRACES_SAMPLER,
    samplerRatio: e.OTEL_TRACES_SAMPLER_ARG,
    scheduledDelayMs: e.OTEL_BSP_SCHEDULE_DELAY,
    exportTimeoutMs: e.OTEL_BSP_EXPORT_TIMEOUT,
    maxQueueSize: e.OTEL_BSP_MAX_QUEUE_SIZE,
    // The spec's default batch (512) cannot exceed the queue: an unset batch size follows a smaller queue.
    maxExportBatchSize: Math.min(e.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, e.OTEL_BSP_MAX_QUEUE_SIZE),
  });
}

/** The spec's rule for the signal-agnostic endpoint: the signal's path appended to it. */
function tracesUrl(base: string): string {
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

function bounds(name: EnvName): { min: number; max: number } {
  const v = ENV_VARIABLES.find((variable) => variable.name === name);
  return { min: v?.min ?? 0, max: v?.max ?? Number.MAX_SAFE_INTEGER };
}
const within = (name: EnvName, ms: number) => {
  const { min, max } = bounds(name);
  return Math.min(max, Math.max(min, Math.floor(ms)));
};

/**
 * Defaults that depend on another variable (DESIGN.md: defaults adapt). A variable the operator set is never
 * changed; an unset one moves from its schema default just far enough to satisfy checkRelations against
 * whatever was set, so setting any one variable alone never fails the start. Only values the operator set
 * both can contradict each other, and checkRelations then names them.
 */
function deriveDefaults(c: Mutable<Config>, isSet: (name: EnvName) => boolean): void {
  // LEASE > REQUEST_TIMEOUT + 2 x HEARTBEAT_INTERVAL. An unset lease grows to cover the other two with one
  // more heartbeat to spare; a lease set short shrinks the unset timeout (to at most half the lease) and
  // heartbeat (to a third of what the timeout leaves).
  if (!isSet('LEASE')) {
    c.leaseMs = within('LEASE', Math.max(c.leaseMs, c.requestTimeoutMs + 3 * c.heartbeatIntervalMs));
  } else {
    if (!isSet('REQUEST_TIMEOUT')) {
      const room = isSet('HEARTBEAT_INTERVAL') ? (c.leaseMs - 2 * c.heartbeatIntervalMs) / 2 : c.leaseMs / 2;
      c.requestTimeoutMs = within('REQUEST_TIMEOUT', Math.min(c.requestTimeoutMs, room));
    }
    if (!isSet('HEARTBEAT_INTERVAL')) {
      const room = (c.leaseMs - c.requestTimeoutMs) / 3;
      c.heartbeatIntervalMs = within('HEARTBEAT_INTERVAL', Math.min(c.heartbeatIntervalMs, room));
    }
  }
  // STREAM_IDLE_TIMEOUT >= 2 x STATUS_INTERVAL (each status asks the server for an answer); unset, it is 3 x.
  if (!isSet('STREAM_IDLE_TIMEOUT')) c.streamIdleTimeoutMs = Math.max(c.streamIdleTimeoutMs, 3 * c.statusIntervalMs);
  else if (!isSet('STATUS_INTERVAL'))
    c.statusIntervalMs = within('STATUS_INTERVAL', Math.min(c.statusIntervalMs, c.streamIdleTimeoutMs / 3));
  // BREAKER_WINDOW <= BREAKER_RESET_TIMEOUT.
  if (!isSet('BREAKER_WINDOW')) c.breakerWindowMs = Math.min(c.breakerWindowMs, c.breakerResetTimeoutMs);
  else if (!isSet('BREAKER_RESET_TIMEOUT'))
    c.breakerResetTimeoutMs = Math.max(c.breakerResetTimeoutMs, c.breakerWindowMs);
  // SCHEDULER_CAPACITY >= DELIVERY_CONCURRENCY.
  if (!isSet('SCHEDULER_CAPACITY')) c.schedulerCapacity = Math.max(c.schedulerCapacity, c.deliveryConcurrency);
  else if (!isSet('DELIVERY_CONCURRENCY')) c.deliveryConcurrency = Math.min(c.deliveryConcurrency, c.schedulerCapacity);
}

/** Cross-variable rules that one field's schema cannot see (after deriveDefaults, only values set both). */
function checkRelations(c: Config): void {
  const problems: string[] = [];
  // A lease must outlive one attempt plus two missed heartbeats, or a peer could reclaim a request in flight.
  if (c.leaseMs <= c.requestTimeoutMs + 2 * c.heartbeatIntervalMs) {
    problems.push(
      `  LEASE: must exceed REQUEST_TIMEOUT + 2 x HEARTBEAT_INTERVAL (${fmt(c.requestTimeoutMs + 2 * c.heartbeatIntervalMs)}) so a peer never reclaims a request in flight, got ${fmt(c.leaseMs)}`,
    );
  }
  // The server answers each status at once; the stream is rebuilt only after two such answers went missing.
  if (c.streamIdleTimeoutMs < 2 * c.statusIntervalMs) {
    problems.push(
      `  STREAM_IDLE_TIMEOUT: must be at least 2 x STATUS_INTERVAL (${fmt(2 * c.statusIntervalMs)}), got ${fmt(c.streamIdleTimeoutMs)}`,
    );
  }
  // Failures from before an open would otherwise still be in the window when a probe closes the breaker.
  if (c.breakerWindowMs > c.breakerResetTimeoutMs) {
    problems.push(
      `  BREAKER_WINDOW: must not exceed BREAKER_RESET_TIMEOUT (${fmt(c.breakerResetTimeoutMs)}), got ${fmt(c.breakerWindowMs)}`,
    );
  }
  if (c.schedulerCapacity < c.deliveryConcurrency) {
    problems.push(
      `  SCHEDULER_CAPACITY: must be at least DELIVERY_CONCURRENCY (${c.deliveryConcurrency}), got ${c.schedulerCapacity}`,
    );
  }
  if (problems.length > 0) {
    throw new RelayError(
      'CONFIG_INVALID',
      `invalid configuration, fix these environment variables:\n${problems.join('\n')}`,
    );
  }
}

/** The database URL, or a clear error for commands that need one. */
export function requireDatabaseUrl(config: Config): string {
  if (config.databaseUrl === undefined) {
    throw new RelayError(
      'CONFIG_INVALID',
      'invalid configuration, fix these environment variables:\n  DATABASE_URL: required, e.g. postgres://user:pass@host:5432/app',
    );
  }
  return config.databaseUrl;
}

function fmt(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0 && ms > 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}
