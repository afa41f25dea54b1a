// The HTTP layer of the outbound listener: serves a routed connection that speaks HTTP/1.1
// or h2c, request by request. Each request runs the pipeline [route, ...extra steps,
// forward], is balanced over the endpoints of its backend by the request balancer, and is
// sent through pooled upstream connections (direct or through the mTLS tunnel) made by the
// same upstream connector the L4 path uses. One request record per request; the
// connection keeps its own record. Upgrades and CONNECT are spliced after the handshake.

import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';

import type { Duplex } from 'node:stream';

import type { Authorizer } from '../contracts.ts';
import { ResponseFlags } from '../flags.ts';
import type { Accepted, Ending } from '../listener.ts';
import type { RandomSource } from '../load-balancer.ts';
import type { HttpHandler, RoutedConnection } from '../outbound.ts';
import type { InboundHttpConnection, InboundHttpHandler } from '../inbound-tunnel.ts';
import { resetSide, type SocketCloser, type SpliceSide } from '../splice.ts';
import type { UpstreamConnector } from '../upstream.ts';
import type { ConcurrencyLimits } from '../resilience/concurrency-limit.ts';
import {
  NO_REQUEST_TELEMETRY, defaultRoute, type HttpMeshView, type RequestObserver, type RequestRecord, type RouteDecider,
} from './contracts.ts';
import { H1Downstream } from './downstream-h1.ts';
import { serveH2 } from './downstream-h2.ts';
import { Exchange, composeSteps, type DownstreamRequest, type HttpConnection, type RequestStep } from './exchange.ts';
import { forwardStep, type ForwardDeps } from './forward-step.ts';
import { endToEndRequestHeaders, first, isGrpc, type OutHeaders } from './headers.ts';
import { sendLocalReply } from './local-reply.ts';
import type { ResponseSink } from './messages.ts';
import { normalizeRequestTarget } from './path-normalize.ts';
import { RequestBalancer } from './request-balancer.ts';
import { routeStep } from './route-step.ts';
import { PodSockets, resetOnlyIfAgentDies, type DescriptorAllowance } from './pod-sockets.ts';
import { UpstreamPools } from './upstream-pools.ts';
import { RawResponseSink, upgradeStep } from './upgrade.ts';

export interface HttpLayerDeps {
  readonly mesh: HttpMeshView;
  readonly authorize: Authorizer;
  readonly connector: UpstreamConnector;
  /** Where each request goes; every request goes to the Service it was sent to when absent. */
  readonly route?: RouteDecider;
  readonly observer?: RequestObserver;
  /** Steps run between routing and forwarding on the source side (issue 11: retries, budgets, faults). */
  readonly steps?: readonly RequestStep[];
  /** Steps run before forwarding to the local pod on the destination side (issue 11: L7 policy, rate limits). */
  readonly inboundSteps?: readonly RequestStep[];
  /** The destination side's checks for a request going straight to a pod on this node (see ForwardDeps.admitLocal). */
  readonly admitLocal?: ForwardDeps['admitLocal'];
  readonly mirrored?: ForwardDeps['mirrored'];
  /** Outlier detection per Service (DestinationPolicy outlierDetection) on the source side, and its ejections. */
  readonly outliers?: ForwardDeps['outliers'];
  readonly outlierEvent?: ForwardDeps['outlierEvent'];
  /** DestinationPolicy connectionPool limits per Service on the source side, the counters of maxConnections, and overflows. */
  readonly poolFor?: ForwardDeps['poolFor'];
  readonly connectionLimits?: ConcurrencyLimits;
  readonly overflowed?: ForwardDeps['overflowed'];
  /** Monotonic ms. Default performance.now. */
  readonly now?: () => number;
  readonly random?: RandomSource;
  /**
   * How captured client sockets close (SO_LINGER): a dying agent resets them, a close this
   * process makes itself sends FIN. Absent: always FIN.
   */
  readonly closer?: SocketCloser;
  /** Descriptors for the pooled pod sockets (the agent's connection caps). Absent: not counted. */
  readonly descriptors?: DescriptorAllowance;
}

