// The OpenTelemetry SDK, built from TracingConfig (the standard OTEL_* variables, read by config.ts). Created
// only when tracing is on: a relay without an OTLP endpoint never loads a provider, a processor or an exporter.
import type { Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type Sampler,
} from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../config.ts';

export type TracerHandle = {
  tracer: Tracer;
  /** Exports what is still queued (bounded by OTEL_BSP_EXPORT_TIMEOUT), then stops the exporter. */
  shutdown: () => Promise<void>;
};

const VERSION = '0.1.0';

export function createTracer(config: TracingConfig): TracerHandle {
  const provider = new NodeTracerProvider({
    // The operator's OTEL_RESOURCE_ATTRIBUTES, under the service name (OTEL_SERVICE_NAME wins, as the spec says).
    resource: resourceFromAttributes({
      [ATTR_SERVICE_VERSION]: VERSION,
      ...config.resourceAttributes,
      [ATTR_SERVICE_NAME]: config.serviceName,
    }),
    sampler: sampler(config),
    spanProcessors: [
      new BatchSpanProcessor(
        new OTLPTraceExporter({
          url: config.url,
          headers: { ...config.headers },
          timeoutMillis: config.exportTimeoutMs,
        }),
        {
          scheduledDelayMillis: config.scheduledDelayMs,
          exportTimeoutMillis: config.exportTimeoutMs,
          maxQueueSize: config.maxQueueSize,
          maxExportBatchSize: config.maxExportBatchSize,
        },
      ),
    ],
  });
  // Not registered globally: the relay passes parent contexts explicitly, and an application embedding the relay
  // keeps its own global provider.
  return { tracer: provider.getTracer('outbox-relay', VERSION), shutdown: () => provider.shutdown() };
}

/** OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, as the spec names them. */
function sampler({ sampler: name, samplerRatio }: TracingConfig): Sampler {
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(samplerRatio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(samplerRatio) });
  }
}
