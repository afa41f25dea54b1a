// Pooled tunnel sessions. One TLS+HTTP/2 session per (source identity, destination identity,
// destination agent address) carries up to maxStreamsPerSession CONNECT streams; past that a
// second session opens. Sessions close after idleTimeoutMs without streams, stop taking new
// streams on GOAWAY or when the source certificate rotates, and a stream that fails because
// its session broke before being answered is retried once on a fresh session.

import { constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { X509Certificate } from 'node:crypto';
import { resetSide } from './splice.ts';
import { endSession } from './session-end.ts';
import type { SecureContext, TLSSocket } from 'node:tls';

import { isWeftError } from '../core/errors.ts';
import type { ConnectionObserver, TunnelCredentials } from './contracts.ts';
import { ProxyErrors, TunnelHandshakeError, TunnelRefusedError, proxyError } from './errors.ts';
import { dialTunnel } from './tunnel-dial.ts';
import { HandshakeReasons } from './handshake-reasons.ts';
import { SessionGuard } from './tunnel-session.ts';
import { hostPort, tunnelTuning, type TunnelTuning } from './tunnel-tuning.ts';

export interface TunnelPoolOptions {
  /** Idle sessions close after this long. Default 5 min. */
  readonly idleTimeoutMs?: number;
  /** TCP connect plus TLS handshake. Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** From sending CONNECT to the peer's answer (it connects to the pod meanwhile). Default 10 s. */
  readonly responseTimeoutMs?: number;
  readonly tuning?: Partial<TunnelTuning>;
}

export interface TunnelPoolDeps {
  readonly credentials: TunnelCredentials;
  /** Told about refused handshakes, and sessions a revocation ended (reason `revoked`). */
  readonly observer?: Pick<ConnectionObserver, 'handshakeFailed'>;
}

export interface TunnelRequest {
  readonly sourceIdentity: string;
  readonly destinationIdentity: string;
  /** The destination node's agent. */
  readonly node: { readonly address: string; readonly port: number };
  /** The pod behind it: the CONNECT `:authority`. */
  readonly target: { readonly address: string; readonly port: number };
  /** The original client address, sent as `Forwarded: for=`. */
  readonly forwardedFor?: string;
  /** Trace context for the CONNECT (`traceparent`, `tracestate`); pseudo-headers are never taken from here. */
  readonly traceHeaders?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  /** The stream carries HTTP of this version: sent as the `weft-l7` header, so the peer reports requests. */
  readonly l7?: 'http1' | 'h2';
}

/** The CONNECT header that says a tunnel stream carries HTTP (`http1` or `h2`). */
export const L7_HEADER = 'weft-l7';

export interface TunnelPoolStats {
  /** Sessions open or opening. */
  readonly sessions: number;
  /** Streams open or being opened. */
  readonly streams: number;
}

interface Entry {
  readonly key: string;
  readonly context: SecureContext;
  readonly ready: Promise<ClientHttp2Session>;
  session: ClientHttp2Session | undefined;
  streams: number;
  /** The streams open on it (a revocation resets them before it ends the session). */
  readonly open: Set<ClientHttp2Stream>;
  /** The peer agent's certificate, once verified. */
  peerCertificate: X509Certificate | undefined;
  usable: boolean;
  idle: NodeJS.Timeout | undefined;
}

const ignore = (): void => undefined;
/** The only extra CONNECT headers a caller may set. */
const TRACE_HEADERS: ReadonlySet<string> = new Set(['traceparent', 'tracestate', 'baggage']);

function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) throw proxyError(ProxyErrors.BAD_OPTION, `tunnel pool option ${name} must be a positive number, got ${v}`);
  return v;
}

function forwardedFor(ip: string): string {
  return ip.includes(':') ? `for="[${ip}]"` : `for=${ip}`;
}

export class TunnelPool {
  readonly #deps: TunnelPoolDeps;
  readonly #idleMs: number;
  readonly #connectMs: number;
  readonly #responseMs: number;
  readonly #tuning: TunnelTuning;
  readonly #entries = new Map<string, Entry[]>();
  readonly #guard = new SessionGuard();
  #closed = false;

  constructor(deps: TunnelPoolDeps, options: TunnelPoolOptions = {}) {
    this.#deps = deps;
    this.#idleMs = positive('idleTimeoutMs', options.idleTimeoutMs ?? 300_000);
    this.#connectMs = positive('connectTimeoutMs', options.connectTimeoutMs ?? 5_000);
    this.#responseMs = positive('responseTimeoutMs', options.responseTimeoutMs ?? 10_000);
    this.#tuning = tunnelTuning(options.tuning);
  }

