// One request in flight through the HTTP layer, and the pipeline of steps it passes:
// each step may look at or change the request, answer it itself (a local reply), or pass
// it on with next(). The layer composes [route, forward] today; retries and budgets,
// deadlines, circuit breaking, L7 authorization, rate limits and fault injection (issue 11)
// are further steps between the two, composed at wiring time.

import type { LiveConnection } from '../connection-registry.ts';
import type { PeerRef, ServiceRef } from '../contracts.ts';
import type { Destination } from '../outbound-route.ts';
import type { RequestHeaders, RequestRecord, RouteDecision } from './contracts.ts';
import type { OutHeaders } from './headers.ts';
import type { ResponseSink } from './messages.ts';
import type { RequestBody } from './request-body.ts';

/** The connection a request came on, as the steps see it (either side of the mesh). */
export interface HttpConnection {
  readonly reporter: 'source' | 'destination';
  /** Who calls, as telemetry labels it. */
  readonly source: PeerRef;
  /** The calling SPIFFE id: the tunnel's client certificate on the source side, the verified peer on the destination side. */
  readonly sourceIdentity: string;
  readonly sourceNamespace: string | undefined;
  readonly clientIp: string;
  /** Where the client was going (a Service VIP, a pod). */
  readonly destination: Destination;
  readonly service: ServiceRef | undefined;
  /** Check policy per request and endpoint (the source side; the destination side admitted the stream). */
  readonly checkPolicy: boolean;
  /** How every hop of this connection is secured, when the connection decides it (the destination side: the tunnel). */
  readonly security: 'mutual_tls' | 'none' | 'unknown' | undefined;
  /**
   * The upstream pools' scope of this connection (the destination side: its tunnel stream),
   * whose pod connections close with it; absent: the shared pools.
   */
  readonly upstreamScope?: string;
}

/** The request as the client sent it (never changed; steps change `Exchange.outgoing`). */
export interface DownstreamRequest {
  readonly version: 'h1' | 'h2';
  /** Upper case. */
  readonly method: string;
  /** Path plus query. */
  readonly path: string;
  readonly authority: string | undefined;
  readonly headers: RequestHeaders;
  readonly grpc: boolean;
  /** Undefined when the request has no body. */
  readonly body: RequestBody | undefined;
  /** Tells an HTTP/1.1 client that sent `Expect: 100-continue` to send its body (once; no-op otherwise). */
  sendContinue(): void;
}

/** What the request will look like upstream; steps edit it (rewrite, header modifiers). */
export interface OutgoingParts {
  path: string;
  authority: string | undefined;
  /** End-to-end headers, protocol-neutral (host / te are set per upstream protocol). */
  headers: OutHeaders;
}

export class Exchange {
  readonly connection: HttpConnection;
  readonly live: LiveConnection;
  readonly request: DownstreamRequest;
  /** Where the response goes; a step may put a wrapper in place for the rest of the pipeline (retries hold back an attempt's response). */
  sink: ResponseSink;
  readonly record: RequestRecord;
  /** Fires when the client reset the request or the connection is being torn down. */
  readonly signal: AbortSignal;
  readonly outgoing: OutgoingParts;
  decision: RouteDecision | undefined;
  /** A ResponseFlags value for the record. */
  flags = '-';
  detail: string | undefined;
  /** `ip:port` of the endpoint that answered. */
  upstream: string | undefined;
  /** Attempts beyond the first. */
  retries = 0;
  status = 0;
  grpcStatus: string | undefined;
  /** Who answered, as telemetry labels it (filled in by the forward step). */
  destination: PeerRef = {};
  service: ServiceRef | undefined;
  security: 'mutual_tls' | 'none' | 'unknown' = 'unknown';
  /** Monotonic ms (performance.now) when the request's head arrived: deadlines count from here. */
  readonly arrivedAt = performance.now();

  constructor(
    connection: HttpConnection, live: LiveConnection, request: DownstreamRequest, sink: ResponseSink, record: RequestRecord,
    signal: AbortSignal, outgoing: OutgoingParts,
  ) {
    this.connection = connection;
    this.live = live;
    this.request = request;
    this.sink = sink;
    this.record = record;
    this.signal = signal;
    this.outgoing = outgoing;
  }
}

export type RequestStep = (x: Exchange, next: () => Promise<void>) => Promise<void>;

/** Runs `steps` in order; the last step's next() does nothing. */
export function composeSteps(steps: readonly RequestStep[]): (x: Exchange) => Promise<void> {
  return (x) => {
    const run = (i: number): Promise<void> => {
      const step = steps[i];
      return step === undefined ? Promise.resolve() : step(x, () => run(i + 1));
    };
    return run(0);
  };
}
