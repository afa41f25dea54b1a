// Tracing as a request observer of the HTTP layer: a CLIENT span per request on the source
// agent, a SERVER span on the destination agent. Each continues the trace context the request
// arrived with (the configured propagators: W3C traceparent/tracestate by default, B3 when
// OTEL_PROPAGATORS names b3 or b3multi), and hands its own context on in the request it
// sends, so the application's spans, both agents' spans and the backend's are one trace.
// Attributes follow the HTTP semantic conventions plus the mesh's own (weft.*).

import type { api } from '@opentelemetry/sdk-node';

import { systemClock, type Clock } from '../core/clock.ts';
import { peerAttributes, setKnown, splitHostPort } from './span-attributes.ts';
import type { Tracing } from './tracing.ts';
import type { IncomingRequest, ObservedRequest, OutgoingTraceHeaders, RequestDescription, RequestOutcome } from './types.ts';

const KIND = { SERVER: 1, CLIENT: 2 } as const;
const STATUS_ERROR = 2;

type TracingView = Pick<Tracing, 'tracer' | 'httpPropagator' | 'tunnelPropagator' | 'context'>;

type Carrier = IncomingRequest['headers'];
const getter: api.TextMapGetter<Carrier> = {
  keys: (c) => Object.keys(c),
  get: (c, key) => {
    const v = c[key];
    return typeof v === 'string' ? v : v === undefined ? undefined : [...v];
  },
};
const setter: api.TextMapSetter<Record<string, string>> = {
  set: (c, key, value) => { c[key] = value; },
};

export interface RequestTracerOptions {
  readonly node: string;
  readonly clock?: Clock;
}

export class RequestTracer {
  readonly #t: TracingView;
  readonly #node: string;
  readonly #clock: Clock;

  constructor(tracing: TracingView, options: RequestTracerOptions) {
    this.#t = tracing;
    this.#node = options.node;
    this.#clock = options.clock ?? systemClock;
  }

  /** A request's head arrived: its span starts now, continuing the context it carries. */
  request(incoming: IncomingRequest): Omit<ObservedRequest, 'traceHeaders'> & { traceHeaders(): OutgoingTraceHeaders } {
    const { tracer } = this.#t;
    const parent = this.#extract(incoming.headers);
    const server = incoming.reporter === 'destination';
    const [host, port] = splitHostPort(incoming.authority);
    const attributes: api.Attributes = {
      'http.request.method': incoming.method,
      'url.path': incoming.path.split('?', 1)[0],
      'weft.node': this.#node,
      'weft.reporter': incoming.reporter,
    };
    if (host !== undefined) attributes['server.address'] = host;
    if (port !== undefined) attributes['server.port'] = port;
    const span = tracer.startSpan(incoming.method, { kind: server ? KIND.SERVER : KIND.CLIENT, startTime: this.#clock.now(), attributes }, parent);
    return new TracedRequest(this.#t, span, server);
  }

  /**
   * The context a request carries. A composite propagator lets the last one that finds a
   * context win, and B3 has no tracestate: a request carrying both W3C and B3 headers of
   * one trace (as the previous hop sends with OTEL_PROPAGATORS=tracecontext,b3multi) would
   * lose its tracestate. The W3C tracestate of the same trace is kept.
   */
  #extract(headers: Carrier): api.Context {
    const { context, httpPropagator, tunnelPropagator } = this.#t;
    const parent = httpPropagator.extract(context.root(), headers, getter);
    const sc = context.spanContext(parent);
    if (sc === undefined || sc.traceState !== undefined || headers.tracestate === undefined) return parent;
    const w3c = context.spanContext(tunnelPropagator.extract(context.root(), headers, getter));
    if (w3c?.traceState === undefined || w3c.traceId !== sc.traceId) return parent;
    return context.withSpanContext(parent, { ...sc, traceState: w3c.traceState });
  }
}

class TracedRequest implements ObservedRequest {
  readonly #t: TracingView;
  readonly #span: api.Span;
  readonly #server: boolean;
  #done = false;

  constructor(t: TracingView, span: api.Span, server: boolean) {
    this.#t = t;
    this.#span = span;
    this.#server = server;
  }

  /** This span's context for the request sent on (to the destination agent, or to the pod). */
  traceHeaders(): OutgoingTraceHeaders {
    const { context, httpPropagator } = this.#t;
    const set: Record<string, string> = {};
    httpPropagator.inject(context.setSpan(context.root(), this.#span), set, setter);
    return { set, remove: httpPropagator.fields() };
  }

  describe(d: RequestDescription): void {
    if (this.#done) return;
    const s = this.#span;
    s.updateName(d.route === undefined ? d.method : `${d.method} ${d.route}`);
    const attributes: api.Attributes = {
      'weft.request_protocol': d.protocol,
      'weft.connection_security_policy': d.security,
      ...peerAttributes(d.source, d.destination, d.service),
      'weft.route': d.route,
      // The peer of this agent: the client on the destination side, the endpoint on the source side.
      'network.peer.address': hostOf(this.#server ? d.source.address : d.destination.address),
    };
    if (d.service !== undefined && !this.#server) attributes['server.address'] = d.service.host;
    setKnown(s, attributes);
  }

  finish(o: RequestOutcome): void {
    if (this.#done) return;
    this.#done = true;
    const s = this.#span;
    if (o.status > 0) s.setAttribute('http.response.status_code', o.status);
    if (o.grpcStatus !== undefined) s.setAttribute('rpc.grpc.status_code', Number(o.grpcStatus));
    s.setAttribute('weft.response_flags', o.flags);
    s.setAttribute('weft.retries', o.retries);
    s.setAttribute('http.request.body.size', o.requestBytes);
    s.setAttribute('http.response.body.size', o.responseBytes);
    if (o.upstream !== undefined && !this.#server) s.setAttribute('network.peer.address', hostOf(o.upstream) ?? o.upstream);
    // Semantic conventions: a server span errs on 5xx, a client span on 4xx too; no answer errs either way.
    const failed = o.status === 0 || o.status >= (this.#server ? 500 : 400);
    if (failed) {
      s.setAttribute('error.type', o.status === 0 ? (o.flags === '-' ? '_OTHER' : o.flags) : String(o.status));
      s.setStatus({ code: STATUS_ERROR, message: o.detail ?? o.flags });
    }
    s.end();
  }
}


function hostOf(address: string | undefined): string | undefined {
  return splitHostPort(address)[0];
}
