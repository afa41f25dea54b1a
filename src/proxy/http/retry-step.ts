// Retries at the caller's agent, as an HTTPRoute rule's GEP-1731 `retry` asks: the step runs
// the rest of the pipeline (the forward step) once per attempt, holding back each response
// whose status the rule lists (and the proxy's own answers for a failed connect or a reset
// before the response head) while retryVerdict says to retry; the client sees only the
// attempt that is kept. Which requests: those with no body, or whose body was read whole
// within 64 KiB before the response came (RequestBody keeps that copy); idempotent methods
// (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and gRPC calls on any failure, other methods only
// when nothing reached the backend. Every request routed to a Service earns that Service's
// retry budget its share; every retry spends from it (Linkerd's: 20% plus 10/s over 10 s,
// or the Service's DestinationPolicy retryBudget). The ratio is counted per worker thread (it
// holds for the agent), the 10/s reserve is one bucket all workers share.

import { setTimeout as sleep } from 'node:timers/promises';

import { ResponseFlags } from '../flags.ts';
import { retryVerdict, type AttemptOutcome, type RetryPolicy, type RetryVerdict } from '../resilience/retry-policy.ts';
import type { Exchange, RequestStep } from './exchange.ts';
import { first } from './headers.ts';
import type { ResponseHead, ResponseSink } from './messages.ts';
import type { Forward } from './contracts.ts';

/** A budget as the step spends it (proxy/resilience/retry-budget.ts). */
export interface RetryBudgetLike {
  /** Counts a request (a first attempt). */
  request(): void;
  /** Spends one retry; false when the budget is spent. */
  tryRetry(): boolean;
}

export interface RetryStepDeps {
  /** The budget of calls to a Service (`namespace/name`). */
  readonly budgetFor: (serviceKey: string) => RetryBudgetLike;
  /** In [0, 1), for the backoff jitter. Default Math.random. */
  readonly random?: () => number;
  /** Counts one retry sent (`weft_request_retries_total`). */
  readonly retried?: (serviceKey: string) => void;
  /** Counts one retry the budget refused. */
  readonly budgetExhausted?: (serviceKey: string) => void;
}

/** How the attempt ended, from the head it produced and the flags the forward step set for it. */
function outcomeOf(x: Exchange, head: ResponseHead): AttemptOutcome {
  // The forward step answers for itself only when the endpoint could not be reached or reset.
  if (x.flags === ResponseFlags.UPSTREAM_RESET) return { kind: 'reset' };
  if (x.flags === ResponseFlags.UPSTREAM_CONNECT_FAILURE || x.flags === ResponseFlags.NO_HEALTHY_UPSTREAM) return { kind: 'connect-failure' };
  const g = first(head.headers['grpc-status']);
  return { kind: 'response', status: head.status, grpcStatus: g === undefined ? undefined : Number(g) };
}

/**
 * The client's sink for one attempt: the head goes through unless `hold(head)` says this
 * attempt is to be retried; then the attempt's response is swallowed whole.
 */
function attemptSink(client: ResponseSink, hold: (head: ResponseHead) => boolean): { sink: ResponseSink; held: () => boolean } {
  let held = false;
  const sink: ResponseSink = {
    get started() {
      return held || client.started;
    },
    get bytes() {
      return held ? 0 : client.bytes;
    },
    start: (head) => {
      if (hold(head)) held = true;
      else client.start(head);
    },
    write: (chunk) => (held ? true : client.write(chunk)),
    onDrain: (resume) => (held ? resume() : client.onDrain(resume)),
    end: (trailers) => {
      if (!held) client.end(trailers);
    },
    abort: () => {
      if (!held) client.abort();
    },
  };
  return { sink, held: () => held };
}

export function retryStep(deps: RetryStepDeps): RequestStep {
  const random = deps.random ?? Math.random;
  // Not async: a route without retries (most) costs no promise of this step's own.
  return (x, next) => {
    const d = x.decision;
    if (d?.kind !== 'forward') return next();
    const service = d.backend.serviceKey;
    const budget = deps.budgetFor(service);
    budget.request();
    const r = d.retry;
    if (r === undefined || r.attempts === 0) return next();
    return retrying(x, next, r, service, budget);
  };
  async function retrying(x: Exchange, next: () => Promise<void>, r: NonNullable<Forward['retry']>, service: string, budget: RetryBudgetLike): Promise<void> {
    const policy: RetryPolicy = { attempts: r.attempts, codes: r.codes, grpcCodes: r.grpcCodes ?? [], backoffMs: r.backoffMs };
    const client = x.sink;
    let retries = 0;
    for (;;) {
      let verdict: RetryVerdict | undefined;
      const attempt = attemptSink(client, (head) => {
        verdict = retryVerdict({
          policy, outcome: outcomeOf(x, head), retriesSoFar: retries, random: random(),
          request: { method: x.request.method, grpc: x.request.grpc, bodyReplayable: x.request.body?.replayable ?? true },
          spendBudget: () => budget.tryRetry(),
        });
        if (!verdict.retry && verdict.reason === 'budget-exhausted') deps.budgetExhausted?.(service);
        return verdict.retry;
      });
      x.sink = attempt.sink;
      try {
        await next();
      } finally {
        x.sink = client;
      }
      const v: RetryVerdict | undefined = verdict;
      if (!attempt.held() || v?.retry !== true) {
        // The last attempt's answer went to the client; say when retrying would have gone on but could not.
        if (v !== undefined && !v.retry && (v.reason === 'attempts-exhausted' || v.reason === 'budget-exhausted') && x.flags === ResponseFlags.OK) {
          x.flags = ResponseFlags.RETRY_LIMIT_EXCEEDED;
          x.detail = v.reason === 'budget-exhausted' ? `the retry budget of ${service} is spent` : `${retries} retries made, the route allows ${r.attempts}`;
        }
        return;
      }
      retries += 1;
      x.retries += 1;
      deps.retried?.(service);
      x.status = 0;
      x.grpcStatus = undefined;
      x.flags = ResponseFlags.OK;
      x.detail = undefined;
      x.upstream = undefined;
      try {
        await sleep(v.delayMs, undefined, { signal: x.signal, ref: false });
      } catch {
        x.flags = ResponseFlags.DOWNSTREAM_RESET;
        x.detail = 'the client left while a retry waited';
        client.abort();
        return;
      }
    }
  }
}
