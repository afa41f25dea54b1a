// HTTP/2 with prior knowledge (h2c) from a captured client connection: a server session is
// set up on the socket (its preface waits unread there) and each stream becomes a
// DownstreamRequest plus a sink over the stream: respond, DATA with the stream's flow
// control as backpressure, trailers (gRPC status) when the response has them, RST_STREAM
// to cut one request without touching the others. On drain: GOAWAY, streams finish. A
// connection handed over with its first request still unread (the sniff saw it) is not idle:
// the GOAWAY waits until that request's stream is open (or FIRST_REQUEST_WAIT_MS), so it is
// answered rather than refused.

import {
  constants as h2, performServerHandshake, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Duplex } from 'node:stream';

import { first, isGrpc, type OutHeaders } from './headers.ts';
import type { DownstreamRequest } from './exchange.ts';
import type { ResponseHead, ResponseSink } from './messages.ts';
import { RequestBody } from './request-body.ts';

export interface H2Connection {
  request(req: DownstreamRequest, sink: ResponseSink, signal: AbortSignal): Promise<void>;
  /** The peer broke the HTTP/2 protocol (the session is gone). */
  malformed(detail: string): void;
}

const ignore = (): void => undefined;

class H2Sink implements ResponseSink {
  readonly #stream: ServerHttp2Stream;
  readonly #grpc: boolean;
  #started = false;
  #ended = false;
  #bytes = 0;
  #trailers: OutHeaders | undefined;

  constructor(stream: ServerHttp2Stream, grpc: boolean) {
    this.#stream = stream;
    this.#grpc = grpc;
  }

  get started(): boolean {
    return this.#started;
  }

  get bytes(): number {
    return this.#bytes;
  }

  start(head: ResponseHead): void {
    if (this.#started || this.#stream.destroyed) return;
    this.#started = true;
    const headers: OutgoingHttpHeaders = { ...head.headers, [h2.HTTP2_HEADER_STATUS]: head.status };
    // Wait for trailers only where they come (gRPC, or a response announcing them).
    const waitForTrailers = !head.endOfStream && (this.#grpc || isGrpc(head.headers['content-type']) || head.headers.trailer !== undefined);
    try {
      this.#stream.respond(headers, { endStream: head.endOfStream, waitForTrailers });
    } catch {
      this.abort();
      return;
    }
    if (waitForTrailers) {
      this.#stream.once('wantTrailers', () => {
        try {
          this.#stream.sendTrailers(this.#trailers ?? {});
        } catch {
          this.#stream.close();
        }
      });
    }
    if (head.endOfStream) this.#ended = true;
  }

  write(chunk: Buffer): boolean {
    if (this.#ended || this.#stream.destroyed) return true;
    this.#bytes += chunk.length;
    return this.#stream.write(chunk);
  }

  onDrain(resume: () => void): void {
    this.#stream.once('drain', resume);
  }

  end(trailers: OutHeaders | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#trailers = trailers;
    if (!this.#stream.destroyed) this.#stream.end();
  }

  abort(): void {
    this.#ended = true;
    if (!this.#stream.destroyed) this.#stream.close(h2.NGHTTP2_INTERNAL_ERROR);
  }
}

export interface H2DownstreamOptions {
  /** Streams a client may open at once. Default 1,000. */
  readonly maxConcurrentStreams?: number;
}

/** How long a drain waits for the first stream of a connection handed over with its request unread. */
const FIRST_REQUEST_WAIT_MS = 1000;

/** Starts serving an h2c connection; returns how to drain it. */
export function serveH2(socket: Duplex, hooks: H2Connection, options: H2DownstreamOptions = {}): { drain(): void } {
  const session: ServerHttp2Session = performServerHandshake(socket, {
    settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? 1000 },
  });
  let streams = 0;
  session.on('error', (err: Error) => hooks.malformed(err.message));
  session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    streams++;
    onStream(stream, headers, hooks);
  });
  // GOAWAY names the last stream processed so far: streams after it are refused.
  const close = (): void => {
    if (!session.closed && !session.destroyed) session.close();
  };
  return {
    drain: () => {
      if (streams > 0) {
        close();
        return;
      }
      // Once the first stream is open, let the rest of the bytes read with it be processed too.
      const timer = setTimeout(close, FIRST_REQUEST_WAIT_MS);
      timer.unref();
      session.once('stream', () => {
        clearTimeout(timer);
        setImmediate(close);
      });
    },
  };
}

function onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, hooks: H2Connection): void {
  stream.on('error', ignore);
  const aborted = new AbortController();
  stream.once('close', () => {
    if (stream.rstCode !== h2.NGHTTP2_NO_ERROR) aborted.abort();
  });
  const method = String(headers[h2.HTTP2_HEADER_METHOD] ?? 'GET');
  if (method === 'CONNECT') {
    // Extended CONNECT (WebSocket over HTTP/2) and plain CONNECT are not proxied (yet).
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 501 }, { endStream: true });
    return;
  }
  const grpc = isGrpc(headers['content-type']);
  const request: DownstreamRequest = {
    version: 'h2',
    method,
    path: String(headers[h2.HTTP2_HEADER_PATH] ?? '/'),
    authority: first(headers[h2.HTTP2_HEADER_AUTHORITY]) ?? first(headers.host),
    headers,
    grpc,
    body: stream.endAfterHeaders ? undefined : new RequestBody(stream),
    sendContinue: ignore,
  };
  if (request.body === undefined) stream.resume();
  void hooks.request(request, new H2Sink(stream, grpc), aborted.signal);
}
