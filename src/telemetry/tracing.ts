// OpenTelemetry tracing, configured by the standard OTEL_* variables and off when no OTLP
// endpoint is set (then nothing is created and connections cost nothing more). The NodeSDK
// reads the sampler (OTEL_TRACES_SAMPLER[_ARG]), resource (OTEL_RESOURCE_ATTRIBUTES,
// OTEL_SERVICE_NAME), batch limits (OTEL_BSP_*) and propagators (OTEL_PROPAGATORS); the
// exporter follows OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL (http/protobuf, the default, or
// http/json) and is wrapped so a failed export costs a counter and nothing else: the batch
// processor is bounded (OTEL_BSP_MAX_QUEUE_SIZE, default 2048, beyond which spans are dropped)
// and exports off the connection path on its own timer.

import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { NodeSDK, api, core, type tracing } from '@opentelemetry/sdk-node';
import { Counter, type Registry } from 'prom-client';

import { TelemetryErrors, telemetryError } from './errors.ts';

const SHUTDOWN_MS = 2000;

export interface TracingOptions {
  /** service.name unless OTEL_SERVICE_NAME says otherwise, e.g. weft-agent. */
  readonly serviceName: string;
  /** Where the export counters go. */
  readonly registry: Registry;
}

export interface Tracing {
  readonly tracer: api.Tracer;
  /** W3C trace context: what the tunnel's CONNECT carries, whatever OTEL_PROPAGATORS says. */
  readonly tunnelPropagator: api.TextMapPropagator;
  /** The configured propagators (OTEL_PROPAGATORS; default W3C tracecontext and baggage) for HTTP requests. */
  readonly httpPropagator: api.TextMapPropagator;
  /** Context helpers: the root context, a context holding a span, and a context's span context. */
  readonly context: {
    root(): api.Context;
    setSpan(ctx: api.Context, span: api.Span): api.Context;
    spanContext(ctx: api.Context): api.SpanContext | undefined;
    withSpanContext(ctx: api.Context, sc: api.SpanContext): api.Context;
  };
  /** Exports what is pending (bounded by the exporter's timeout) and stops. Safe to call twice. */
  shutdown(): Promise<void>;
}

/** True when the environment asks for traces: an OTLP endpoint is set and nothing turns them off. */
export function tracingRequested(env: NodeJS.ProcessEnv): boolean {
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') return false;
  if ((env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).includes('none')) return false;
  return (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '') !== '';
}

/** Counts spans whose export failed (collector down, refused, timed out), by reason. */
class CountingExporter implements tracing.SpanExporter {
  readonly #inner: tracing.SpanExporter;
  readonly #failed: Counter<'reason'>;
  readonly #exported: Counter;

  constructor(inner: tracing.SpanExporter, registry: Registry) {
    this.#inner = inner;
    this.#failed = new Counter({
      name: 'weft_trace_export_failures_total', help: 'Spans that could not be exported to the OTLP collector', labelNames: ['reason'] as const, registers: [registry],
    });
    this.#exported = new Counter({ name: 'weft_trace_spans_exported_total', help: 'Spans the OTLP collector accepted', registers: [registry] });
  }

  export(spans: tracing.ReadableSpan[], done: (result: core.ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      if (result.code === core.ExportResultCode.SUCCESS) this.#exported.inc(spans.length);
      else this.#failed.inc({ reason: reasonOf(result.error) }, spans.length);
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

function reasonOf(err: Error | undefined): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  const text = `${typeof code === 'string' || typeof code === 'number' ? code : ''} ${err?.message ?? ''}`;
  if (/ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|ECONNRESET/.test(text)) return 'unreachable';
  if (/timeout|timed out/i.test(text)) return 'timeout';
  if (/\b[45]\d\d\b/.test(text)) return 'rejected';
  return 'other';
}

/**
 * Starts tracing when the process environment asks for it (tracingRequested); undefined
 * otherwise. The SDK and its exporters read process.env themselves, so this does too.
 */
export function startTracing(options: TracingOptions): Tracing | undefined {
  const env = process.env;
  if (!tracingRequested(env)) return undefined;
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf';
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    throw telemetryError(TelemetryErrors.BAD_OPTION, `OTEL_EXPORTER_OTLP_PROTOCOL ${JSON.stringify(protocol)} is not supported: use http/protobuf or http/json`);
  }
  const exporter = new CountingExporter(protocol === 'http/json' ? new JsonExporter() : new ProtoExporter(), options.registry);
  // Metrics stay on Prometheus and logs on stdout: the SDK must not start OTLP exporters for
  // them by default. This thread's copy of the environment only (worker threads copy it).
  process.env.OTEL_METRICS_EXPORTER ??= 'none';
  process.env.OTEL_LOGS_EXPORTER ??= 'none';
  const sdk = new NodeSDK({
    traceExporter: exporter,
    instrumentations: [],
    ...(env.OTEL_SERVICE_NAME === undefined ? { serviceName: options.serviceName } : {}),
  });
  sdk.start();
  let stopping: Promise<void> | undefined;
  return {
    tracer: api.trace.getTracer('weft'),
    tunnelPropagator: new core.W3CTraceContextPropagator(),
    httpPropagator: api.propagation,
    context: {
      root: () => api.ROOT_CONTEXT, setSpan: (ctx, span) => api.trace.setSpan(ctx, span),
      spanContext: (ctx) => api.trace.getSpanContext(ctx), withSpanContext: (ctx, sc) => api.trace.setSpanContext(ctx, sc),
    },
    // Bounded: a collector that swallows packets must not hold up a drain.
    shutdown: () => (stopping ??= Promise.race([
      sdk.shutdown().catch(() => undefined),
      new Promise<void>((resolve) => setTimeout(resolve, SHUTDOWN_MS).unref()),
    ])),
  };
}
