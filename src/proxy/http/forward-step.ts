// The forward step, the last of the pipeline: the endpoints of the route's backend (or the
// pod the client addressed), one picked per request by the request balancer, policy checked
// for that endpoint, then the request sent through the endpoint's pooled upstream (undici
// for HTTP/1.1, an HTTP/2 session for h2 and gRPC; direct or through the tunnel). A connect
// failure tries another endpoint (nothing was sent yet); anything later is answered 503 or,
// once a response started, cut. Timeouts from the route end in 504 UT. A gRPC call's
// `grpc-timeout` is honoured: the call ends with DEADLINE_EXCEEDED (flag UT) when it runs out,
// and each attempt passes on what is left of it (less the time spent here, in earlier steps
// and attempts); a call that arrives with nothing left is answered at once, never sent. One
// whose answer has started gets DEADLINE_EXCEEDED in trailers after what was sent.

import { protocolFor } from '../../model/protocol.ts';
import type { Endpoint, MeshService, ServicePort, Workload } from '../../model/types.ts';
import { isWeftError } from '../../core/errors.ts';
import { ProxyErrors } from '../errors.ts';
import { classifyConnectFailure, isConnectError, isRetriableReset } from '../connect-failure.ts';
import type { Authorizer } from '../contracts.ts';
import { addressOf, peerOf, serviceRef } from '../describe.ts';
import { ResponseFlags } from '../flags.ts';
import { endpointKey } from '../load-balancer.ts';
import { endpointTarget, planHop, type OutboundTarget } from '../outbound-route.ts';
import type { BackendTarget, HttpMeshView } from './contracts.ts';
import type { Exchange, RequestStep } from './exchange.ts';
import { authorizeEndpoint, httpAttributes } from './authorization-step.ts';
import { acceptsTrailers, applyHeaderModifiers, first, headersForUpstream } from './headers.ts';
import { deadlineFor, formatGrpcTimeout } from '../resilience/grpc-timeout.ts';
import { GrpcStatus, sendLocalReply } from './local-reply.ts';
import type { OutgoingRequest, ResponseSink, SendResult } from './messages.ts';
import type { RequestBalancer } from './request-balancer.ts';
import type { ServicePool, UpstreamPools, UpstreamProtocol } from './upstream-pools.ts';

export interface ForwardDeps {
  readonly nodeName: string;
  readonly mesh: HttpMeshView;
  readonly authorize: Authorizer;
  readonly balancer: RequestBalancer;
  readonly pools: UpstreamPools;
  /** Endpoints tried per request on connect failures. */
  readonly maxAttempts: number;
  readonly clusterDomain: string;
  /**
   * A request about to go straight to a pod on this node, whose destination agent this is:
   * the destination side's checks (rate limits). False: it answered the request itself.
   */
  readonly admitLocal?: (x: Exchange, pod: Workload) => boolean;
  /** A RequestMirror copy sent, or not sent because the body was too large to keep (by mirror Service). */
  readonly mirrored?: (serviceKey: string, outcome: 'sent' | 'skipped_body') => void;
  /** The outlier detection of a Service (`namespace/name`), when its DestinationPolicy sets one. */
  readonly outliers?: (serviceKey: string) => OutlierTracker | undefined;
  /** The connection-pool limits (DestinationPolicy maxConnections, maxRequestsPerConnection) of a Service, when it has any. */
  readonly poolFor?: (serviceKey: string) => ServicePool | undefined;
  /** A request refused at once (503 UO) because its Service's maxConnections were all open. */
  readonly overflowed?: (serviceKey: string) => void;
  /** One of the Service's endpoints ejected, or left in because maxEjectionPercent was reached. */
  readonly outlierEvent?: (serviceKey: string, event: 'ejected' | 'ejection-refused', endpoint: string) => void;
}

/** Outlier detection as the forward step feeds it (resilience/outlier-ejection.ts). */
export interface OutlierTracker {
  ejected(endpoint: string): boolean;
  success(endpoint: string): void;
  /** A 5xx or a failure to get a response from `endpoint`, one of the Service's `pool` (endpoint keys). */
  failure(endpoint: string, pool: readonly string[]): 'none' | 'ejected' | 'ejection-refused';
}

