// TLS plumbing for the proxy: one SecureContext per (identity, certificate, trust bundle),
// built when the certificate rotates or the bundle changes, never per connection; and the
// peer checks to run on each handshake.

import { X509Certificate, createHash } from 'node:crypto';
import { createSecureContext, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';

import type { WorkloadCertificate } from './certificate-store.ts';
import { identityError } from './errors.ts';
import type { SpiffeId } from './spiffe.ts';
import type { TrustBundle } from './trust-bundle.ts';
import type { PeerVerifier } from './verify-peer.ts';

export interface WorkloadTlsMaterial {
  readonly keyPem: string;
  readonly certPem: string;
  /** Intermediates sent after the certificate; empty for weft's single-level CA. */
  readonly chainPem: readonly string[];
  /** The anchors peers must chain to (replaces, not extends, the system roots). */
  readonly trustBundlePem: string;
}

/** A TLS 1.3-only context presenting the workload certificate and trusting only the bundle. */
export function createWorkloadSecureContext(material: WorkloadTlsMaterial): SecureContext {
  try {
    return createSecureContext({
      key: material.keyPem,
      cert: material.certPem + material.chainPem.join(''),
      ca: material.trustBundlePem,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
    });
  } catch (err: unknown) {
    throw identityError('WEFT_IDENTITY_TLS_MATERIAL_INVALID', 'the workload key, certificate or trust bundle was refused by TLS', err);
  }
}

/**
 * Remembers the context built for each identity and rebuilds it only when the certificate
 * (serial) or the trust bundle (object) changes. Per-connection cost: one map lookup and two
 * comparisons.
 */
export class SecureContextCache {
  readonly #byIdentity = new Map<string, { serial: string; bundle: TrustBundle; context: SecureContext }>();

  get(certificate: WorkloadCertificate, trustBundle: TrustBundle): SecureContext {
    const uri = certificate.identity.uri;
    const cached = this.#byIdentity.get(uri);
    if (cached !== undefined && cached.serial === certificate.serial && cached.bundle === trustBundle) return cached.context;
    const context = createWorkloadSecureContext({
      keyPem: certificate.keyPem,
      certPem: certificate.certPem,
      chainPem: certificate.chainPem,
      trustBundlePem: trustBundle.pem,
    });
    this.#byIdentity.set(uri, { serial: certificate.serial, bundle: trustBundle, context });
    return context;
  }

  /** Forget an identity (on the store's 'removed' or 'expired' event). */
  delete(identity: SpiffeId | string): void {
    this.#byIdentity.delete(typeof identity === 'string' ? identity : identity.uri);
  }

  clear(): void {
    this.#byIdentity.clear();
  }

  get size(): number {
    return this.#byIdentity.size;
  }
}

/**
 * After a handshake (server 'secureConnection' or client 'secureConnect'): the peer's SPIFFE id,
 * or a WeftError. Adds what OpenSSL cannot know (CRL, URI SAN, expected identity, injected
 * clock) and repeats the chain check, so it is safe as the only gate.
 *
 * On servers prefer `{ requestCert: true, rejectUnauthorized: false }` with this call as the
 * gate: with `rejectUnauthorized: true` Node drops a bad client before the application sees
 * it and reports only "socket hang up", so the refusal cannot be logged with a reason.
 */
export function verifyTlsPeer(socket: TLSSocket, verifier: PeerVerifier, expectedIdentity?: SpiffeId | string): SpiffeId {
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) throw identityError('WEFT_IDENTITY_PEER_MISSING', 'the TLS peer presented no certificate');
  const opensslVerdict = socket.authorizationError as Error | string | null | undefined;
  if (opensslVerdict !== undefined && opensslVerdict !== null) {
    const reason = typeof opensslVerdict === 'string' ? opensslVerdict : opensslVerdict.message;
    throw identityError('WEFT_IDENTITY_PEER_UNTRUSTED', `TLS verification of peer certificate ${cert.serialNumber} failed: ${reason}`);
  }
  return verifier.verify(cert, expectedIdentity);
}

/**
 * A `checkServerIdentity` for tls.connect that checks the server's SPIFFE id instead of a
 * hostname, so a wrong peer fails the connect itself with the WeftError as the socket error.
 */
export function spiffeServerIdentityCheck(
  verifier: PeerVerifier,
  expectedIdentity: SpiffeId | string,
): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (_hostname, cert) => {
    try {
      verifier.verify(new X509Certificate(cert.raw), expectedIdentity);
      return undefined;
    } catch (err: unknown) {
      return err instanceof Error ? err : new Error(String(err));
    }
  };
}

/**
 * The TLS server name (SNI) a client sends so that a shared inbound port can present the
 * destination workload's certificate. Opaque on purpose: SPIFFE ids do not always fit DNS
 * syntax or length, and the server maps names back with its own table (see sniCallbackFor).
 */
export function serverNameFor(identity: SpiffeId | string): string {
  const uri = typeof identity === 'string' ? identity : identity.uri;
  return `${createHash('sha256').update(uri).digest('hex').slice(0, 32)}.id.weft`;
}

/**
 * An SNICallback for tls.createServer (which takes no `secureContext`): `lookup` maps a
 * serverNameFor() name to the current context, e.g. through a SecureContextCache. Unknown
 * names fail the handshake instead of falling back to some other identity's certificate.
 */
export function sniCallbackFor(
  lookup: (serverName: string) => SecureContext | undefined,
): (serverName: string, callback: (err: Error | null, context?: SecureContext) => void) => void {
  return (serverName, callback) => {
    const context = lookup(serverName);
    if (context !== undefined) callback(null, context);
    else callback(identityError('WEFT_IDENTITY_NOT_REQUESTED', `no workload certificate on this node answers to server name ${JSON.stringify(serverName)}`));
  };
}