export interface HttpLayerOptions {
  readonly nodeName: string;
  /** For destination_service host names. Default cluster.local. */
  readonly clusterDomain?: string;
  /** Endpoints tried per request on connect failures. Default 3. */
  readonly maxAttempts?: number;
  /** Idle upstream connections close after this long. Default 60 s. */
  readonly upstreamIdleMs?: number;
}

interface ConnectionContext {
  readonly connection: HttpConnection;
  readonly accepted: Accepted;
  readonly pipeline: (x: Exchange) => Promise<void>;
  readonly steps: readonly RequestStep[];
}

/** The outgoing headers with the request record's trace context (this hop's span) in place of the client's. */
function withTraceHeaders(headers: OutHeaders, record: RequestRecord): OutHeaders {
  const trace = record.traceHeaders?.();
  if (trace === undefined) return headers;
  for (const name of trace.remove) delete headers[name];
  Object.assign(headers, trace.set);
  return headers;
}

/** A signal that fires when either does, and how to stop listening. */
function either(a: AbortSignal, b: AbortSignal): { signal: AbortSignal; dispose(): void } {
  if (a.aborted) return { signal: a, dispose: () => undefined };
  if (b.aborted) return { signal: b, dispose: () => undefined };
  const c = new AbortController();
  const abort = (): void => c.abort();
  a.addEventListener('abort', abort, { once: true });
  b.addEventListener('abort', abort, { once: true });
  return {
    signal: c.signal,
    dispose: () => {
      a.removeEventListener('abort', abort);
      b.removeEventListener('abort', abort);
    },
  };
}

export class HttpLayer implements HttpHandler, InboundHttpHandler {
  readonly #deps: HttpLayerDeps;
  readonly #observer: RequestObserver;
  readonly #route: RouteDecider;
  readonly #pools: UpstreamPools;
  readonly #podSockets: PodSockets;
  readonly #balancer: RequestBalancer;
  readonly #h1 = new H1Downstream();
  readonly #outbound: { readonly pipeline: (x: Exchange) => Promise<void>; readonly steps: readonly RequestStep[] };
  readonly #inbound: { readonly pipeline: (x: Exchange) => Promise<void>; readonly steps: readonly RequestStep[] };
  readonly #nodeName: string;
  readonly #maxAttempts: number;
  /** Inbound streams served so far (names their upstream scopes). */
  #streams = 0;

