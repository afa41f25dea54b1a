// gRPC deadlines on the wire: the `grpc-timeout` request header (the gRPC HTTP/2 protocol:
// 1-8 ASCII digits and a unit, H M S m u n), read when a call arrives, shortened by the time
// the proxy has already spent on it, and the tighter of it and the route's own timeout
// passed on; a call with no time left ends at once with DEADLINE_EXCEEDED. Pure.

const UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
const FORM = /^([0-9]{1,8})([HMSmun])$/;

/** Milliseconds in a `grpc-timeout` value; undefined when it is malformed (the call then has no deadline from it). */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = FORM.exec(value.trim());
  if (m === null) return undefined;
  return Number(m[1]) * (UNIT_MS[m[2]]);
}

/**
 * The header value for `ms`, in the finest unit whose count fits eight digits (never
 * rounding a deadline up: the receiver must not get more time than there is).
 */
export function formatGrpcTimeout(ms: number): string {
  // Whole nanoseconds first, so float noise (0.3 ms = 299999.99... ns) cannot lose a unit.
  const ns = Math.max(0, Math.round(ms * 1e6));
  for (const [unit, perNs] of [['n', 1], ['u', 1e3], ['m', 1e6], ['S', 1e9], ['M', 6e10], ['H', 3.6e12]] as const) {
    const count = Math.floor(ns / perNs);
    if (count <= 99_999_999) return `${count}${unit}`;
  }
  return '99999999H';
}

export interface Deadline {
  /** Milliseconds the call has left; undefined: no deadline. */
  readonly remainingMs: number | undefined;
  /** No time left: answer DEADLINE_EXCEEDED (gRPC) or 504 without sending. */
  readonly expired: boolean;
  /** The grpc-timeout to send on, when there is a deadline. */
  readonly header: string | undefined;
}

/**
 * The deadline to pass on: the caller's grpc-timeout less the time spent here, or the
 * route's timeout if that is tighter.
 */
export function deadlineFor(grpcTimeout: string | undefined, elapsedMs: number, routeTimeoutMs: number | undefined): Deadline {
  const asked = parseGrpcTimeout(grpcTimeout);
  const fromCaller = asked === undefined ? undefined : asked - elapsedMs;
  const fromRoute = routeTimeoutMs === undefined ? undefined : routeTimeoutMs - elapsedMs;
  const candidates = [fromCaller, fromRoute].filter((v): v is number => v !== undefined);
  if (candidates.length === 0) return { remainingMs: undefined, expired: false, header: undefined };
  const remainingMs = Math.min(...candidates);
  return { remainingMs, expired: remainingMs <= 0, header: formatGrpcTimeout(remainingMs) };
}
