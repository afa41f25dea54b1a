// Fault injection for chaos testing, as Istio's HTTPFaultInjection: a fixed delay for a
// percentage of requests, and an abort (an HTTP status, or a gRPC status for gRPC calls) for a
// percentage of requests, each drawn independently. The draws come from EvenDraws
// (core/even-draws.ts): a golden-ratio (Weyl) sequence from a random start, uniform like
// Math.random but spread so evenly that any N requests in a row get the percentage to within
// about one request; a chaos test then measures the service, not the luck of the draw.
// faultFor itself is pure.

export interface FaultDelay {
  readonly fixedDelayMs: number;
  /** 0-100, fractions allowed. */
  readonly percentage: number;
}

export interface FaultAbort {
  /** The status an HTTP request gets. */
  readonly httpStatus: number;
  /** The gRPC status a gRPC call gets (in a trailers-only 200), when set; else gRPC calls get httpStatus mapped by the layer. */
  readonly grpcStatus?: number | undefined;
  /** 0-100, fractions allowed. */
  readonly percentage: number;
}

export interface FaultSpec {
  readonly delay?: FaultDelay | undefined;
  readonly abort?: FaultAbort | undefined;
}

export interface FaultDecision {
  /** Hold the request this long before going on (0: no delay). */
  readonly delayMs: number;
  /** Answer with this instead of forwarding. */
  readonly abort: { readonly httpStatus: number; readonly grpcStatus: number | undefined } | undefined;
}

export const NO_FAULT: FaultDecision = Object.freeze({ delayMs: 0, abort: undefined });

/** Whether a draw in [0, 1) falls in the percentage. */
export function hits(percentage: number, draw: number): boolean {
  return draw * 100 < percentage;
}

/** The fault for one request, from two independent draws in [0, 1). */
export function faultFor(spec: FaultSpec, delayDraw: number, abortDraw: number): FaultDecision {
  const delayMs = spec.delay !== undefined && hits(spec.delay.percentage, delayDraw) ? spec.delay.fixedDelayMs : 0;
  const abort = spec.abort !== undefined && hits(spec.abort.percentage, abortDraw)
    ? { httpStatus: spec.abort.httpStatus, grpcStatus: spec.abort.grpcStatus }
    : undefined;
  return delayMs === 0 && abort === undefined ? NO_FAULT : { delayMs, abort };
}
