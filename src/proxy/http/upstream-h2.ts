// HTTP/2 (h2c, prior knowledge) to one endpoint, for h2 and gRPC: one node:http2 session
// over a connection from the upstream connector (a direct socket or one tunnel CONNECT
// stream), many requests multiplexed on it; a second session opens only when the first is
// going away. Request bodies stream with backpressure (pipe), responses pause the stream on
// a full client hop, and trailers (grpc-status) pass through.

import {
  connect as h2connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';

import { ProxyErrors, proxyError } from '../errors.ts';
import { first, responseHeadersFor, type OutHeaders } from './headers.ts';
import type { OutgoingRequest, ResponseSink, SendResult, Sender } from './messages.ts';
import type { UpstreamStream } from '../upstream.ts';
import { SpareConnections } from './spare-connections.ts';

export interface H2SenderOptions {
  /** A session without streams closes after this long. Default 60 s. */
  readonly idleMs?: number;
  /** Streams one session carries before it is retired (closed once they finish; DestinationPolicy maxRequestsPerConnection); 0: no limit. */
  readonly maxRequestsPerConnection?: number;
}

type Connect = () => Promise<UpstreamStream>;

const ignore = (): void => undefined;

function isGoingAway(err: unknown): boolean {
  const code = err instanceof Error && 'code' in err ? err.code : undefined;
  return code === 'ERR_HTTP2_GOAWAY_SESSION' || code === 'ERR_HTTP2_INVALID_SESSION';
}

function trailersOf(t: IncomingHttpHeaders | undefined): OutHeaders | undefined {
  if (t === undefined) return undefined;
  const out = responseHeadersFor(t);
  return Object.keys(out).length === 0 ? undefined : out;
}

export class H2Sender implements Sender {
  readonly #authority: string;
  readonly #connect: Connect;
  readonly #idleMs: number;
  readonly #maxRequests: number;
  /** Streams opened on the live session. */
  #served = 0;
  /** Streams open per session, while maxRequestsPerConnection is kept. */
  readonly #openStreams = new WeakMap<ClientHttp2Session, number>();
  readonly #retired = new WeakSet<ClientHttp2Session>();
  #session: Promise<ClientHttp2Session> | undefined;
  #live: ClientHttp2Session | undefined;
  #inFlight = 0;
  #idle: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #spare = new SpareConnections();

  constructor(authority: string, connect: Connect, options: H2SenderOptions = {}) {
    this.#authority = authority;
    this.#connect = connect;
    this.#idleMs = options.idleMs ?? 60_000;
    this.#maxRequests = options.maxRequestsPerConnection ?? 0;
  }

  adopt(connection: UpstreamStream, idleMs: number): void {
    this.#spare.add(connection, idleMs);
  }

  get busy(): boolean {
    return this.#inFlight > 0;
  }

  get idle(): boolean {
    return this.#inFlight === 0 && this.#session === undefined && this.#spare.size === 0;
  }

  #sessionFor(): Promise<ClientHttp2Session> {
    const live = this.#live;
    if (live !== undefined && !live.closed && !live.destroyed) return Promise.resolve(live);
    this.#session ??= this.#open();
    return this.#session;
  }

  async #open(): Promise<ClientHttp2Session> {
    let stream: UpstreamStream;
    try {
      stream = this.#spare.take() ?? await this.#connect();
    } catch (err: unknown) {
      this.#session = undefined;
      throw err;
    }
    const session = h2connect(`http://${this.#authority}`, { createConnection: () => stream });
    session.on('error', ignore);
    // Only while it is the live one: a retired session closing must not drop the one opening after it.
    const forget = (): void => {
      if (this.#live !== session) return;
      this.#live = undefined;
      this.#session = undefined;
    };
    // GOAWAY: finish what runs on it, open a new session for what comes next.
    session.once('goaway', forget);
    session.once('close', forget);
    this.#live = session;
    this.#served = 0;
    if (this.#closed) session.close();
    return session;
  }

  async send(request: OutgoingRequest, sink: ResponseSink, signal: AbortSignal): Promise<SendResult> {
    this.#inFlight += 1;
    clearTimeout(this.#idle);
    try {
      let session: ClientHttp2Session;
      try {
        session = await this.#sessionFor();
        // Retired while this request waited for it: the next one.
        while (this.#retired.has(session)) session = await this.#sessionFor();
      } catch (err: unknown) {
        return { kind: 'failed', error: err, started: false };
      }
      // Latency for the balancer counts from a ready session: a first request that also paid
      // for the connection (tunnel, handshake) must not mark the endpoint slow for seconds.
      const t0 = performance.now();
      const headers: OutgoingHttpHeaders = {
        ...request.headers,
        [h2.HTTP2_HEADER_METHOD]: request.method,
        [h2.HTTP2_HEADER_PATH]: request.path,
        [h2.HTTP2_HEADER_SCHEME]: 'http',
      };
      if (request.authority !== undefined) headers[h2.HTTP2_HEADER_AUTHORITY] = request.authority;
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: request.body === undefined, signal });
      } catch (err: unknown) {
        // A session that just went away takes no stream: nothing was sent.
        return { kind: 'failed', error: isGoingAway(err) ? proxyError(ProxyErrors.STREAM_REFUSED, 'the upstream session is going away', err) : err, started: false };
      }
      if (this.#maxRequests > 0) this.#countStream(session, stream);
      return await this.#exchange(stream, request, sink, signal, t0);
    } finally {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) this.#idleLater();
    }
  }

  /**
   * maxRequestsPerConnection: the session that has taken its last stream is retired (the next
   * request opens a new one) and closed once its streams are done. Not closed at once: a
   * GOAWAY sent right behind streams the server has not yet taken makes node's server refuse them.
   */
  #countStream(session: ClientHttp2Session, stream: ClientHttp2Stream): void {
    const open = (this.#openStreams.get(session) ?? 0) + 1;
    this.#openStreams.set(session, open);
    stream.once('close', () => {
      const left = (this.#openStreams.get(session) ?? 1) - 1;
      this.#openStreams.set(session, left);
      if (left === 0 && session !== this.#live) session.close();
    });
    if (session === this.#live && ++this.#served >= this.#maxRequests) {
      this.#retired.add(session);
      this.#live = undefined;
      this.#session = undefined;
    }
  }

  #exchange(stream: ClientHttp2Stream, request: OutgoingRequest, sink: ResponseSink, signal: AbortSignal, t0: number): Promise<SendResult> {
    return new Promise<SendResult>((resolve) => {
      let status = 0;
      let headersMs = 0;
      let grpcHeaderStatus: string | undefined;
      let trailers: OutHeaders | undefined;
      let error: unknown;
      let ended = false;
      stream.on('error', (err: unknown) => {
        error ??= err;
      });
      stream.once('response', (h: IncomingHttpHeaders, flags: number) => {
        status = Number(h[h2.HTTP2_HEADER_STATUS]);
        headersMs = performance.now() - t0;
        grpcHeaderStatus = first(h['grpc-status']);
        sink.start({ status, headers: responseHeadersFor(h), endOfStream: (flags & h2.NGHTTP2_FLAG_END_STREAM) !== 0 });
        // Only now: node emits 'response' a tick after DATA that came in the same read.
        stream.on('data', (chunk: Buffer) => {
          if (!sink.write(chunk)) {
            stream.pause();
            sink.onDrain(() => stream.resume());
          }
        });
      });
      stream.once('trailers', (t: IncomingHttpHeaders) => {
        trailers = trailersOf(t);
      });
      stream.once('end', () => {
        ended = true;
      });
      stream.once('close', () => {
        const clean = ended && stream.rstCode === h2.NGHTTP2_NO_ERROR && status !== 0;
        if (clean) {
          sink.end(trailers);
          resolve({ kind: 'done', status, grpcStatus: first(trailers?.['grpc-status']) ?? grpcHeaderStatus, headersMs });
        } else if (!sink.started && (stream.rstCode === h2.NGHTTP2_REFUSED_STREAM || isGoingAway(error))) {
          // Never processed by the server: safe to send again, whatever the method.
          resolve({ kind: 'failed', error: proxyError(ProxyErrors.STREAM_REFUSED, `the upstream refused the stream (rst ${stream.rstCode ?? '?'})`, error), started: false });
        } else {
          resolve({ kind: 'failed', error: error ?? new Error(`upstream stream closed (rst ${stream.rstCode ?? '?'})`), started: sink.started });
        }
      });
      const body = request.body;
      if (body !== undefined) {
        body.once('error', () => stream.close(h2.NGHTTP2_CANCEL));
        // pipe() pauses the body while the stream's window is full.
        body.pipe(stream);
        // The client reset its request: the upstream stream goes too.
        body.once('close', () => {
          if (!body.readableEnded && !stream.closed) stream.close(h2.NGHTTP2_CANCEL);
        });
      }
      if (signal.aborted) stream.close(h2.NGHTTP2_CANCEL);
    });
  }

  #idleLater(): void {
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      if (this.#inFlight > 0) return;
      const s = this.#live;
      this.#live = undefined;
      this.#session = undefined;
      s?.close();
    }, this.#idleMs);
    this.#idle.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#spare.destroyAll();
    clearTimeout(this.#idle);
    const s = await this.#session?.catch(() => undefined);
    if (s === undefined || s.destroyed) return;
    await new Promise<void>((resolve) => {
      s.once('close', resolve);
      s.close();
    });
  }

  destroy(): void {
    this.#closed = true;
    this.#spare.destroyAll();
    clearTimeout(this.#idle);
    this.#live?.destroy();
    void this.#session?.then((s) => s.destroy(), ignore);
  }
}
