// Opens one tunnel session: TCP, TLS 1.3 with the source workload's certificate and the
// destination identity's server name, check that the server is that identity, then HTTP/2.

import type { X509Certificate } from 'node:crypto';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect, type SecureContext } from 'node:tls';

import type { TunnelCredentials } from './contracts.ts';
import { ProxyErrors, TunnelHandshakeError, proxyError } from './errors.ts';
import { HandshakeReasons, classifyHandshakeError } from './handshake-reasons.ts';
import { serverNameFor } from './server-name.ts';
import { h2Settings, hostPort, type TunnelTuning } from './tunnel-tuning.ts';

export interface TunnelDialOptions {
  readonly address: string;
  readonly port: number;
  readonly destinationIdentity: string;
  /** The source workload's context. */
  readonly context: SecureContext;
  readonly timeoutMs: number;
  readonly tuning: TunnelTuning;
  readonly credentials: TunnelCredentials;
  /** Told the server's certificate once it verified (a later revocation ends the session). */
  readonly onVerified?: (certificate: X509Certificate) => void;
}

const ignore = (): void => undefined;

/**
 * Resolves with a ready session, or rejects with WEFT_PROXY_CONNECT_FAILED / _CONNECT_TIMEOUT
 * (the agent is unreachable) or a TunnelHandshakeError (TLS or identity refused; `reason` is
 * the metric label).
 */
export function dialTunnel(o: TunnelDialOptions): Promise<ClientHttp2Session> {
  const where = `${hostPort(o.address, o.port)} (${o.destinationIdentity})`;
  return new Promise<ClientHttp2Session>((resolve, reject) => {
    let servername: string;
    try {
      servername = serverNameFor(o.destinationIdentity);
    } catch (err: unknown) {
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    let tcpConnected = false;
    const socket = tlsConnect({
      host: o.address,
      port: o.port,
      secureContext: o.context,
      servername,
      ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      // The SPIFFE id is checked below through the injected verifier, not a hostname.
      checkServerIdentity: () => undefined,
    });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('error', ignore);
    socket.once('connect', () => {
      tcpConnected = true;
    });

    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => {
      fail(tcpConnected
        ? new TunnelHandshakeError(HandshakeReasons.TIMEOUT, `TLS handshake with ${where} timed out after ${o.timeoutMs} ms`)
        : proxyError(ProxyErrors.CONNECT_TIMEOUT, `connect to ${where} timed out after ${o.timeoutMs} ms`));
    }, o.timeoutMs);
    timer.unref();

    socket.once('error', (err: Error) => {
      fail(tcpConnected
        ? new TunnelHandshakeError(classifyHandshakeError(err), `TLS handshake with ${where} failed: ${err.message}`, err)
        : proxyError(ProxyErrors.CONNECT_FAILED, `connect to ${where} failed: ${err.message}`, err));
    });

    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2') {
        fail(new TunnelHandshakeError(HandshakeReasons.NO_H2, `${where} did not agree to h2 (ALPN ${String(socket.alpnProtocol)})`));
        return;
      }
      const cert = socket.getPeerX509Certificate();
      let peer: string;
      try {
        if (cert === undefined) throw new Error('no server certificate');
        peer = o.credentials.verifyPeer(cert, o.destinationIdentity);
      } catch (err: unknown) {
        fail(new TunnelHandshakeError(HandshakeReasons.IDENTITY_REJECTED, `${where} is not acceptable: ${err instanceof Error ? err.message : String(err)}`, err));
        return;
      }
      if (peer !== o.destinationIdentity) {
        fail(new TunnelHandshakeError(HandshakeReasons.IDENTITY_REJECTED, `${where} presented ${peer}`));
        return;
      }
      o.onVerified?.(cert);
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', ignore);
      const session = h2connect(`https://${hostPort(o.address, o.port)}`, {
        createConnection: () => socket,
        settings: h2Settings(o.tuning),
        maxSessionMemory: o.tuning.maxSessionMemoryMb,
        peerMaxConcurrentStreams: o.tuning.maxStreamsPerSession,
      });
      session.on('error', ignore);
      session.once('connect', () => {
        try {
          session.setLocalWindowSize(o.tuning.sessionWindowBytes);
        } catch {
          // The session died right away; its 'close' tells the pool.
        }
      });
      resolve(session);
    });
  });
}
