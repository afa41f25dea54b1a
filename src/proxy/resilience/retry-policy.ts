// Whether to retry one failed attempt, and after how long: Gateway API's HTTPRoute `retry`
// (GEP-1731: `attempts` retries at most, on the status `codes` listed, waiting at least
// `backoff` between attempts, doubling each time) and its gRPC equivalent (gRPC status codes).
// A request is replayed only when it is safe and possible: its body was buffered whole (no
// body, or at most 64 KiB), and either nothing reached the backend (connect failure) or the
// method is idempotent (RFC 9110 9.2.2) or it is a gRPC call on a code the route opted into.
// The retry budget has the last word. Pure: randomness and the budget come in as arguments.

/** Bodies larger than this are streamed, not kept, so such a request is never replayed. */
export const MAX_REPLAY_BODY_BYTES = 64 * 1024;

/** The longest wait between attempts, whatever the backoff doubles to. */
export const MAX_BACKOFF_MS = 10_000;

/** GEP-1731's fields as the model carries them. */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  readonly attempts: number;
  /** HTTP statuses (400-599) that are retried. */
  readonly codes: readonly number[];
  /** gRPC status codes (e.g. 14 UNAVAILABLE) that are retried, for gRPC requests. */
  readonly grpcCodes: readonly number[];
  /** Least wait before the first retry; doubles with each one. */
  readonly backoffMs: number;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function idempotent(method: string): boolean {
  return IDEMPOTENT.has(method.toUpperCase());
}

/** How an attempt ended. */
export type AttemptOutcome =
  | { readonly kind: 'response'; readonly status: number; readonly grpcStatus?: number | undefined }
  /** The backend could not be reached: the request was never sent. */
  | { readonly kind: 'connect-failure' }
  /** The stream broke after the request (or part of it) was sent. */
  | { readonly kind: 'reset' };

export interface RetryRequest {
  readonly method: string;
  readonly grpc: boolean;
  /** The body is held whole and can be sent again (true for a request without a body). */
  readonly bodyReplayable: boolean;
}

export type RetryVerdict =
  | { readonly retry: true; readonly delayMs: number }
  | { readonly retry: false; readonly reason: 'success' | 'status-not-retried' | 'attempts-exhausted' | 'not-idempotent' | 'body-not-buffered' | 'budget-exhausted' };

/** Whether the attempt failed in a way the policy names. */
export function retryableOutcome(policy: RetryPolicy, outcome: AttemptOutcome, grpc: boolean): boolean {
  if (outcome.kind !== 'response') return true;
  if (grpc && outcome.status === 200) return outcome.grpcStatus !== undefined && policy.grpcCodes.includes(outcome.grpcStatus);
  return policy.codes.includes(outcome.status);
}

/** The wait before retry number `retry` (1-based): backoff x 2^(retry-1), capped, with up to 25% added jitter. */
export function backoffDelay(backoffMs: number, retry: number, random: number): number {
  const base = Math.min(MAX_BACKOFF_MS, backoffMs * 2 ** Math.max(0, retry - 1));
  return Math.round(base + base * 0.25 * Math.min(1, Math.max(0, random)));
}

export interface RetryContext {
  readonly policy: RetryPolicy;
  readonly request: RetryRequest;
  readonly outcome: AttemptOutcome;
  /** Retries already made for this request. */
  readonly retriesSoFar: number;
  /** Spends one retry from the destination's budget; false when it is spent. Called last, only when all else says retry. */
  readonly spendBudget: () => boolean;
  /** A number in [0, 1) for the jitter. */
  readonly random: number;
}

export function retryVerdict(c: RetryContext): RetryVerdict {
  const { policy, request, outcome } = c;
  if (outcome.kind === 'response' && !retryableOutcome(policy, outcome, request.grpc)) {
    return { retry: false, reason: outcome.status < 400 && !(request.grpc && outcome.grpcStatus !== undefined && outcome.grpcStatus !== 0) ? 'success' : 'status-not-retried' };
  }
  if (c.retriesSoFar >= policy.attempts) return { retry: false, reason: 'attempts-exhausted' };
  if (!request.bodyReplayable) return { retry: false, reason: 'body-not-buffered' };
  // A gRPC call is retried on the codes its route lists, as gRPC's own retry policy does.
  if (outcome.kind !== 'connect-failure' && !idempotent(request.method) && !request.grpc) return { retry: false, reason: 'not-idempotent' };
  if (!c.spendBudget()) return { retry: false, reason: 'budget-exhausted' };
  return { retry: true, delayMs: backoffDelay(policy.backoffMs, c.retriesSoFar + 1, c.random) };
}