/** HTTP/2 to ports declared h2 or gRPC, else the protocol the client spoke. */
export function upstreamProtocol(port: Pick<ServicePort, 'name' | 'appProtocol'> | undefined, downstream: 'h1' | 'h2'): UpstreamProtocol {
  const p = port === undefined ? 'undeclared' : protocolFor(port);
  return p === 'http2' || p === 'grpc' ? 'h2' : downstream;
}

interface Backend {
  readonly endpoints: readonly Endpoint[];
  readonly service: MeshService | undefined;
  readonly port: ServicePort | undefined;
}

function backendOf(deps: ForwardDeps, x: Exchange): Backend {
  const d = x.decision;
  const dst = x.connection.destination;
  if (d?.kind === 'forward') return resolveBackend(deps, d.backend);
  if (dst.kind === 'service') return { endpoints: dst.endpoints, service: dst.service.service, port: dst.service.port };
  const t = dst.target;
  const pod: Endpoint = { ip: t.ip, port: t.port, node: t.workload?.node, workload: t.workload?.key, weight: 1 };
  return { endpoints: [pod], service: undefined, port: undefined };
}

function resolveBackend(deps: ForwardDeps, b: BackendTarget): Backend {
  const service = deps.mesh.service(b.serviceKey);
  return { endpoints: deps.mesh.endpoints(b.serviceKey, b.port), service, port: service?.ports.find((p) => p.port === b.port) };
}

/** The sink the upstream writes into: the client's, with the route's response header modifiers. */
function modifiedSink(x: Exchange): ResponseSink {
  const modifiers = x.decision?.responseHeaders ?? [];
  if (modifiers.length === 0) return x.sink;
  const sink = x.sink;
  return {
    get started() {
      return sink.started;
    },
    get bytes() {
      return sink.bytes;
    },
    start: (head) => sink.start({ ...head, headers: applyHeaderModifiers({ ...head.headers }, modifiers) }),
    write: (c) => sink.write(c),
    onDrain: (r) => sink.onDrain(r),
    end: (t) => sink.end(t),
    abort: () => sink.abort(),
  };
}

/** A signal that fires with `parent` or after `ms` (undefined: never), and its cleanup. */
const never = (): boolean => false;
const noop = (): void => undefined;

function withTimeout(parent: AbortSignal, ms: number | undefined): { signal: AbortSignal; timedOut: () => boolean; dispose: () => void } {
  // Twice per request, mostly without a timeout: no closures of its own then.
  if (ms === undefined || ms <= 0) return { signal: parent, timedOut: never, dispose: noop };
  const c = new AbortController();
  let fired = false;
  const onParent = (): void => c.abort();
  const timer = setTimeout(() => {
    fired = true;
    c.abort();
  }, ms);
  timer.unref();
  if (parent.aborted) c.abort();
  else parent.addEventListener('abort', onParent, { once: true });
  return {
    signal: c.signal, timedOut: () => fired,
    dispose: () => {
      clearTimeout(timer);
      parent.removeEventListener('abort', onParent);
    },
  };
}

export function forwardStep(deps: ForwardDeps): RequestStep {
  return (x) => forward(deps, x);
}