  constructor(deps: HttpLayerDeps, options: HttpLayerOptions) {
    this.#deps = deps;
    this.#observer = deps.observer ?? NO_REQUEST_TELEMETRY;
    this.#route = deps.route ?? defaultRoute;
    this.#nodeName = options.nodeName;
    this.#maxAttempts = options.maxAttempts ?? 3;
    this.#podSockets = new PodSockets(deps.connector, { allowance: deps.descriptors, closer: deps.closer });
    this.#pools = new UpstreamPools(this.#podSockets, { idleMs: options.upstreamIdleMs, connectionLimits: deps.connectionLimits });
    this.#balancer = new RequestBalancer({ now: deps.now ?? (() => performance.now()), random: deps.random });
    const forward = forwardStep({
      nodeName: options.nodeName, mesh: deps.mesh, authorize: deps.authorize, balancer: this.#balancer, pools: this.#pools,
      maxAttempts: this.#maxAttempts, clusterDomain: options.clusterDomain ?? 'cluster.local', admitLocal: deps.admitLocal,
      mirrored: deps.mirrored, outliers: deps.outliers, outlierEvent: deps.outlierEvent,
      poolFor: deps.poolFor, overflowed: deps.overflowed,
    });
    const outboundSteps = [routeStep(this.#route), ...(deps.steps ?? [])];
    const inboundSteps = deps.inboundSteps ?? [];
    this.#outbound = { steps: outboundSteps, pipeline: composeSteps([...outboundSteps, forward]) };
    this.#inbound = { steps: inboundSteps, pipeline: composeSteps([...inboundSteps, forward]) };
  }

  /** The request balancer (tests and the admin page read its state). */
  get balancer(): RequestBalancer {
    return this.#balancer;
  }

  /** Pod sockets the layer holds now: `charged` its pools opened (each takes a descriptor of the caps), `held` all of them. */
  get podSockets(): { readonly charged: number; readonly held: number } {
    return { charged: this.#podSockets.charged, held: this.#podSockets.held };
  }

  /** Upstream senders pooled now. */
  get pooledUpstreams(): number {
    return this.#pools.size;
  }

  /** The source side: a captured connection the protocol selector called HTTP. */
  serve(routed: RoutedConnection, accepted: Accepted): Promise<Ending> {
    accepted.record.identify({
      reporter: 'source', source: routed.source, destination: { address: routed.dstAddress }, service: routed.service, security: 'unknown', l7: true,
    });
    const connection: HttpConnection = {
      reporter: 'source', source: routed.source, sourceIdentity: routed.src.identity, sourceNamespace: routed.src.namespace,
      clientIp: routed.clientIp, destination: routed.destination, service: routed.service, checkPolicy: true, security: undefined,
    };
    return this.#serveConnection(routed.client, routed.protocol, { connection, accepted, ...this.#outbound });
  }

  /**
   * The destination side: a tunnel stream (already answered 200) whose peer said it carries
   * HTTP; each request goes to the admitted pod and is reported with reporter="destination".
   */
  async serveInbound(stream: Duplex, c: InboundHttpConnection, accepted: Accepted): Promise<Ending> {
    // The stream's requests go over pod connections of its own, which end with it: a tunnel
    // that dies (its source agent killed) leaves no pod socket behind, paused or pooled.
    const scope = `stream:${++this.#streams}`;
    const connection: HttpConnection = {
      reporter: 'destination', source: c.source, sourceIdentity: c.sourceIdentity, sourceNamespace: c.sourceNamespace, clientIp: c.clientIp,
      destination: { kind: 'workload', target: c.target }, service: undefined, checkPolicy: false, security: 'mutual_tls', upstreamScope: scope,
    };
    this.#podSockets.own(c.connected);
    this.#pools.adopt(c.sourceIdentity, c.clientIp, { kind: 'direct', target: c.target }, c.protocol === 'http1' ? 'h1' : 'h2', c.connected, scope);
    try {
      return await this.#serveConnection(stream, c.protocol, { connection, accepted, ...this.#inbound });
    } finally {
      this.#pools.release(scope);
    }
  }

  async #serveConnection(client: Duplex, protocol: 'http1' | 'h2', ctx: ConnectionContext): Promise<Ending> {
    const { accepted } = ctx;
    if (client instanceof Socket) {
      accepted.record.countBytes(client, 'client');
      if (this.#deps.closer !== undefined) resetOnlyIfAgentDies(client, this.#deps.closer);
    }
    let ending: Ending | undefined;
    let upgraded: Promise<Ending> | undefined;
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const request = (req: DownstreamRequest, sink: ResponseSink, signal: AbortSignal): Promise<void> => this.#request(ctx, req, sink, signal);
    const malformed = (detail: string): void => {
      ending ??= [ResponseFlags.BAD_REQUEST, detail];
    };
    const handle = protocol === 'http1'
      ? this.#h1.serve(client, {
        request, malformed,
        upgrade: (req, s, head) => {
          // The server hands back what it was given: the captured socket or the tunnel stream.
          upgraded = this.#upgrade(ctx, req, s as SpliceSide, head);
        },
      })
      : serveH2(client, { request, malformed });
    accepted.live.onDrain(() => handle.drain());
    // The drain deadline or a reset from the registry: the client sees a reset, as on the L4 path.
    const onAbort = (): void => resetSide(client as SpliceSide);
    accepted.signal.addEventListener('abort', onAbort, { once: true });
    try {
      await closed;
      if (upgraded !== undefined) return await upgraded;
    } finally {
      accepted.signal.removeEventListener('abort', onAbort);
    }
    if (accepted.signal.aborted) return [ResponseFlags.DRAINED, 'ended by drain or shutdown'];
    return ending ?? [ResponseFlags.OK];
  }

  async #request(ctx: ConnectionContext, received: DownstreamRequest, sink: ResponseSink, requestSignal: AbortSignal): Promise<void> {
    // Every step (route, policy) and the observers see the canonical path, and it is what is sent on.
    const target = normalizeRequestTarget(received.path);
    const req = target.ok && target.target !== received.path ? { ...received, path: target.target } : received;
    const record = this.#observer.request({ reporter: ctx.connection.reporter, method: req.method, path: req.path, authority: req.authority, headers: req.headers });
    const signal = either(requestSignal, ctx.accepted.signal);
    const x = new Exchange(ctx.connection, ctx.accepted.live, req, sink, record, signal.signal, {
      path: req.path, authority: req.authority, headers: withTraceHeaders(endToEndRequestHeaders(req.headers), record),
    });
    try {
      if (target.ok) await ctx.pipeline(x);
      else sendLocalReply(x, { status: 400, flags: ResponseFlags.BAD_REQUEST, message: 'bad request target', detail: target.reason });
    } catch (err: unknown) {
      sendLocalReply(x, { status: 500, flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, message: 'internal proxy error', detail: err instanceof Error ? err.message : String(err) });
    } finally {
      signal.dispose();
      this.#finish(x, sink.bytes);
    }
  }

