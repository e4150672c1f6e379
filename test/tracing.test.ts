// Trace context from the application's emit() to the receiver, exported to a real OTLP/HTTP (http/json) collector.
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { describe, expect } from 'vitest';
import { loadConfig } from '../src/config.ts';
import type { Job } from '../src/domain.ts';
import { createLogger } from '../src/log.ts';
import { createTracing } from '../src/tracing/tracing.ts';
import { test as base } from './fixtures.ts';
import { startOtlpCollector, type CollectedSpan, type OtlpCollector } from './support/otlp-collector.ts';
import { addEndpoint } from './support/postgres.ts';
import { until, within } from './support/until.ts';
import type { TestDb } from './support/postgres.ts';

const test = base.extend<{ collector: OtlpCollector }>({
  collector: async ({}, use) => {
    const collector = await startOtlpCollector();
    await use(collector);
    await within(30_000, 'closing the OTLP collector', () => collector.close());
  },
});

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const APP_SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${APP_SPAN_ID}-01`;
const HEADER = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
// What must never reach a span: the payload, the secret, the URL's path and query (they may carry tokens).
const PAYLOAD_MARK = 'payload-mark-9d2c';
const PATH_TOKEN = 'path-token-77e1';

async function emit(db: TestDb, traceparent: string | null, eventType = 'invoice.paid'): Promise<string> {
  const { rows } = await db.app.query<{ id: string }>(
    `SELECT webhooks.emit(event_type => $1, payload => $2::jsonb, traceparent => $3)::text AS id`,
    [eventType, JSON.stringify({ note: PAYLOAD_MARK }), traceparent],
  );
  return rows[0]!.id;
}

/** The same event written by a plain INSERT, as an application without emit() does. */
async function insert(db: TestDb, traceparent: string, eventType: string): Promise<string> {
  const { rows } = await db.app.query<{ id: string }>(
    `INSERT INTO webhooks.outbox (event_type, payload, traceparent) VALUES ($1, '{}', $2) RETURNING id::text`,
    [eventType, traceparent],
  );
  return rows[0]!.id;
}

const tracingEnv = (collector: OtlpCollector) => ({
  OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', // the default, set: the collector checks every export is JSON
  OTEL_BSP_SCHEDULE_DELAY: '50',
  OTEL_SERVICE_NAME: 'relay-under-test',
});

const spansOf = (collector: OtlpCollector, traceId: string) => collector.spans.filter((s) => s.traceId === traceId);
const attemptSpans = (collector: OtlpCollector) =>
  spansOf(collector, TRACE_ID)
    .filter((s) => s.name === 'POST')
    .sort((a, b) => Number(a.attributes['outbox_relay.attempt']) - Number(b.attributes['outbox_relay.attempt']));

test('a traced event: the relay spans join the emitted trace under the emitted span, the receiver continues it', async ({
  db,
  receiver,
  collector,
  startRelay,
}) => {
  const endpoint = await addEndpoint(db, `${receiver.url}/${PATH_TOKEN}?key=${PATH_TOKEN}`);
  await startRelay(tracingEnv(collector));
  const outboxId = await emit(db, TRACEPARENT);

  await until(() => receiver.requests.length === 1, { what: 'the delivery' });
  const header = HEADER.exec(String(receiver.requests[0]!.headers.traceparent));
  expect(header, 'a valid W3C traceparent').not.toBeNull();
  const [, traceId, spanId, flags] = header!;
  expect(traceId).toBe(TRACE_ID);
  expect(spanId).not.toBe(APP_SPAN_ID);
  expect(flags).toBe('01');

  await until(() => attemptSpans(collector).length === 1 && spansOf(collector, TRACE_ID).length === 2, {
    what: 'the fan-out and attempt spans',
  });
  const [attempt] = attemptSpans(collector) as [CollectedSpan];
  const fanOut = spansOf(collector, TRACE_ID).find((s) => s.name === 'outbox-relay fan-out')!;
  expect(attempt.spanId).toBe(spanId); // the receiver's parent is the attempt span
  expect(attempt.parentSpanId).toBe(APP_SPAN_ID);
  expect(fanOut.parentSpanId).toBe(APP_SPAN_ID);
  expect(attempt.serviceName).toBe('relay-under-test');
  expect(attempt.attributes).toMatchObject({
    'http.request.method': 'POST',
    'http.response.status_code': 204,
    'server.address': '127.0.0.1',
    'outbox_relay.outbox_id': outboxId,
    'outbox_relay.endpoint_id': endpoint.id,
    'outbox_relay.attempt': 1,
    'outbox_relay.outcome': 'delivered',
  });
  expect(BigInt(attempt.endTimeUnixNano)).toBeGreaterThan(BigInt(attempt.startTimeUnixNano));
  expect(fanOut.attributes).toMatchObject({
    'outbox_relay.outbox_id': outboxId,
    'outbox_relay.event_type': 'invoice.paid',
  });
  const exported = collector.bodies.join('\n');
  for (const secret of [PAYLOAD_MARK, PATH_TOKEN, endpoint.secret]) expect(exported).not.toContain(secret);
  expect(collector.otherContentTypes).toEqual([]);
});

test('each retry is a new span of the same trace, linked to the first attempt; the receiver sees each span id', async ({
  db,
  receiver,
  collector,
  startRelay,
}) => {
  receiver.reply((_req, index) => (index === 0 ? { status: 503 } : { status: 204 }));
  await addEndpoint(db, receiver.url);
  await startRelay(tracingEnv(collector));
  await emit(db, TRACEPARENT);

  await until(() => attemptSpans(collector).length === 2, { what: 'two attempt spans' });
  const [first, second] = attemptSpans(collector) as [CollectedSpan, CollectedSpan];
  expect(first.attributes).toMatchObject({ 'http.response.status_code': 503, 'outbox_relay.outcome': 'failed' });
  expect(first.status).toMatchObject({ code: 2, message: 'HTTP 503' });
  expect(second.attributes).toMatchObject({ 'outbox_relay.attempt': 2, 'outbox_relay.outcome': 'delivered' });
  expect([first.parentSpanId, second.parentSpanId]).toEqual([APP_SPAN_ID, APP_SPAN_ID]);
  expect(second.links).toEqual([{ traceId: TRACE_ID, spanId: first.spanId }]);
  const received = receiver.requests.map((r) => HEADER.exec(String(r.headers.traceparent))?.[2]);
  expect(received).toEqual([first.spanId, second.spanId]);
});

test('an event without a traceparent gets no trace: no header, no span', async ({
  db,
  receiver,
  collector,
  startRelay,
}) => {
  await addEndpoint(db, receiver.url);
  await startRelay(tracingEnv(collector));
  await emit(db, null, 'untraced');
  await emit(db, TRACEPARENT, 'traced'); // committed after: once its spans are exported, the first is done too
  await until(() => attemptSpans(collector).length === 1, { what: 'the traced event' });
  await until(() => receiver.requests.length === 2);
  const untraced = receiver.requests.find((r) => r.body.includes('"untraced"'))!;
  expect(untraced.headers.traceparent).toBeUndefined();
  expect(collector.spans.every((s) => s.traceId === TRACE_ID)).toBe(true);
  expect(collector.spans.some((s) => s.attributes['outbox_relay.event_type'] === 'untraced')).toBe(false);
});

describe('the OTEL_* knobs act on what is exported', () => {
  const UNSAMPLED = `00-${TRACE_ID}-${APP_SPAN_ID}-00`;
  // Each case: the sampler variables, the application's flags, the spans exported (fan-out + attempt, or none),
  // and the flags the receiver then sees (a span the relay does not record is sent on as not sampled).
  test.for([
    ['the default (parentbased_always_on) follows an unsampled parent', {}, UNSAMPLED, 0, '00'],
    ['always_on records under an unsampled parent', { OTEL_TRACES_SAMPLER: 'always_on' }, UNSAMPLED, 2, '01'],
    [
      'traceidratio with OTEL_TRACES_SAMPLER_ARG=0 drops a sampled parent',
      { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' },
      TRACEPARENT,
      0,
      '00',
    ],
    [
      'traceidratio with OTEL_TRACES_SAMPLER_ARG=1 keeps it',
      { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1' },
      TRACEPARENT,
      2,
      '01',
    ],
  ] as const)('%s', async ([, env, traceparent, spans, flags], { db, receiver, collector, startRelay }) => {
    await addEndpoint(db, receiver.url);
    const relay = await startRelay({ ...tracingEnv(collector), ...env });
    await emit(db, traceparent);
    await until(() => receiver.requests.length === 1, { what: 'the delivery' });
    await relay.stop(); // exports whatever was recorded: what is missing now was never recorded
    expect(spansOf(collector, TRACE_ID)).toHaveLength(spans);
    const [, traceId, spanId, sent] = HEADER.exec(String(receiver.requests[0]!.headers.traceparent))!;
    expect([traceId, sent]).toEqual([TRACE_ID, flags]);
    expect(spanId).not.toBe(APP_SPAN_ID);
  });

  test('a full batch (OTEL_BSP_MAX_EXPORT_BATCH_SIZE) is exported at once, not after OTEL_BSP_SCHEDULE_DELAY', async ({
    db,
    receiver,
    collector,
    startRelay,
  }) => {
    await addEndpoint(db, receiver.url);
    // An hour's delay: nothing leaves on the timer while the test runs, only a batch of 4 spans (2 per event).
    await startRelay({
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_BSP_SCHEDULE_DELAY: '3600000',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '4',
    });
    const first = await emit(db, TRACEPARENT, 'first');
    await until(() => receiver.requests.length === 1, { what: 'the first delivery' });
    const second = await insert(db, TRACEPARENT, 'second'); // by plain INSERT: its trace continues as well
    await until(() => receiver.requests.length === 2, { what: 'the second delivery' });
    // With an hour's delay, any export before the stop is the batch size's doing.
    await until(() => collector.spans.length >= 4, { what: 'the full batch', timeoutMs: 10_000 });
    expect(collector.bodies).toHaveLength(1); // both events' spans in one export: the first waited for the batch
    expect(new Set(collector.spans.map((s) => s.attributes['outbox_relay.outbox_id']))).toEqual(
      new Set([first, second]),
    );
    expect(collector.spans.every((s) => s.traceId === TRACE_ID && s.parentSpanId === APP_SPAN_ID)).toBe(true);
    const header = HEADER.exec(String(receiver.requests[1]!.headers.traceparent));
    expect(header?.[1]).toBe(TRACE_ID);
  });

  test('a short OTEL_BSP_SCHEDULE_DELAY exports a lone span long before the 5 s default would', async ({
    db,
    receiver,
    collector,
    startRelay,
  }) => {
    await addEndpoint(db, receiver.url);
    await startRelay({ OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '20' });
    await emit(db, TRACEPARENT);
    await until(() => receiver.requests.length === 1, { what: 'the delivery' });
    const received = performance.now();
    await until(() => attemptSpans(collector).length === 1, { what: 'the attempt span', timeoutMs: 10_000 });
    expect(performance.now() - received).toBeLessThan(3_000);
  });
});

test('a collector that never answers costs deliveries nothing and delays the stop by at most 2 s', async ({
  db,
  receiver,
  startRelay,
}) => {
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => sockets.add(socket)); // accepts, never answers
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = silent.address() as AddressInfo;
    await addEndpoint(db, receiver.url);
    const relay = await startRelay({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_BSP_SCHEDULE_DELAY: '10',
    });
    await emit(db, TRACEPARENT);
    await emit(db, TRACEPARENT);
    await until(() => receiver.requests.length === 2, { what: 'both deliveries' });
    await until(() => sockets.size > 0, { what: 'an export in flight' });
    await emit(db, TRACEPARENT); // queued behind the hung export: flushed (or given up) at stop
    await until(() => receiver.requests.length === 3);
    const started = performance.now();
    await relay.stop();
    expect(performance.now() - started).toBeLessThan(4_500);
  } finally {
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
});

describe('with no OTEL endpoint', () => {
  test('nothing on the hot path: fan-out is not wrapped, an untraced job gets nothing, a traced one a header', async () => {
    const tracing = await createTracing(loadConfig({}).tracing, createLogger('silent'));
    const step = () => Promise.resolve();
    expect(tracing.exporting).toBe(false);
    expect(tracing.fanOut(step)).toBe(step);
    const job = { deliveryId: '1', attempt: 1, traceparent: null } as Job;
    expect(tracing.attempt(job)).toBeUndefined();
    const traced = tracing.attempt({ ...job, traceparent: TRACEPARENT })!;
    expect(traced.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-(?!${APP_SPAN_ID})[0-9a-f]{16}-01$`));
    expect(tracing.attempt({ ...job, traceparent: TRACEPARENT })!.traceparent).not.toBe(traced.traceparent);
  });

  test('no exporter and no span; the receiver still gets a traceparent continuing the trace', async ({
    db,
    receiver,
    startRelay,
  }) => {
    expect(loadConfig({}).tracing).toBeNull();
    // A global provider recording everything: a relay that used the global API by mistake would show up here.
    const recorded = new InMemorySpanExporter();
    const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(recorded)] });
    trace.setGlobalTracerProvider(provider);
    try {
      await addEndpoint(db, receiver.url);
      await startRelay();
      await emit(db, TRACEPARENT);
      await emit(db, null, 'untraced');
      await until(() => receiver.requests.length === 2, { what: 'both deliveries' });
      // Two deliveries may arrive in either order: tell them apart by their event type.
      const traced = receiver.requests.find((r) => r.body.includes('"invoice.paid"'));
      const untraced = receiver.requests.find((r) => r.body.includes('"untraced"'));
      const [, traceId, spanId, flags] = HEADER.exec(String(traced!.headers.traceparent))!;
      expect([traceId, flags]).toEqual([TRACE_ID, '01']);
      expect(spanId).not.toBe(APP_SPAN_ID);
      expect(untraced!.headers.traceparent).toBeUndefined();
      await provider.forceFlush();
      expect(recorded.getFinishedSpans()).toEqual([]);
    } finally {
      trace.disable();
      await provider.shutdown();
    }
  });
});
