// Tracing as a connection observer: one span per connection on each agent. The source
// agent's span (CLIENT) starts when the connection is accepted and hands its context to the
// tunnel's CONNECT as W3C `traceparent` (as HBONE does); the destination agent's span (SERVER)
// continues that context, so both agents' spans are one trace. Attributes follow OpenTelemetry's
// semantic conventions (network.*, server.*, client.*) plus the mesh's own (weft.*).

import type { api } from '@opentelemetry/sdk-node';

import { systemClock, type Clock } from '../core/clock.ts';
import { peerAttributes, setKnown, splitHostPort } from './span-attributes.ts';
import type { Tracing } from './tracing.ts';
import type { ByteSource, ConnectionDescription, ObservedConnection, Observer, TraceCarrier } from './types.ts';

// The numeric values of api.SpanKind and api.SpanStatusCode (const enums in the API's types).
const KIND = { INTERNAL: 0, SERVER: 1, CLIENT: 2 } as const;
const STATUS_ERROR = 2;

export interface ConnectionTracerOptions {
  readonly node: string;
  readonly clock?: Clock;
}

const getter: api.TextMapGetter<TraceCarrier> = {
  keys: (c) => Object.keys(c),
  get: (c, key) => c[key],
};
const setter: api.TextMapSetter<Record<string, string>> = {
  set: (c, key, value) => { c[key] = value; },
};

export class ConnectionTracer implements Observer {
  readonly #tracing: Pick<Tracing, 'tracer' | 'tunnelPropagator' | 'context'>;
  readonly #node: string;
  readonly #clock: Clock;

  constructor(tracing: Pick<Tracing, 'tracer' | 'tunnelPropagator' | 'context'>, options: ConnectionTracerOptions) {
    this.#tracing = tracing;
    this.#node = options.node;
    this.#clock = options.clock ?? systemClock;
  }

  open(incoming?: TraceCarrier): TracedConnection {
    return new TracedConnection(this.#tracing, this.#node, this.#clock.now(), incoming);
  }

  /** Refused handshakes are counted by the metrics observer; they make no span. */
  handshakeFailed(): void {
    // nothing to trace: no connection was admitted
  }
}

class TracedConnection implements ObservedConnection {
  readonly #t: Pick<Tracing, 'tracer' | 'tunnelPropagator' | 'context'>;
  readonly #node: string;
  readonly #startedAt: number;
  readonly #incoming: TraceCarrier | undefined;
  #span: api.Span | undefined;
  #bytes: ByteSource | undefined;
  #requestFromReads = true;
  #done = false;

  constructor(t: Pick<Tracing, 'tracer' | 'tunnelPropagator' | 'context'>, node: string, startedAt: number, incoming: TraceCarrier | undefined) {
    this.#t = t;
    this.#node = node;
    this.#startedAt = startedAt;
    this.#incoming = incoming;
  }

  /** Started at the first of identify, traceHeaders or finish, back-dated to the accept. */
  #start(kind: number, name: string): api.Span {
    if (this.#span !== undefined) return this.#span;
    const { context, tunnelPropagator, tracer } = this.#t;
    const parent = this.#incoming === undefined ? context.root() : tunnelPropagator.extract(context.root(), this.#incoming, getter);
    this.#span = tracer.startSpan(name, { kind, startTime: this.#startedAt, attributes: { 'network.transport': 'tcp', 'weft.node': this.#node } }, parent);
    return this.#span;
  }

  identify(d: ConnectionDescription): void {
    if (this.#done) return;
    const target = d.service?.host ?? d.destination.workload ?? d.destination.address ?? 'unknown';
    const span = this.#start(d.reporter === 'destination' ? KIND.SERVER : KIND.CLIENT, `tcp ${target}`);
    span.updateName(`tcp ${target}`);
    const [dstHost, dstPort] = splitHostPort(d.destination.address);
    const [srcHost, srcPort] = splitHostPort(d.source.address);
    const attributes: api.Attributes = {
      'weft.reporter': d.reporter,
      'weft.connection_security_policy': d.security,
      'server.address': d.service?.host ?? dstHost,
      'server.port': dstPort,
      'client.address': srcHost,
      'client.port': srcPort,
      // The peer of this agent's socket: the client on the destination side, the server on the source side.
      'network.peer.address': d.reporter === 'destination' ? srcHost : dstHost,
      'network.peer.port': d.reporter === 'destination' ? srcPort : dstPort,
      ...peerAttributes(d.source, d.destination, d.service),
    };
    setKnown(span, attributes);
  }

  countBytes(source: ByteSource, facing: 'client' | 'server'): void {
    this.#bytes = source;
    this.#requestFromReads = facing === 'client';
  }

  traceHeaders(): Record<string, string> {
    const span = this.#start(KIND.CLIENT, 'tcp');
    const carrier: Record<string, string> = {};
    const { context, tunnelPropagator } = this.#t;
    tunnelPropagator.inject(context.setSpan(context.root(), span), carrier, setter);
    return carrier;
  }

  finish(flags: string, detail?: string): void {
    if (this.#done) return;
    this.#done = true;
    const span = this.#start(KIND.INTERNAL, 'tcp unknown');
    span.setAttribute('weft.response_flags', flags);
    const b = this.#bytes;
    if (b !== undefined) {
      span.setAttribute('weft.bytes_received', this.#requestFromReads ? b.bytesRead : b.bytesWritten);
      span.setAttribute('weft.bytes_sent', this.#requestFromReads ? b.bytesWritten : b.bytesRead);
    }
    if (flags !== '-') span.setStatus({ code: STATUS_ERROR, message: detail === undefined ? flags : `${flags}: ${detail}` });
    span.end();
  }
}
