// Trace context from the application's transaction to the receiver (DESIGN.md, Application API: Trace context).
//
// - An event that carries a traceparent (webhooks.outbox.traceparent) continues the application's trace: its
//   fan-out and each attempt are spans whose parent is the application's span, and each attempt sends the
//   receiver a traceparent with the same trace id and the attempt's own span id.
// - An event without one gets no trace: the relay cannot store a fresh trace id without writing the
//   application's row, so each retry (claimed from the table, maybe by another replica) would start yet another
//   unrelated trace. Sampling stays the application's decision (parent-based by default).
// - Tracing off (no OTLP endpoint): no provider, no exporter, no span objects. A traced event's receiver still
//   gets a traceparent continuing the trace (a fresh span id per attempt, never exported), as the contract says.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Link,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import { parseTraceParent } from '@opentelemetry/core';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_SCHEME,
} from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../config.ts';
import { jobKey, type Attempt, type Job, type OutboxEvent } from '../domain.ts';
import type { Logger } from '../log.ts';

/** One attempt's trace: the header to send, and how to end its span with what became of the attempt. */
export type AttemptTrace = { traceparent: string; end: (attempt: Attempt) => void };

export type Tracing = {
  /** True when spans are exported (an OTLP endpoint is configured). */
  readonly exporting: boolean;
  /** The trace of one attempt of `job`; undefined when its event carries no trace context. */
  attempt: (job: Job) => AttemptTrace | undefined;
  /** Wraps the stream's fan-out step: one span per traced event around the step (scheduling, and any statement). */
  fanOut: <A extends unknown[], R>(
    step: (events: OutboxEvent[], ...rest: A) => Promise<R>,
  ) => (events: OutboxEvent[], ...rest: A) => Promise<R>;
  /** Exports the spans still queued and stops the exporter. */
  shutdown: () => Promise<void>;
};

/** Span attribute names of the relay's own (no payloads, no secrets, no URL paths: those may carry tokens). */
export const ATTR = {
  outboxId: 'outbox_relay.outbox_id',
  deliveryId: 'outbox_relay.delivery_id',
  endpointId: 'outbox_relay.endpoint_id',
  eventType: 'outbox_relay.event_type',
  tenant: 'outbox_relay.tenant',
  attempt: 'outbox_relay.attempt',
  outcome: 'outbox_relay.outcome',
  batchEvents: 'outbox_relay.batch_events',
} as const;

/** Longest wait at shutdown for the last spans to be exported. */
const SHUTDOWN_FLUSH_MS = 2_000;

/** First attempts remembered for the retries' links, at most (only failed ones are kept). */
const MAX_FIRST_ATTEMPTS = 10_000;

/**
 * Tracing for one relay. With `config` null (no OTLP endpoint) the SDK is not even loaded: its module is imported
 * only when tracing is on.
 */
export async function createTracing(config: TracingConfig | null, log: Logger): Promise<Tracing> {
  if (config === null) return contextOnly;
  const { createTracer } = await import('./provider.ts');
  const { tracer, shutdown } = createTracer(config);
  const firstAttempts = new Map<string, SpanContext>(); // deliveryId → its first attempt here, until it succeeds
  log.info({ url: config.url, serviceName: config.serviceName, sampler: config.sampler }, 'exporting traces');
  return {
    exporting: true,
    attempt: (job) => startAttempt(tracer, firstAttempts, job),
    fanOut: (step) => tracedFanOut(tracer, step),
    // Bounded: an unreachable collector must not eat the SIGTERM grace the relay's own writes need.
    shutdown: async () => {
      const flushed = shutdown().then(
        () => true,
        (err: unknown) => (log.warn({ err }, 'flushing traces failed'), true),
      );
      const timer = new AbortController();
      const gaveUp = sleep(SHUTDOWN_FLUSH_MS, false, { signal: timer.signal }).catch(() => true);
      if (!(await Promise.race([flushed, gaveUp])))
        log.warn({ waitedMs: SHUTDOWN_FLUSH_MS }, 'gave up flushing traces');
      timer.abort();
    },
  };
}

/** Tracing off: only the receiver's header, for events that carry a trace context. */
const contextOnly: Tracing = {
  exporting: false,
  attempt: (job) => {
    if (job.traceparent === null) return undefined;
    const parent = parseTraceParent(job.traceparent);
    if (parent === null) return undefined;
    return { traceparent: formatTraceparent(parent.traceId, randomBytes(8).toString('hex'), parent.traceFlags), end };
  },
  fanOut: (step) => step,
  shutdown: () => Promise.resolve(),
};
const end = () => {};

