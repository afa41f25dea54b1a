// Telemetry: Istio TCP and request metrics, the per-connection and per-request records and access log, and the agent's
// metrics / readiness / admin HTTP endpoints.

export { TelemetryErrors, telemetryError, type TelemetryErrorCode } from './errors.ts';
export type { ByteSource, ConnectionDescription, PeerRef, ServiceRef } from './types.ts';
export { DENIED_FLAG } from './types.ts';
export { DEFAULT_DURATION_BUCKETS, PairStats, TCP_LABEL_NAMES, TcpMetrics, type TcpLabelName, type TcpLabels, type TcpMetricsOptions } from './tcp-metrics.ts';
export { ConnectionRecordImpl, ConnectionTelemetry, type ConnectionTelemetryOptions } from './connection-telemetry.ts';
export { RequestRecordImpl, RequestTelemetry, type RequestTelemetryOptions } from './request-telemetry.ts';
export { ISTIO_DURATION_BUCKETS_MS, ISTIO_SIZE_BUCKETS, REQUEST_LABEL_NAMES, RequestMetrics } from './request-metrics.ts';
export { RetiringSeries, namesGoneWorkload, type LiveWorkload, type WorkloadLabels } from './series-retirement.ts';
export {
  HttpEndpoint, metricsRoutes, readinessRoutes, startAdminServer,
  type AdminServerOptions, type HttpEndpointOptions, type Readiness, type RouteHandler, type Routes,
} from './http-endpoints.ts';
export { BatchedLog, type BatchedLogOptions, type LogTarget } from './batched-log.ts';
export { collectProcessMetrics } from './process-metrics.ts';
export { CertificateMetrics, type CertificateMetricEvent } from './certificate-metrics.ts';
export { OverloadTelemetry, type OverloadLimits, type OverloadTelemetryOptions } from './overload-telemetry.ts';
export { startTracing, tracingRequested, type Tracing, type TracingOptions } from './tracing.ts';
export { ConnectionTracer, type ConnectionTracerOptions } from './connection-tracer.ts';
export { composeObservers, composeRequestObservers, type RequestObserverLike } from './observers.ts';
export type { ObservedConnection, Observer, TraceCarrier } from './types.ts';
export { RequestTracer, type RequestTracerOptions } from './request-tracer.ts';
export type { IncomingRequest, ObservedRequest, OutgoingTraceHeaders, RequestDescription, RequestOutcome } from './types.ts';