  #finish(x: Exchange, responseBytes: number): void {
    const c = x.connection;
    const route = x.decision?.route;
    x.record.describe({
      reporter: c.reporter,
      source: c.source,
      destination: x.destination,
      service: x.service ?? c.service,
      security: x.security,
      protocol: x.request.grpc ? 'grpc' : 'http',
      method: x.request.method,
      authority: x.request.authority,
      path: x.request.path,
      route: route === undefined ? undefined : `${route.namespace}/${route.name}`,
    });
    x.record.finish({
      status: x.status, grpcStatus: x.grpcStatus, flags: x.flags, requestBytes: x.request.body?.bytes ?? 0, responseBytes,
      upstream: x.upstream, retries: x.retries, detail: x.detail,
    });
  }

  /** An Upgrade or CONNECT request: routed, then spliced; resolves with the splice's Ending. */
  async #upgrade(ctx: ConnectionContext, req: IncomingMessage, socket: SpliceSide, head: Buffer): Promise<Ending> {
    let ending: Ending | undefined;
    const sink = new RawResponseSink(socket);
    const target = normalizeRequestTarget(req.url ?? '/');
    const path = target.ok ? target.target : req.url ?? '/';
    const record = this.#observer.request({ reporter: ctx.connection.reporter, method: req.method ?? 'GET', path, authority: first(req.headers.host), headers: req.headers });
    const request: DownstreamRequest = {
      version: 'h1', method: req.method ?? 'GET', path, authority: first(req.headers.host), headers: req.headers,
      grpc: isGrpc(req.headers['content-type']), body: undefined, sendContinue: () => undefined,
    };
    const x = new Exchange(ctx.connection, ctx.accepted.live, request, sink, record, ctx.accepted.signal, {
      path: request.path, authority: request.authority, headers: withTraceHeaders(endToEndRequestHeaders(req.headers), record),
    });
    const pipeline = composeSteps([...ctx.steps, upgradeStep({
      nodeName: this.#nodeName, mesh: this.#deps.mesh, authorize: this.#deps.authorize, balancer: this.#balancer,
      connector: this.#deps.connector, maxAttempts: this.#maxAttempts,
    }, req, socket, head, (e) => {
      ending = e;
    })]);
    try {
      if (target.ok) await pipeline(x);
      else sendLocalReply(x, { status: 400, flags: ResponseFlags.BAD_REQUEST, message: 'bad request target', detail: target.reason });
    } catch (err: unknown) {
      x.flags = ResponseFlags.UPSTREAM_CONNECT_FAILURE;
      x.detail = err instanceof Error ? err.message : String(err);
      socket.destroy();
    } finally {
      this.#finish(x, sink.bytes);
    }
    return ending ?? [x.flags, x.detail];
  }

  /** Lets upstream requests in flight finish, then closes the pooled connections. */
  close(): Promise<void> {
    return this.#pools.close();
  }

  destroy(): void {
    this.#pools.destroy();
  }
}
