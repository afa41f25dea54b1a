// The inbound tunnel listener (15008): TLS 1.3 with the certificate of the local identity the
// client names by SNI, a client certificate required and verified (chain by OpenSSL, identity
// by the injected verifier), then HTTP/2 CONNECT streams, each admitted (local enrolled pod,
// the identity asked for, policy), connected to the pod and spliced.
// Answers: 200 then bytes; 400 malformed; 403 denied; 405 not CONNECT; 421 not a local pod of
// that identity; 503 the pod did not accept.

import {
  constants as h2, createSecureServer, type Http2SecureServer, type Http2Session, type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import type { SecureContext, TLSSocket } from 'node:tls';

import { describeError } from '../core/errors.ts';
import { tryParseSpiffeId } from '../model/spiffe.ts';
import type { Authorizer, ConnectionObserver, MeshView, PeerRef, TunnelCredentials } from './contracts.ts';
import { setupSignal } from './connection-tracker.ts';
import { addressOf, peerOf } from './describe.ts';
import { ProxyErrors, proxyError } from './errors.ts';
import { ResponseFlags } from './flags.ts';
import { HandshakeReasons, classifyHandshakeError, classifyUnauthorizedClient } from './handshake-reasons.ts';
import { admitInbound, parseAuthority, parseForwardedFor } from './inbound-admission.ts';
import { ListenerCore, type Accepted, type Ending, type Listener, type ListenerCommonDeps } from './listener.ts';
import { plainIp } from './listen.ts';
import { identityForServerName } from './server-name.ts';
import { flagsForSplice } from './splice-flags.ts';
import { resetSide, splice } from './splice.ts';
import { endSession } from './session-end.ts';
import { connectTcp } from './tcp-connect.ts';
import { decodeStringsOnWrite } from './upstream.ts';
import { DEFAULT_HANDSHAKE_LIMITS, HandshakeLimiter, rawSocketOf, type HandshakeLimits } from './handshake-limiter.ts';
import { SessionGuard } from './tunnel-session.ts';
import { h2Settings, tunnelTuning, type TunnelTuning } from './tunnel-tuning.ts';
import type { OutboundTarget } from './outbound-route.ts';
import { L7_HEADER } from './tunnel-pool.ts';

/** A tunnel stream that carries HTTP to a local pod, as the HTTP layer serves it. */
export interface InboundHttpConnection {
  readonly protocol: 'http1' | 'h2';
  /** The caller as telemetry labels it. */
  readonly source: PeerRef;
  /** The verified peer identity. */
  readonly sourceIdentity: string;
  readonly sourceNamespace: string | undefined;
  readonly clientIp: string;
  /** The local pod the stream was admitted to. */
  readonly target: OutboundTarget;
  /** A connection to it made to admit the stream: the first pooled connection to the pod. */
  readonly connected: Socket;
}

/** Serves admitted streams that carry HTTP request by request (reporter="destination" telemetry). */
export interface InboundHttpHandler {
  serveInbound(stream: ServerHttp2Stream, c: InboundHttpConnection, accepted: Accepted): Promise<Ending>;
}

export interface InboundTunnelOptions {
  /** This node's name: only pods scheduled here are served. */
  readonly nodeName: string;
  readonly host?: string;
  readonly port?: number;
  readonly reusePort?: boolean;
  /** Connect to the pod. Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** TLS handshake. Default 10 s (the pressured timeout and the caps: `handshakes`). */
  readonly handshakeTimeoutMs?: number;
  /** Caps on pending TLS handshakes and the shorter timeout under pressure. */
  readonly handshakes?: Partial<HandshakeLimits>;
  readonly tuning?: Partial<TunnelTuning>;
}

export interface InboundTunnelDeps extends ListenerCommonDeps {
  readonly mesh: Pick<MeshView, 'workloadByIp'>;
  readonly credentials: TunnelCredentials;
  readonly authorize: Authorizer;
  /** Streams whose peer says they carry HTTP (the `weft-l7` header) go here; spliced when absent. */
  readonly http?: InboundHttpHandler;
  /** Index 1 counts pending handshakes of every worker (a SharedArrayBuffer); a private one when absent. */
  readonly sharedCounters?: Int32Array;
}

interface SessionPeer {
  /** The client's verified SPIFFE id. */
  readonly principal: string;
  /** Its namespace, parsed once per session rather than per stream. */
  readonly namespace: string | undefined;
  /** The local identity it asked for (and got the certificate of). */
  readonly requested: string | undefined;
  readonly remoteIp: string;
  /** The client certificate the session was verified with (a revocation may end it later). */
  readonly certificate: X509Certificate;
  /** The streams open on it (a revocation resets them before it ends the session). */
  readonly open: Set<ServerHttp2Stream>;
}

const ignore = (): void => undefined;
const KEEPALIVE_MS = 30_000;

export class InboundTunnel implements Listener {
  readonly #deps: InboundTunnelDeps;
  readonly #observer: ConnectionObserver;
  readonly #nodeName: string;
  readonly #connectMs: number;
  readonly #tuning: TunnelTuning;
  readonly #server: Http2SecureServer;
  /** Accepts on the port; hands the TLS server only the connections the handshake caps let in. */
  readonly #front: Server;
  readonly #sessions = new Map<Http2Session, SessionPeer>();
  readonly #core: ListenerCore;
  readonly #handshakes: HandshakeLimiter;
  readonly #guard = new SessionGuard();
  #draining = false;

  constructor(deps: InboundTunnelDeps, options: InboundTunnelOptions) {
    this.#deps = deps;
    this.#nodeName = options.nodeName;
    this.#connectMs = options.connectTimeoutMs ?? 5_000;
    this.#tuning = tunnelTuning(options.tuning);
    const limits: HandshakeLimits = {
      ...DEFAULT_HANDSHAKE_LIMITS, ...(options.handshakeTimeoutMs === undefined ? {} : { timeoutMs: options.handshakeTimeoutMs }), ...options.handshakes,
    };
    this.#handshakes = new HandshakeLimiter(limits, {
      ...(deps.sharedCounters === undefined ? {} : { shared: deps.sharedCounters }),
      ...(deps.overload === undefined ? {} : { overload: deps.overload }),
      onTimeout: (ip, ms) => this.#observer.handshakeFailed(HandshakeReasons.TIMEOUT, `client ${ip}: no TLS handshake within ${ms} ms`),
    });
    this.#server = createSecureServer({
      SNICallback: (name, cb) => this.#serverName(name, cb),
      requestCert: true,
      // Checked in #onSession so a refusal is counted with its reason.
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.3',
      // A backstop only: the limiter times handshakes out first, naming the client.
      handshakeTimeout: limits.timeoutMs + 1_000,
      allowHTTP1: false,
      settings: h2Settings(this.#tuning),
      maxSessionMemory: this.#tuning.maxSessionMemoryMb,
    });
    // A connection past a handshake cap is closed before the TLS server sees it: wrapped, each
    // would hold a TLS socket and its buffers until the close runs (a flood of 20,000 left the
    // agent at 336 MiB RSS that way, 261 MiB closed first). Before TLS too: small CONNECT
    // answers must not wait on Nagle; keepalive finds dead peers.
    this.#front = createNetServer((socket: Socket) => {
      if (!this.#handshakes.begin(socket, plainIp(socket.remoteAddress))) return;
      socket.setNoDelay(true);
      socket.setKeepAlive(true, KEEPALIVE_MS);
      this.#server.emit('connection', socket);
    });
    this.#server.on('secureConnection', (tls: TLSSocket) => this.#handshakes.done(rawSocketOf(tls)));
    this.#server.on('tlsClientError', (err: Error, socket: TLSSocket) => this.#onTlsError(err, socket));
    this.#server.on('unknownProtocol', (socket: TLSSocket) => {
      this.#observer.handshakeFailed(HandshakeReasons.NO_H2, `client ${plainIp(socket.remoteAddress)} did not offer h2`);
      socket.destroy();
    });
    this.#server.on('session', (session: Http2Session) => this.#onSession(session));
    this.#server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#onStream(stream, headers));
    this.#core = new ListenerCore('inbound-tunnel', this.#front, {
      host: options.host ?? '0.0.0.0', port: options.port ?? 15008, reusePort: options.reusePort ?? true,
    }, deps);
    this.#observer = this.#core.observer;
  }

  listen(): Promise<AddressInfo> {
    return this.#core.listen();
  }

  get connections(): number {
    return this.#core.connections;
  }

  stats(): { sessions: number; streams: number; pendingHandshakes: number } {
    return { sessions: this.#sessions.size, streams: this.#core.connections, pendingHandshakes: this.#handshakes.pending };
  }

  /** The caps on pending handshakes (for the metrics that show them). */
  get handshakeLimits(): HandshakeLimits {
    return this.#handshakes.limits;
  }

  /** Stops accepting connections; open sessions keep working. */
  close(): Promise<void> {
    this.#core.stopAccepting();
    return Promise.resolve();
  }

  /**
   * Stops accepting, sends GOAWAY so clients open new streams elsewhere (a new agent bound
   * beside this one), lets open streams run up to `deadlineMs`, then resets the rest.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.#draining = true;
    this.#core.stopAccepting();
    for (const session of this.#sessions.keys()) session.close();
    await this.#core.drainConnections(deadlineMs);
    for (const session of this.#sessions.keys()) session.destroy();
  }

  /** Resets every stream and session now. */
  async destroy(): Promise<void> {
    await this.drain(0);
  }

  #serverName(name: string, cb: (err: Error | null, ctx?: SecureContext) => void): void {
    const identity = identityForServerName(name);
    let context: SecureContext | undefined;
    try {
      context = identity === undefined ? undefined : this.#deps.credentials.secureContext(identity);
    } catch (err: unknown) {
      cb(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (context === undefined) {
      cb(proxyError(ProxyErrors.BAD_SERVER_NAME, `no identity on this node answers to server name ${JSON.stringify(name)}`));
      return;
    }
    cb(null, context);
  }

  #onTlsError(err: Error, socket: TLSSocket): void {
    // The address as seen at accept: a socket that timed out may not know it any more.
    const raw = rawSocketOf(socket);
    if (this.#handshakes.closedHere(raw)) return;
    const client = this.#handshakes.addressOf(raw) ?? plainIp(socket.remoteAddress ?? raw?.remoteAddress);
    this.#handshakes.done(raw);
    let reason = classifyHandshakeError(err);
    if ('code' in err && err.code === ProxyErrors.BAD_SERVER_NAME) reason = HandshakeReasons.UNKNOWN_SERVER_NAME;
    // Without SNI there is no certificate to present; OpenSSL reports that vaguely.
    else if (reason === HandshakeReasons.OTHER && typeof socket.servername !== 'string') reason = HandshakeReasons.UNKNOWN_SERVER_NAME;
    this.#observer.handshakeFailed(reason, `client ${client}: ${describeError(err)}`);
    socket.destroy();
  }

  #onSession(session: Http2Session): void {
    session.on('error', ignore);
    const socket = session.socket as TLSSocket;
    const remoteIp = plainIp(socket.remoteAddress);
    const cert = socket.getPeerX509Certificate();
    const refuse = (reason: string, detail: string): void => {
      this.#observer.handshakeFailed(reason, `client ${remoteIp}: ${detail}`);
      session.destroy();
    };
    if (!socket.authorized) {
      refuse(classifyUnauthorizedClient(cert !== undefined), `client certificate refused: ${String(socket.authorizationError)}`);
      return;
    }
    let principal: string;
    try {
      if (cert === undefined) throw new Error('no client certificate');
      principal = this.#deps.credentials.verifyPeer(cert);
    } catch (err: unknown) {
      refuse(HandshakeReasons.IDENTITY_REJECTED, describeError(err));
      return;
    }
    const servername = typeof socket.servername === 'string' ? socket.servername : undefined;
    const requested = servername === undefined ? undefined : identityForServerName(servername);
    this.#sessions.set(session, { principal, namespace: tryParseSpiffeId(principal)?.namespace, requested, remoteIp, certificate: cert, open: new Set() });
    session.once('close', () => this.#sessions.delete(session));
    this.#guard.watch(session, `tunnel from ${remoteIp}`);
    try {
      session.setLocalWindowSize(this.#tuning.sessionWindowBytes);
    } catch {
      // Already gone.
    }
    if (this.#draining) session.close();
  }

  /**
   * Ends, at once, every session that used a certificate `revoked` says is revoked: the
   * client's, or the one this node presented. Resolves how many ended.
   */
  closeRevoked(revoked: (certificate: X509Certificate) => boolean): number {
    let n = 0;
    for (const [session, peer] of [...this.#sessions]) {
      const own = (session.socket as TLSSocket | undefined)?.getX509Certificate();
      if (!revoked(peer.certificate) && (own === undefined || !revoked(own))) continue;
      this.#observer.handshakeFailed(HandshakeReasons.REVOKED, `client ${peer.remoteIp} (${peer.principal}): session ended, certificate ${revoked(peer.certificate) ? peer.certificate.serialNumber : own?.serialNumber ?? '?'} revoked`);
      // RST_STREAM each stream first: the peer resets its client instead of reading a clean end.
      for (const stream of [...peer.open]) resetSide(stream);
      endSession(session);
      n++;
    }
    return n;
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    this.#guard.track(stream);
    const peer = this.#sessions.get(stream.session as Http2Session);
    if (peer !== undefined) {
      peer.open.add(stream);
      stream.once('close', () => peer.open.delete(stream));
    }
    const forwarded = this.#vouchedForwarded(parseForwardedFor(headers.forwarded), peer);
    const sourceIp = forwarded ?? peer?.remoteIp ?? plainIp(stream.session?.socket?.remoteAddress);
    void this.#core.serve(stream, sourceIp, (a) => this.#serve(stream, headers, peer, forwarded, a), {
      resetOnFailure: false, incoming: headers, refuse: () => answer(stream, 503),
    });
  }

  /**
   * The `Forwarded` address, when the mesh says it belongs to a workload with exactly the
   * peer's verified identity; otherwise undefined (the peer's own address stands) and counted:
   * a mesh certificate must not let its holder claim any source address (ipBlocks rules).
   */
  #vouchedForwarded(claimed: string | undefined, peer: SessionPeer | undefined): string | undefined {
    if (claimed === undefined || peer === undefined) return undefined;
    if (this.#deps.mesh.workloadByIp(claimed)?.identity === peer.principal) return claimed;
    this.#observer.forwardedMismatch?.(claimed, peer.principal, peer.remoteIp);
    return undefined;
  }

  async #serve(
    stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: SessionPeer | undefined, forwarded: string | undefined,
    accepted: Accepted,
  ): Promise<Ending> {
    const { record, live, signal } = accepted;
    if (peer === undefined) {
      resetSide(stream);
      return [ResponseFlags.BAD_REQUEST, 'stream on an unverified session'];
    }
    const sourceIp = live.sourceIp;
    // `forwarded` is vouched for: that pod has the verified identity.
    const source = peerOf(forwarded === undefined ? undefined : this.#deps.mesh.workloadByIp(forwarded), sourceIp, peer.principal);

    if (headers[h2.HTTP2_HEADER_METHOD] !== h2.HTTP2_METHOD_CONNECT) {
      record.identify({ reporter: 'destination', source, destination: {}, security: 'mutual_tls' });
      answer(stream, 405);
      return [ResponseFlags.BAD_REQUEST, `method ${String(headers[h2.HTTP2_HEADER_METHOD])} is not CONNECT`];
    }
    const authority = headers[h2.HTTP2_HEADER_AUTHORITY];
    const target = parseAuthority(typeof authority === 'string' ? authority : undefined);
    if (target === undefined) {
      record.identify({ reporter: 'destination', source, destination: {}, security: 'mutual_tls' });
      answer(stream, 400);
      return [ResponseFlags.BAD_REQUEST, `bad authority ${JSON.stringify(authority)}`];
    }
    const l7 = this.#deps.http === undefined ? undefined : l7Of(headers[L7_HEADER]);
    // A stream carrying HTTP is checked again per request (requestAuthorizationStep), with L7 rules.
    const admission = admitInbound(this.#deps.mesh, this.#deps.authorize, {
      nodeName: this.#nodeName, target, sourcePrincipal: peer.principal, sourceNamespace: peer.namespace, sourceIp,
      requestedIdentity: peer.requested, perRequest: l7 !== undefined,
    });
    const destination = peerOf(admission.workload, addressOf(target.address, target.port));
    record.identify({ reporter: 'destination', source, destination, security: 'mutual_tls', l7: l7 !== undefined });
    if (!admission.ok) {
      answer(stream, admission.status);
      return [admission.flags, admission.detail];
    }
    // A stream carrying HTTP is one of the source agent's pooled connections: its requests
    // draw on the request limits instead.
    const limited = l7 === undefined ? this.#deps.connectionRate?.(admission.workload) : undefined;
    if (limited !== undefined) {
      answer(stream, 429);
      return [ResponseFlags.RATE_LIMITED, limited];
    }
    live.allowed(admission.request);

    // The pod must accept before the stream is answered, for HTTP too: a refusal is a 503 the
    // client agent retries elsewhere, as for any connection.
    let pod: Socket;
    const setup = setupSignal(signal, stream);
    try {
      pod = await connectTcp({ host: target.address, port: target.port, timeoutMs: this.#connectMs, signal: setup.signal });
    } catch (err: unknown) {
      answer(stream, 503);
      return [signal.aborted ? ResponseFlags.DRAINED : ResponseFlags.UPSTREAM_CONNECT_FAILURE, describeError(err)];
    } finally {
      setup.dispose();
    }
    if (stream.destroyed) {
      pod.destroy();
      return [ResponseFlags.DOWNSTREAM_RESET, 'client went away while the pod connected'];
    }
    try {
      stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200 });
    } catch (err: unknown) {
      // Reset by the client between our checks and the answer.
      pod.resetAndDestroy();
      return [ResponseFlags.DOWNSTREAM_RESET, describeError(err)];
    }
    if (l7 !== undefined && this.#deps.http !== undefined) {
      // node:http writes response heads as strings.
      decodeStringsOnWrite(stream);
      return this.#deps.http.serveInbound(stream, {
        protocol: l7, source, sourceIdentity: peer.principal, sourceNamespace: peer.namespace, clientIp: sourceIp,
        target: { ip: target.address, port: target.port, workload: admission.workload }, connected: pod,
      }, accepted);
    }
    record.countBytes(pod, 'server');
    const result = await splice(stream, pod, signal, this.#core.spliceOptions);
    return flagsForSplice(result);
  }
}

function l7Of(v: string | string[] | undefined): 'http1' | 'h2' | undefined {
  return v === 'http1' || v === 'h2' ? v : undefined;
}

/** Answers a stream with a bare status and ends it, unless the client is already gone. */
function answer(stream: ServerHttp2Stream, status: number): void {
  if (stream.destroyed || stream.headersSent) return;
  try {
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: status }, { endStream: true });
  } catch {
    resetSide(stream);
  }
}