async function forward(deps: ForwardDeps, x: Exchange): Promise<void> {
  const c = x.connection;
  const backend = backendOf(deps, x);
  x.service = backend.service === undefined ? c.service : serviceRef(backend.service, deps.clusterDomain);
  if (backend.endpoints.length === 0) {
    sendLocalReply(x, { status: 503, flags: ResponseFlags.NO_HEALTHY_UPSTREAM, message: 'no healthy upstream' });
    return;
  }
  const protocol = upstreamProtocol(backend.port, x.request.version);
  const forwardDecision = x.decision?.kind === 'forward' ? x.decision : undefined;
  // The caller's deadline, counted from the request's arrival (time in earlier steps, a fault's delay, earlier retries, spent).
  const deadline = x.request.grpc ? deadlineFor(first(x.request.headers['grpc-timeout']), performance.now() - x.arrivedAt, undefined) : undefined;
  if (deadline?.expired === true) {
    sendLocalReply(x, {
      status: 504, flags: ResponseFlags.UPSTREAM_TIMEOUT, message: 'upstream request timeout', grpcStatus: GrpcStatus.DEADLINE_EXCEEDED,
      detail: 'the grpc-timeout ran out before the call could be sent',
    });
    return;
  }
  const deadlineAt = deadline?.remainingMs === undefined ? undefined : performance.now() + deadline.remainingMs;
  const routeMs = forwardDecision?.requestTimeoutMs;
  const overall = withTimeout(x.signal, deadline?.remainingMs === undefined ? routeMs : Math.min(routeMs ?? Infinity, deadline.remainingMs));
  const serviceKey = backend.service?.key;
  const tracker = serviceKey === undefined ? undefined : deps.outliers?.(serviceKey);
  const outliers = serviceKey === undefined || tracker === undefined ? undefined : { serviceKey, tracker };
  try {
    const pool = serviceKey === undefined ? undefined : deps.poolFor?.(serviceKey);
    await attempts(deps, x, backend.endpoints, protocol, overall.signal, overall.timedOut, forwardDecision?.backendRequestTimeoutMs, outliers, pool, deadlineAt);
  } finally {
    overall.dispose();
  }
  if (forwardDecision !== undefined && forwardDecision.mirrors.length > 0) mirror(deps, x, forwardDecision.mirrors, protocol);
}