  /** Resolves with a CONNECT stream the peer answered 200, or rejects with a WeftError. */
  async open(req: TunnelRequest): Promise<ClientHttp2Stream> {
    const context = this.#deps.credentials.secureContext(req.sourceIdentity);
    if (context === undefined) {
      throw proxyError(ProxyErrors.NO_CREDENTIALS, `no certificate for ${req.sourceIdentity} on this node`);
    }
    const key = `${req.sourceIdentity}\n${req.destinationIdentity}\n${hostPort(req.node.address, req.node.port)}`;
    const headers: OutgoingHttpHeaders = {
      [h2.HTTP2_HEADER_METHOD]: h2.HTTP2_METHOD_CONNECT,
      [h2.HTTP2_HEADER_AUTHORITY]: hostPort(req.target.address, req.target.port),
    };
    if (req.forwardedFor !== undefined) headers.forwarded = forwardedFor(req.forwardedFor);
    if (req.l7 !== undefined) headers[L7_HEADER] = req.l7;
    for (const [name, value] of Object.entries(req.traceHeaders ?? {})) if (TRACE_HEADERS.has(name)) headers[name] = value;

    for (let attempt = 0; ; attempt++) {
      if (this.#closed) throw proxyError(ProxyErrors.POOL_CLOSED, 'the tunnel pool is closed');
      const entry = this.#entryFor(key, context, req);
      this.#reserve(entry);
      let stream: ClientHttp2Stream | undefined;
      try {
        // Ready sessions skip the promise: one fewer microtask and listener per stream.
        const session = entry.session ?? await abortable(entry.ready, req.signal);
        stream = session.request(headers, { endStream: false });
        stream.on('error', ignore);
        this.#guard.track(stream);
        const opened = stream;
        entry.open.add(opened);
        stream.once('close', () => {
          entry.open.delete(opened);
          this.#release(entry);
        });
        const status = await this.#answer(stream, req.signal);
        if (status !== 200) throw new TunnelRefusedError(status, `${hostPort(req.node.address, req.node.port)} answered ${status} to CONNECT ${hostPort(req.target.address, req.target.port)}`);
        return stream;
      } catch (err: unknown) {
        if (stream === undefined) this.#release(entry);
        else if (!stream.destroyed) stream.close(h2.NGHTTP2_CANCEL);
        if (attempt === 0 && isSessionBreak(err)) {
          entry.usable = false;
          continue;
        }
        // The peer answers (503) well before this unless the session itself is stuck.
        if (isWeftError(err, ProxyErrors.CONNECT_TIMEOUT) && stream !== undefined) this.#retire(entry);
        throw err;
      }
    }
  }

  /**
   * Ends, at once, every session that used a certificate `revoked` says is revoked: the
   * peer agent's, or the one this node presented. Streams on them are reset. Returns how many.
   */
  closeRevoked(revoked: (certificate: X509Certificate) => boolean): number {
    let n = 0;
    for (const list of this.#entries.values()) {
      for (const e of list) {
        const peer = e.peerCertificate;
        const own = (e.session?.socket as TLSSocket | undefined)?.getX509Certificate();
        if ((peer === undefined || !revoked(peer)) && (own === undefined || !revoked(own))) continue;
        e.usable = false;
        // Counted here as the serving side counts it: whichever agent learns of the CRL first
        // ends the session, and the other sees only a close.
        const [, destination, node] = e.key.split('\n');
        const serial = peer !== undefined && revoked(peer) ? peer.serialNumber : own?.serialNumber ?? '?';
        this.#deps.observer?.handshakeFailed(HandshakeReasons.REVOKED, `tunnel to ${node ?? '?'} (${destination ?? '?'}): session ended, certificate ${serial} revoked`);
        // RST_STREAM each stream first: the peer resets its pod side instead of reading a clean end.
        for (const s of [...e.open]) resetSide(s);
        if (e.session !== undefined) endSession(e.session);
        n++;
      }
    }
    return n;
  }

  stats(): TunnelPoolStats {
    let sessions = 0;
    let streams = 0;
    for (const list of this.#entries.values()) {
      sessions += list.length;
      for (const e of list) streams += e.streams;
    }
    return { sessions, streams };
  }

  /** Stops new streams; resolves when every session has closed (open streams run to their end). */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#entries.values()].flat();
    await Promise.all(all.map(async (e) => {
      e.usable = false;
      clearTimeout(e.idle);
      const session = await e.ready.catch(() => undefined);
      if (session === undefined || session.destroyed) return;
      await new Promise<void>((resolve) => {
        session.once('close', resolve);
        session.close();
      });
    }));
  }

  /** Tears every session down now; open streams are reset. */
  destroy(): void {
    this.#closed = true;
    for (const list of this.#entries.values()) {
      for (const e of list) {
        e.usable = false;
        clearTimeout(e.idle);
        e.session?.destroy();
        void e.ready.then((s) => s.destroy(), ignore);
      }
    }
  }