/** W3C traceparent, version 00 (the version a participant writes, whatever version it received). */
export function formatTraceparent(traceId: string, spanId: string, traceFlags: number): string {
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

function parentContext(traceparent: string | null) {
  if (traceparent === null) return undefined;
  const parent = parseTraceParent(traceparent);
  return parent === null ? undefined : { parent, context: trace.setSpanContext(ROOT_CONTEXT, parent) };
}

function startAttempt(tracer: Tracer, first: Map<string, SpanContext>, job: Job): AttemptTrace | undefined {
  const traced = parentContext(job.traceparent);
  if (traced === undefined) return undefined;
  // Retries are linked to the first attempt (when this process made it); every attempt carries the delivery id.
  const firstContext = job.attempt > 1 ? first.get(jobKey(job)) : undefined;
  const links: Link[] = firstContext === undefined ? [] : [{ context: firstContext }];
  const url = new URL(job.url);
  const span = tracer.startSpan(
    'POST',
    {
      kind: SpanKind.CLIENT,
      links,
      attributes: {
        [ATTR_HTTP_REQUEST_METHOD]: 'POST',
        [ATTR_URL_SCHEME]: url.protocol.slice(0, -1),
        [ATTR_SERVER_ADDRESS]: url.hostname,
        [ATTR_SERVER_PORT]: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
        [ATTR.outboxId]: job.outboxId,
        ...(job.deliveryId === null ? {} : { [ATTR.deliveryId]: job.deliveryId }),
        [ATTR.endpointId]: job.endpointId,
        [ATTR.eventType]: job.eventType,
        [ATTR.attempt]: job.attempt,
        ...(job.tenant === null ? {} : { [ATTR.tenant]: job.tenant }),
      },
    },
    traced.context,
  );
  const own = span.spanContext();
  return {
    traceparent: formatTraceparent(own.traceId, own.spanId, own.traceFlags),
    end: (attempt) => {
      endAttempt(span, attempt);
      if (attempt.kind === 'delivered') first.delete(jobKey(job));
      else if (job.attempt === 1 && attempt.kind === 'failed' && attempt.permanent !== true) {
        if (first.size >= MAX_FIRST_ATTEMPTS) first.delete(first.keys().next().value!);
        first.set(jobKey(job), own);
      }
    },
  };
}

function endAttempt(span: Span, attempt: Attempt): void {
  span.setAttribute(ATTR.outcome, attempt.kind);
  if (attempt.kind === 'failed') {
    if (attempt.status !== undefined) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, attempt.status);
    span.setAttribute(ATTR_ERROR_TYPE, attempt.status === undefined ? 'request_failed' : String(attempt.status));
    // The same short text the attempt log keeps (a status, a timeout, a connect error), never a response body.
    span.setStatus({ code: SpanStatusCode.ERROR, message: attempt.error });
  } else if (attempt.kind === 'delivered') {
    span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, attempt.status);
  } else if (attempt.kind === 'lease-lost') {
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'lease lost: another relay owns this delivery now' });
  }
  span.end();
}

function tracedFanOut<A extends unknown[], R>(
  tracer: Tracer,
  step: (events: OutboxEvent[], ...rest: A) => Promise<R>,
): (events: OutboxEvent[], ...rest: A) => Promise<R> {
  return async (events, ...rest) => {
    const spans: Span[] = [];
    for (const event of events) {
      const traced = parentContext(event.traceparent);
      if (traced === undefined) continue;
      spans.push(
        tracer.startSpan(
          'outbox-relay fan-out',
          {
            kind: SpanKind.CONSUMER,
            attributes: {
              [ATTR.outboxId]: event.id,
              [ATTR.eventType]: event.eventType,
              [ATTR.batchEvents]: events.length,
              ...(event.tenant === null ? {} : { [ATTR.tenant]: event.tenant }),
            },
          },
          traced.context,
        ),
      );
    }
    if (spans.length === 0) return step(events, ...rest);
    try {
      return await step(events, ...rest);
    } catch (err) {
      for (const span of spans) span.setStatus({ code: SpanStatusCode.ERROR, message: 'fan-out failed' });
      throw err;
    } finally {
      for (const span of spans) span.end();
    }
  };
}