async function attempts(
  deps: ForwardDeps, x: Exchange, endpoints: readonly Endpoint[], protocol: UpstreamProtocol, signal: AbortSignal,
  requestTimedOut: () => boolean, backendTimeoutMs: number | undefined, outliers: { readonly serviceKey: string; readonly tracker: OutlierTracker } | undefined,
  pool: ServicePool | undefined, deadlineAt: number | undefined,
): Promise<void> {
  const c = x.connection;
  const tried = new Set<string>();
  const ejected = outliers === undefined ? undefined : (k: string): boolean => outliers.tracker.ejected(k);
  // What an attempt tells outlier detection: a response under 500 is a success; a 5xx, a
  // failed connect, a reset or a timeout a failure (Envoy's consecutive_5xx, local origin
  // errors included); a refusal by policy, a client gone or a stale pooled connection nothing.
  const judge = (k: string, ok: boolean): void => {
    if (outliers === undefined) return;
    if (ok) {
      outliers.tracker.success(k);
      return;
    }
    const event = outliers.tracker.failure(k, endpoints.map(endpointKey));
    if (event !== 'none') deps.outlierEvent?.(outliers.serviceKey, event, k);
  };
  const sink = modifiedSink(x);
  let failure: { readonly flags: string; readonly detail: string } = { flags: ResponseFlags.NO_HEALTHY_UPSTREAM, detail: 'no endpoint could be picked' };
  let last: OutboundTarget | undefined;
  // One more go for a request a stale pooled connection or a refused stream lost unsent.
  let resend: string | undefined;
  for (let attempt = 0; attempt < deps.maxAttempts; attempt++) {
    const e = resend === undefined ? deps.balancer.pick(endpoints, tried, ejected) : endpoints.find((p) => endpointKey(p) === resend);
    resend = undefined;
    if (e === undefined) break;
    if (attempt > 0) x.retries += 1;
    const key = endpointKey(e);
    tried.add(key);
    const target = endpointTarget(deps.mesh, e);
    last = target;
    x.destination = peerOf(target.workload, addressOf(target.ip, target.port));
    const w = target.workload;
    if (!authorizeEndpoint(deps.authorize, x, target)) return;
    const hop = planHop(deps.mesh, deps.nodeName, target);
    if (hop.kind === 'unreachable') {
      deps.balancer.start(key).done(false);
      judge(key, false);
      failure = { flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, detail: hop.detail };
      continue;
    }
    if (c.checkPolicy && hop.kind === 'direct' && w !== undefined && w.enrolled && w.node === deps.nodeName && deps.admitLocal?.(x, w) === false) return;
    x.security = c.security ?? (hop.kind === 'tunnel' ? 'mutual_tls' : 'none');
    const headers = headersForUpstream(x.outgoing.headers, x.outgoing.authority, protocol, acceptsTrailers(x.request.headers.te));
    // What is left of the caller's deadline now, never rounded up.
    if (deadlineAt !== undefined) headers['grpc-timeout'] = formatGrpcTimeout(Math.max(0, deadlineAt - performance.now()));
    const outgoing: OutgoingRequest = {
      method: x.request.method,
      path: x.outgoing.path,
      authority: x.outgoing.authority,
      headers,
      body: x.request.body?.open(),
    };
    x.request.sendContinue();
    const inFlight = deps.balancer.start(key);
    const perAttempt = withTimeout(signal, backendTimeoutMs);
    let result: SendResult;
    try {
      result = await deps.pools.sender(c.sourceIdentity, c.clientIp, hop, protocol, c.upstreamScope, pool).send(outgoing, sink, perAttempt.signal);
    } finally {
      perAttempt.dispose();
    }
    if (result.kind === 'done') {
      inFlight.done(result.status < 500, result.headersMs);
      judge(key, result.status < 500);
      x.status = result.status;
      x.grpcStatus = result.grpcStatus;
      x.upstream = key;
      return;
    }
    const timedOut = requestTimedOut() || perAttempt.timedOut();
    if (result.started && timedOut && x.request.grpc) {
      // A gRPC answer under way when its deadline ran out: what went out stands, and the call
      // ends as a gRPC server ends it, DEADLINE_EXCEEDED in trailers (a reset would read CANCELLED).
      inFlight.done(false);
      judge(key, false);
      x.upstream = key;
      x.status = 200;
      x.grpcStatus = String(GrpcStatus.DEADLINE_EXCEEDED);
      x.flags = ResponseFlags.UPSTREAM_TIMEOUT;
      x.detail = describe(result.error);
      x.sink.end({ 'grpc-status': String(GrpcStatus.DEADLINE_EXCEEDED), 'grpc-message': 'upstream request timeout' });
      return;
    }
    if (result.started) {
      // The response was cut: nothing to answer, the client sees the reset.
      inFlight.done(false);
      x.upstream = key;
      x.sink.abort();
      x.flags = timedOut ? ResponseFlags.UPSTREAM_TIMEOUT : x.live.signal.aborted ? ResponseFlags.DRAINED
        : x.signal.aborted ? ResponseFlags.DOWNSTREAM_RESET : ResponseFlags.UPSTREAM_RESET;
      if (x.flags === ResponseFlags.UPSTREAM_TIMEOUT || x.flags === ResponseFlags.UPSTREAM_RESET) judge(key, false);
      x.detail = describe(result.error);
      return;
    }
    if (timedOut) {
      inFlight.done(false);
      judge(key, false);
      sendLocalReply(x, { status: 504, flags: ResponseFlags.UPSTREAM_TIMEOUT, message: 'upstream request timeout', grpcStatus: GrpcStatus.DEADLINE_EXCEEDED });
      return;
    }
    if (isWeftError(result.error, ProxyErrors.POOL_OVERFLOW)) {
      // The Service's maxConnections are all open: refused at once, no other endpoint tried (the limit is the Service's).
      inFlight.done(true);
      if (pool !== undefined) deps.overflowed?.(pool.serviceKey);
      sendLocalReply(x, {
        status: 503, flags: ResponseFlags.UPSTREAM_OVERFLOW, message: 'upstream connect error or disconnect/reset before headers. reset reason: overflow',
        detail: describe(result.error), grpcStatus: GrpcStatus.UNAVAILABLE,
      });
      return;
    }
    const f = classifyConnectFailure({ error: result.error, drained: x.live.signal.aborted, clientGone: x.signal.aborted });
    if (f.kind === 'stop') {
      inFlight.done(true);
      replyStopped(x, f.ending[0], f.ending[1] ?? '');
      return;
    }
    const unsent = (x.request.body?.bytes ?? 0) === 0;
    if (unsent && isRetriableReset(result.error, x.request.method)) {
      // Not the endpoint's fault (the connection was idle-closed, or the server is draining).
      inFlight.done(true);
      resend = key;
      failure = { flags: ResponseFlags.UPSTREAM_RESET, detail: describe(result.error) };
      continue;
    }
    inFlight.done(false);
    judge(key, false);
    if (isConnectError(result.error) && unsent) {
      failure = { flags: f.ending[0], detail: f.ending[1] ?? '' };
      continue;
    }
    // Failed after sending (reset before the response head): not retried, the request may have had effects.
    x.upstream = key;
    if ((x.request.body?.bytes ?? 0) > 0) {
      // Part of the body went: the client sees the reset, as it would talking to the server itself.
      x.flags = ResponseFlags.UPSTREAM_RESET;
      x.detail = describe(result.error);
      x.sink.abort();
      return;
    }
    sendLocalReply(x, {
      status: 503, flags: ResponseFlags.UPSTREAM_RESET, message: 'upstream connect error or disconnect/reset before headers',
      detail: describe(result.error),
    });
    return;
  }
  if (last !== undefined) x.destination = peerOf(last.workload, addressOf(last.ip, last.port));
  sendLocalReply(x, {
    status: 503, flags: failure.flags, detail: failure.detail,
    message: failure.flags === ResponseFlags.NO_HEALTHY_UPSTREAM ? 'no healthy upstream' : 'upstream connect error or disconnect/reset before headers',
  });
}