  #entryFor(key: string, context: SecureContext, req: TunnelRequest): Entry {
    let list = this.#entries.get(key);
    if (list === undefined) {
      list = [];
      this.#entries.set(key, list);
    }
    for (const e of list) {
      if (e.context !== context) this.#retire(e);
      else if (e.usable && e.streams < this.#limit(e)) return e;
    }
    const entry = this.#dial(key, context, req);
    list.push(entry);
    return entry;
  }

  #limit(e: Entry): number {
    const remote = e.session?.remoteSettings.maxConcurrentStreams;
    return remote === undefined ? this.#tuning.maxStreamsPerSession : Math.min(remote, this.#tuning.maxStreamsPerSession);
  }

  #dial(key: string, context: SecureContext, req: TunnelRequest): Entry {
    const ready = dialTunnel({
      address: req.node.address,
      port: req.node.port,
      destinationIdentity: req.destinationIdentity,
      context,
      timeoutMs: this.#connectMs,
      tuning: this.#tuning,
      credentials: this.#deps.credentials,
      onVerified: (certificate) => {
        entry.peerCertificate = certificate;
      },
    });
    const entry: Entry = {
      key, context, ready, session: undefined, streams: 0, open: new Set(), peerCertificate: undefined, usable: true, idle: undefined,
    };
    ready.then((session) => {
      entry.session = session;
      this.#guard.watch(session, `tunnel to ${hostPort(req.node.address, req.node.port)}`);
      session.once('goaway', () => {
        entry.usable = false;
      });
      session.once('close', () => {
        entry.usable = false;
        clearTimeout(entry.idle);
        this.#remove(entry);
      });
      if (this.#closed || !entry.usable) session.close();
      else if (entry.streams === 0) this.#idleLater(entry);
    }, (err: unknown) => {
      this.#remove(entry);
      if (err instanceof TunnelHandshakeError) this.#deps.observer?.handshakeFailed(err.reason, err.message);
    });
    return entry;
  }

  #reserve(e: Entry): void {
    e.streams += 1;
    clearTimeout(e.idle);
    e.idle = undefined;
  }

  #release(e: Entry): void {
    e.streams -= 1;
    if (e.streams > 0 || e.session === undefined) return;
    if (e.usable) this.#idleLater(e);
    else e.session.close();
  }

  #idleLater(e: Entry): void {
    clearTimeout(e.idle);
    e.idle = setTimeout(() => {
      e.usable = false;
      if (e.streams === 0) e.session?.close();
    }, this.#idleMs);
    e.idle.unref();
  }

  /** No new streams; closes once its streams are done. */
  #retire(e: Entry): void {
    if (!e.usable) return;
    e.usable = false;
    if (e.streams === 0) e.session?.close();
  }

  #remove(e: Entry): void {
    const list = this.#entries.get(e.key);
    if (list === undefined) return;
    const i = list.indexOf(e);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#entries.delete(e.key);
  }

  #answer(stream: ClientHttp2Stream, signal: AbortSignal | undefined): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let error: unknown;
      const finish = (result: number | Error): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        stream.off('response', onResponse);
        stream.off('close', onClose);
        stream.off('error', onError);
        if (typeof result === 'number') resolve(result);
        else reject(result);
      };
      const onResponse = (headers: Record<string, unknown>): void => finish(Number(headers[h2.HTTP2_HEADER_STATUS]));
      const onError = (err: unknown): void => {
        error ??= err;
      };
      const onClose = (): void => finish(proxyError(ProxyErrors.TUNNEL_BROKEN, `tunnel stream closed before an answer (rst ${stream.rstCode ?? '?'})`, error));
      const onAbort = (): void => finish(proxyError(ProxyErrors.ABORTED, 'tunnel request abandoned'));
      const timer = setTimeout(() => finish(proxyError(ProxyErrors.CONNECT_TIMEOUT, `no answer to CONNECT within ${this.#responseMs} ms`)), this.#responseMs);
      timer.unref();
      stream.once('response', onResponse);
      stream.once('close', onClose);
      stream.on('error', onError);
      if (signal?.aborted === true) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** A failure of the session under a stream, not of the request: worth one retry elsewhere. */
function isSessionBreak(err: unknown): boolean {
  if (isWeftError(err)) return err.code === ProxyErrors.TUNNEL_BROKEN;
  // session.request() throws ERR_HTTP2_INVALID_SESSION / ERR_HTTP2_GOAWAY_SESSION on a dying session.
  return err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('ERR_HTTP2_');
}

/** Awaits `p` unless `signal` fires first; the shared promise itself is not cancelled. */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) return Promise.reject(proxyError(ProxyErrors.ABORTED, 'tunnel request abandoned'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(proxyError(ProxyErrors.ABORTED, 'tunnel request abandoned'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => {
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    }, (err: unknown) => {
      signal.removeEventListener('abort', onAbort);
      reject(err instanceof Error ? err : new Error(String(err)));
    });
  });
}
