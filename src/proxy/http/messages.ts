// The shapes one proxied request takes between the downstream side (node:http or node:http2
// server objects) and an upstream sender (undici for HTTP/1.1, node:http2 for h2 and gRPC):
// the request as sent on, the response head, and the sink the response streams into.

import type { Readable } from 'node:stream';

import type { UpstreamStream } from '../upstream.ts';
import type { OutHeaders } from './headers.ts';

export interface OutgoingRequest {
  readonly method: string;
  /** Path plus query. */
  readonly path: string;
  readonly authority: string | undefined;
  /** End-to-end headers for the upstream's protocol (requestHeadersFor). */
  readonly headers: OutHeaders;
  /** Streamed with backpressure; undefined when the request has no body. */
  readonly body: Readable | undefined;
}

export interface ResponseHead {
  readonly status: number;
  readonly headers: OutHeaders;
  /** The response ends with its head (no body; a gRPC trailers-only response). */
  readonly endOfStream: boolean;
}

/** Where a response goes: the client's hop. Every method is safe after the client left. */
export interface ResponseSink {
  /** The head went out. */
  readonly started: boolean;
  start(head: ResponseHead): void;
  /** False when the client's hop is full: wait for `onDrain`. */
  write(chunk: Buffer): boolean;
  onDrain(resume: () => void): void;
  end(trailers: OutHeaders | undefined): void;
  /** Resets the request (HTTP/2 RST_STREAM; HTTP/1.1 closes the connection). */
  abort(): void;
  /** Bytes of response body written so far. */
  readonly bytes: number;
}

/** How one attempt to an upstream ended. */
export type SendResult =
  | { readonly kind: 'done'; readonly status: number; readonly grpcStatus: string | undefined; readonly headersMs: number }
  /** No response reached the sink (`started` false) or it was cut (`started` true). */
  | { readonly kind: 'failed'; readonly error: unknown; readonly started: boolean };

/** One upstream endpoint's connection pool, of either protocol. */
export interface Sender {
  send(request: OutgoingRequest, sink: ResponseSink, signal: AbortSignal): Promise<SendResult>;
  /** Takes a connected upstream to use before dialling a new one; it is closed if unused for `idleMs`. */
  adopt(connection: UpstreamStream, idleMs: number): void;
  /** Requests in flight (for idle sweeps). */
  readonly busy: boolean;
  /** True once nothing is connected or pending. */
  readonly idle: boolean;
  close(): Promise<void>;
  destroy(): void;
}