function replyStopped(x: Exchange, flags: string, detail: string): void {
  switch (flags) {
    case ResponseFlags.DENIED:
      sendLocalReply(x, { status: 403, flags, detail, message: 'RBAC: access denied', grpcStatus: GrpcStatus.PERMISSION_DENIED });
      return;
    case ResponseFlags.DOWNSTREAM_RESET:
      x.flags = flags;
      x.detail = detail;
      x.sink.abort();
      return;
    case ResponseFlags.BAD_REQUEST:
      sendLocalReply(x, { status: 502, flags, detail, message: 'the destination agent refused the request' });
      return;
    default:
      sendLocalReply(x, { status: 503, flags, detail, message: 'upstream connect error or disconnect/reset before headers' });
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Fire-and-forget copies of the request to each mirror backend (Gateway API RequestMirror), sent
 * once the request is done: a body goes along from the kept copy (up to the replay bound, 64 KiB);
 * a request whose body was larger, or cut short, is not mirrored, and that is counted.
 */
function mirror(deps: ForwardDeps, x: Exchange, mirrors: readonly BackendTarget[], protocol: UpstreamProtocol): void {
  const c = x.connection;
  const body = x.request.body;
  const whole = body === undefined || body.kept;
  for (const m of mirrors) {
    if (!whole) {
      deps.mirrored?.(m.serviceKey, 'skipped_body');
      continue;
    }
    const b = resolveBackend(deps, m);
    const e = deps.balancer.pick(b.endpoints);
    if (e === undefined) continue;
    const target = endpointTarget(deps.mesh, e);
    const w = target.workload;
    if (c.checkPolicy && w !== undefined && w.enrolled && !deps.authorize({
      sourcePrincipal: c.sourceIdentity, sourceNamespace: c.sourceNamespace, sourceIp: c.clientIp, destinationWorkload: w, destinationPort: target.port,
      http: httpAttributes(x),
    }).allowed) continue;
    const hop = planHop(deps.mesh, deps.nodeName, target);
    if (hop.kind === 'unreachable') continue;
    const p = upstreamProtocol(b.port, protocol);
    const authority = x.outgoing.authority;
    deps.mirrored?.(m.serviceKey, 'sent');
    void deps.pools.sender(c.sourceIdentity, c.clientIp, hop, p).send({
      method: x.request.method, path: x.outgoing.path, authority,
      headers: headersForUpstream(x.outgoing.headers, authority, p, acceptsTrailers(x.request.headers.te)), body: body?.copy(),
    }, discardSink(), AbortSignal.timeout(30_000));
  }
}

function discardSink(): ResponseSink {
  let started = false;
  return {
    get started() {
      return started;
    },
    bytes: 0,
    start: () => {
      started = true;
    },
    write: () => true,
    onDrain: () => undefined,
    end: () => undefined,
    abort: () => undefined,
  };
}
