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
    let t0 = performance.now();
    return new Promise<SendResult>((resolve) => {
      let settled = false;
      let headersMs = 0;
      let status = 0;
      let grpcHeaderStatus: string | undefined;
      const settle = (r: SendResult): void => {
        if (settled) return;
        settled = true;
        this.#inFlight -= 1;
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      };
      let controller: Dispatcher.DispatchController | undefined;
      const onAbort = (): void => controller?.abort(new Error('request abandoned'));
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: (c) => {
          // undici starts the request once a connection is ready: the balancer's latency
          // counts from here, not from a connect the first request had to wait for.
          t0 = performance.now();
          controller = c;
          if (signal.aborted) c.abort(new Error('request abandoned'));
        },
        onResponseStart: (c, statusCode, headers) => {
          // 1xx are not forwarded: the proxy answers 100-continue itself.
          if (statusCode < 200) return;
          status = statusCode;
          headersMs = performance.now() - t0;
          grpcHeaderStatus = first(headers['grpc-status']);
          sink.start({ status: statusCode, headers: responseHeadersFor(headers), endOfStream: false });
          if (signal.aborted) c.abort(new Error('request abandoned'));
        },
        onResponseData: (c, chunk) => {
          if (!sink.write(chunk)) {
            c.pause();
            sink.onDrain(() => c.resume());
          }
        },
        onResponseEnd: (_c, trailers) => {
          const t = trailersOf(trailers);
          sink.end(t);
          settle({ kind: 'done', status, grpcStatus: first(t?.['grpc-status']) ?? grpcHeaderStatus, headersMs });
        },
        onResponseError: (_c, err) => settle({ kind: 'failed', error: err, started: sink.started }),
      };
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        this.#pool.dispatch({
          method: request.method, path: request.path, headers: request.headers,
          body: request.body ?? null, ...(this.#closeEach ? { reset: true } : {}),
        }, handler);
      } catch (err: unknown) {
        settle({ kind: 'failed', error: err, started: false });
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
