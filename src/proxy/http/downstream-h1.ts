// HTTP/1.1 from a captured client connection: one node:http server (never listening; each
// routed connection is handed to it) parses requests, and each request becomes a
// DownstreamRequest plus a sink over its ServerResponse. Keep-alive is the client's to end
// (an hour idle at most); on drain, idle connections close and busy ones say
// `connection: close` on their next response. A connection whose first request has not been
// parsed yet is not idle (its bytes are why it was handed here): that request is answered,
// with `connection: close`, before it ends. Upgrades (WebSocket) and CONNECT leave the
// parser and are handed over raw, to be spliced after the handshake.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

import { first, isGrpc, type OutHeaders } from './headers.ts';
import type { DownstreamRequest } from './exchange.ts';
import type { ResponseHead, ResponseSink } from './messages.ts';
import { RequestBody } from './request-body.ts';

export interface H1Connection {
  /** Serves one request; resolves when its response is over. */
  request(req: DownstreamRequest, sink: ResponseSink, signal: AbortSignal): Promise<void>;
  /** Takes over the socket for an Upgrade or CONNECT request (`head`: bytes after its head). */
  upgrade(req: IncomingMessage, socket: Socket | Duplex, head: Buffer): void;
  /** The parser refused what the client sent. */
  malformed(detail: string): void;
}

interface State {
  readonly hooks: H1Connection;
  readonly socket: Duplex;
  inFlight: number;
  /** Requests parsed so far; before the first, the client's request is waiting in the socket. */
  requests: number;
  draining: boolean;
}

export interface H1DownstreamOptions {
  /** An idle keep-alive client connection closes after this long. Default 1 h (Envoy's idle timeout). */
  readonly keepAliveMs?: number;
  /** The whole request head must arrive within this. Default 60 s. */
  readonly headersTimeoutMs?: number;
}

class H1Sink implements ResponseSink {
  readonly #res: ServerResponse;
  readonly #state: State;
  #started = false;
  #ended = false;
  #bytes = 0;

  constructor(res: ServerResponse, state: State) {
    this.#res = res;
    this.#state = state;
  }

  get started(): boolean {
    return this.#started;
  }

  get bytes(): number {
    return this.#bytes;
  }

  start(head: ResponseHead): void {
    if (this.#started || this.#res.destroyed) return;
    this.#started = true;
    const headers: OutHeaders = this.#state.draining ? { ...head.headers, connection: 'close' } : head.headers;
    try {
      this.#res.writeHead(head.status, headers);
    } catch {
      // A header node refuses to write (it validates characters): nothing sane to send.
      this.abort();
      return;
    }
    if (head.endOfStream) this.end(undefined);
  }

  write(chunk: Buffer): boolean {
    if (this.#ended || this.#res.destroyed) return true;
    this.#bytes += chunk.length;
    return this.#res.write(chunk);
  }

  onDrain(resume: () => void): void {
    this.#res.once('drain', resume);
  }

  end(trailers: OutHeaders | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#res.destroyed) return;
    // Trailers go out only on a chunked response; a sized one drops them, as HTTP/1.1 must.
    if (trailers !== undefined && this.#res.getHeader('content-length') === undefined) {
      try {
        this.#res.addTrailers(trailers);
      } catch {
        // An invalid trailer: leave them out rather than lose the response.
      }
    }
    this.#res.end();
  }

  abort(): void {
    this.#ended = true;
    // HTTP/1.1 cannot reset one request: the connection goes.
    this.#res.destroy();
  }
}

function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const cl = req.headers['content-length'];
  return cl !== undefined && cl !== '0';
}

export class H1Downstream {
  readonly #server: Server;
  readonly #states = new WeakMap<Duplex, State>();

  constructor(options: H1DownstreamOptions = {}) {
    this.#server = createServer({
      keepAliveTimeout: options.keepAliveMs ?? 3_600_000,
      headersTimeout: options.headersTimeoutMs ?? 60_000,
      // Streaming requests and long polls are the routes' business to time out.
      requestTimeout: 0,
    });
    this.#server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res, false));
    this.#server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res, true));
    const handOver = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
      const state = this.#states.get(socket);
      if (state === undefined) socket.destroy();
      else state.hooks.upgrade(req, socket, head);
    };
    this.#server.on('upgrade', handOver);
    this.#server.on('connect', handOver);
    this.#server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
      this.#states.get(socket)?.hooks.malformed(`${err.code ?? 'HPE'}: ${err.message}`);
      if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  /** Starts serving a connection whose first bytes wait unread on the socket. */
  serve(socket: Duplex, hooks: H1Connection): { drain(): void } {
    const state: State = { hooks, socket, inFlight: 0, requests: 0, draining: false };
    this.#states.set(socket, state);
    this.#server.emit('connection', socket);
    return {
      drain: () => {
        state.draining = true;
        // Accepted just before (or while) the listener drained: its request still gets an answer.
        if (state.inFlight === 0 && state.requests > 0) socket.end();
      },
    };
  }

  #onRequest(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const state = this.#states.get(req.socket);
    if (state === undefined) {
      res.destroy();
      return;
    }
    state.inFlight += 1;
    state.requests += 1;
    const aborted = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) aborted.abort();
    });
    let continued = false;
    const request: DownstreamRequest = {
      version: 'h1',
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      authority: first(req.headers.host),
      headers: req.headers,
      grpc: isGrpc(req.headers['content-type']),
      body: hasBody(req) ? new RequestBody(req) : undefined,
      sendContinue: () => {
        if (!expectContinue || continued) return;
        continued = true;
        res.writeContinue();
      },
    };
    if (request.body === undefined) req.resume();
    void state.hooks.request(request, new H1Sink(res, state), aborted.signal).finally(() => {
      state.inFlight -= 1;
      if (!state.draining || state.inFlight > 0) return;
      if (res.writableFinished) state.socket.end();
      else res.once('finish', () => state.socket.end());
    });
  }
}
