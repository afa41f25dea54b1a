// HTTP/1.1 to one endpoint: an undici Pool (keep-alive, pipelining off, as many connections
// as requests in flight) whose connections come from the upstream connector, so a pooled
// connection is a direct socket or one tunnel CONNECT stream that later requests reuse.
// Bodies stream both ways with backpressure (undici pauses on a full client hop).

import type { Socket } from 'node:net';

import { Pool, type Dispatcher } from 'undici';

import { first, responseHeadersFor, type OutHeaders } from './headers.ts';
import type { OutgoingRequest, ResponseSink, SendResult, Sender } from './messages.ts';
import type { UpstreamStream } from '../upstream.ts';
import { SpareConnections } from './spare-connections.ts';

export interface H1SenderOptions {
  /** Idle pooled connections close after this long (a server's Keep-Alive hint may shorten it). Default 60 s. */
  readonly keepAliveMs?: number;
  /** Requests one connection carries before it is closed (DestinationPolicy maxRequestsPerConnection); 0: no limit. */
  readonly maxRequestsPerConnection?: number;
}

type Connect = () => Promise<UpstreamStream>;

function trailersOf(t: Record<string, string | string[] | undefined> | undefined): OutHeaders | undefined {
  if (t === undefined) return undefined;
  const out = responseHeadersFor(t);
  return Object.keys(out).length === 0 ? undefined : out;
}

export class H1Sender implements Sender {
  readonly #pool: Pool;
  readonly #spare = new SpareConnections();
  #inFlight = 0;
  /** maxRequestsPerConnection 1: every request closes its connection. */
  readonly #closeEach: boolean;

  constructor(origin: string, connect: Connect, options: H1SenderOptions = {}) {
    const maxRequests = options.maxRequestsPerConnection ?? 0;
    this.#closeEach = maxRequests === 1;
    this.#pool = new Pool(origin, {
      pipelining: 1,
      // Timeouts are the route's business (and issue 11's deadlines), not the pool's.
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: options.keepAliveMs ?? 60_000,
      keepAliveMaxTimeout: options.keepAliveMs ?? 60_000,
      strictContentLength: true,
      // undici closes a connection after maxRequestsPerClient + 1 requests (it marks the one
      // that finds the count already there); 1 cannot be said that way, so each request says
      // `connection: close` itself (reset).
      ...(maxRequests > 1 ? { maxRequestsPerClient: maxRequests - 1 } : {}),
      connect: (_opts, callback) => {
        const spare = this.#spare.take();
        (spare === undefined ? connect() : Promise.resolve(spare)).then(
          // undici reads, writes, corks and destroys it; a tunnel stream does all of that too.
          (stream) => callback(null, stream as Socket),
          (err: unknown) => callback(err instanceof Error ? err : new Error(String(err)), null),
        );
      },
    });
  }

  adopt(connection: UpstreamStream, idleMs: number): void {
    this.#spare.add(connection, idleMs);
  }

  get busy(): boolean {
    return this.#inFlight > 0;
  }

  get idle(): boolean {
    const s = this.#pool.stats;
    return this.#inFlight === 0 && s.connected === 0 && s.size === 0 && this.#spare.size === 0;
  }

  send(request: OutgoingRequest, sink: ResponseSink, signal: AbortSignal): Promise<SendResult> {
    this.#inFlight += 1;
    return new Promise<SendResult>((resolve) => {
      const exchange = new H1Exchange(sink, signal, (r) => {
        this.#inFlight -= 1;
        resolve(r);
      });
      try {
        this.#pool.dispatch({
          method: request.method, path: request.path, headers: request.headers,
          body: request.body ?? null, ...(this.#closeEach ? { reset: true } : {}),
        }, exchange);
      } catch (err: unknown) {
        exchange.settle({ kind: 'failed', error: err, started: false });
      }
    });
  }

  close(): Promise<void> {
    this.#spare.destroyAll();
    return this.#pool.close();
  }

  destroy(): void {
    this.#spare.destroyAll();
    void this.#pool.destroy().catch(() => undefined);
  }
}

/**
 * One request's undici handler: a class rather than a handler of closures, since one is made
 * per request (its methods are shared; only its fields are new).
 */
class H1Exchange implements Dispatcher.DispatchHandler {
  readonly #sink: ResponseSink;
  readonly #signal: AbortSignal;
  readonly #done: (r: SendResult) => void;
  #t0 = performance.now();
  #settled = false;
  #headersMs = 0;
  #status = 0;
  #grpcHeaderStatus: string | undefined;
  #controller: Dispatcher.DispatchController | undefined;
  readonly #onAbort = (): void => this.#controller?.abort(new Error('request abandoned'));

  constructor(sink: ResponseSink, signal: AbortSignal, done: (r: SendResult) => void) {
    this.#sink = sink;
    this.#signal = signal;
    this.#done = done;
    signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  settle(r: SendResult): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#signal.removeEventListener('abort', this.#onAbort);
    this.#done(r);
  }

  onRequestStart(c: Dispatcher.DispatchController): void {
    // undici starts the request once a connection is ready: the balancer's latency
    // counts from here, not from a connect the first request had to wait for.
    this.#t0 = performance.now();
    this.#controller = c;
    if (this.#signal.aborted) c.abort(new Error('request abandoned'));
  }

  onResponseStart(c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx are not forwarded: the proxy answers 100-continue itself.
    if (statusCode < 200) return;
    this.#status = statusCode;
    this.#headersMs = performance.now() - this.#t0;
    this.#grpcHeaderStatus = first(headers['grpc-status']);
    this.#sink.start({ status: statusCode, headers: responseHeadersFor(headers), endOfStream: false });
    if (this.#signal.aborted) c.abort(new Error('request abandoned'));
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#sink.write(chunk)) {
      c.pause();
      this.#sink.onDrain(() => c.resume());
    }
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    const t = trailersOf(trailers);
    this.#sink.end(t);
    this.settle({ kind: 'done', status: this.#status, grpcStatus: first(t?.['grpc-status']) ?? this.#grpcHeaderStatus, headersMs: this.#headersMs });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.settle({ kind: 'failed', error: err, started: this.#sink.started });
  }
}
