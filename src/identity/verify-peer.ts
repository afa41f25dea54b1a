// Peer certificate verification for mTLS: chain to the trust bundle, validity window, CRL,
// exactly one URI SAN that is a SPIFFE workload id, and optionally the expected id.

import { X509Certificate } from 'node:crypto';

import type { Clock } from '../core/clock.ts';
import { RevocationList } from './crl.ts';
import { identityError } from './errors.ts';
import { splitPemCertificates } from './pem.ts';
import { parseSpiffeId, type SpiffeId } from './spiffe.ts';
import { TrustBundle, uriSans, type TrustAnchor } from './trust-bundle.ts';

/** A leaf, a leaf followed by its intermediates, or the same as a PEM chain. */
export type PeerChain = X509Certificate | readonly X509Certificate[] | string;

export interface VerifyPeerOptions {
  /** Parse it once with TrustBundle.parse when verifying often; a string is parsed per call. */
  readonly trustBundle: TrustBundle | string;
  /** Same: RevocationList.parse once; a string is parsed and signature-checked per call. */
  readonly crl?: RevocationList | string;
  readonly expectedIdentity?: SpiffeId | string;
  readonly now: number | Date;
}

const MAX_CHAIN_DEPTH = 4;

/** Returns the peer's SPIFFE id, or throws a WeftError whose code says what failed. */
export function verifyPeer(peer: PeerChain, options: VerifyPeerOptions): SpiffeId {
  const bundle = typeof options.trustBundle === 'string' ? TrustBundle.parse(options.trustBundle) : options.trustBundle;
  const crl = typeof options.crl === 'string' ? RevocationList.parse(options.crl, bundle) : options.crl;
  const now = typeof options.now === 'number' ? options.now : options.now.getTime();
  return checkPeer(toChain(peer), bundle, crl, options.expectedIdentity, now, verifyEdge);
}

export interface PeerVerifierOptions {
  readonly trustBundle: TrustBundle;
  readonly crl?: RevocationList;
  readonly clock: Clock;
  /** Remembered (certificate, issuer) signature checks; cleared when full. 4096 by default, 0 disables. */
  readonly cacheSize?: number;
}

/**
 * verifyPeer for the proxy's per-connection path: bundle and CRL are parsed once, and a
 * signature already verified for the same certificate bytes is not verified again (pooled
 * tunnels see the same few peer certificates over and over). Build a new one when the bundle
 * or CRL changes; validity, revocation and SAN checks still run on every call.
 */
export class PeerVerifier {
  readonly trustBundle: TrustBundle;
  readonly crl: RevocationList | undefined;
  readonly #clock: Clock;
  readonly #cacheSize: number;
  readonly #verified = new Set<string>();

  constructor(options: PeerVerifierOptions) {
    this.trustBundle = options.trustBundle;
    this.crl = options.crl;
    this.#clock = options.clock;
    this.#cacheSize = options.cacheSize ?? 4096;
  }

  verify(peer: X509Certificate | readonly X509Certificate[], expectedIdentity?: SpiffeId | string): SpiffeId {
    return checkPeer(toChain(peer), this.trustBundle, this.crl, expectedIdentity, this.#clock.now(), (child, issuer) => {
      // Keyed by both fingerprints: the same bytes under the same issuer verify the same way.
      if (this.#cacheSize <= 0) return verifyEdge(child, issuer);
      const key = `${child.fingerprint256}/${issuer.fingerprint256}`;
      if (this.#verified.has(key)) return true;
      if (!verifyEdge(child, issuer)) return false;
      if (this.#verified.size >= this.#cacheSize) this.#verified.clear();
      this.#verified.add(key);
      return true;
    });
  }
}

function verifyEdge(child: X509Certificate, issuer: X509Certificate): boolean {
  return child.checkIssued(issuer) && child.verify(issuer.publicKey);
}

function toChain(peer: PeerChain): readonly X509Certificate[] {
  if (peer instanceof X509Certificate) return [peer];
  if (typeof peer !== 'string') return peer;
  const blocks = splitPemCertificates(peer);
  if (blocks.length === 0) throw identityError('WEFT_IDENTITY_PEER_MALFORMED', 'the peer chain holds no PEM CERTIFICATE block');
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err: unknown) {
      throw identityError('WEFT_IDENTITY_PEER_MALFORMED', `peer chain certificate #${i} does not parse`, err);
    }
  });
}

function checkPeer(
  chain: readonly X509Certificate[],
  bundle: TrustBundle,
  crl: RevocationList | undefined,
  expected: SpiffeId | string | undefined,
  now: number,
  edge: (child: X509Certificate, issuer: X509Certificate) => boolean,
): SpiffeId {
  const leaf = chain[0];
  if (leaf === undefined) throw identityError('WEFT_IDENTITY_PEER_MALFORMED', 'the peer presented no certificate');
  if (leaf.ca) throw identityError('WEFT_IDENTITY_PEER_IS_CA', `the peer leaf certificate ${leaf.serialNumber} is a CA certificate`);

  const anchor = findAnchor(chain, bundle, now, edge);
  if (crl !== undefined && crl.isRevoked(anchor, leaf.serialNumber)) {
    throw identityError('WEFT_IDENTITY_PEER_REVOKED', `peer certificate serial ${leaf.serialNumber.toLowerCase()} is revoked`);
  }

  const uris = uriSans(leaf);
  if (uris.length === 0) {
    throw identityError('WEFT_IDENTITY_PEER_NO_URI_SAN', `peer certificate ${leaf.serialNumber} has no URI subject alternative name`);
  }
  if (uris.length > 1) {
    throw identityError('WEFT_IDENTITY_PEER_MULTIPLE_URI_SAN', `peer certificate ${leaf.serialNumber} names ${uris.length} URIs: ${uris.join(', ')}`);
  }
  const id = parseSpiffeId(uris[0]);
  if (anchor.trustDomain !== undefined && id.trustDomain !== anchor.trustDomain) {
    throw identityError('WEFT_IDENTITY_WRONG_TRUST_DOMAIN', `peer ${id.uri} was issued by the CA of trust domain ${anchor.trustDomain}`);
  }
  if (expected !== undefined) {
    const expectedUri = typeof expected === 'string' ? expected : expected.uri;
    if (id.uri !== expectedUri) {
      throw identityError('WEFT_IDENTITY_PEER_WRONG_IDENTITY', `peer is ${id.uri}, expected ${expectedUri}`);
    }
  }
  return id;
}

/** Walks leaf -> intermediates -> anchor, checking each signature and validity window. */
function findAnchor(
  chain: readonly X509Certificate[],
  bundle: TrustBundle,
  now: number,
  edge: (child: X509Certificate, issuer: X509Certificate) => boolean,
): TrustAnchor {
  let current = chain[0];
  for (let depth = 0; depth <= MAX_CHAIN_DEPTH; depth++) {
    checkValidity(current, depth, now);
    const anchor = bundle.anchors.find((a) => edge(current, a.cert));
    if (anchor !== undefined) {
      if (now < anchor.notBefore || now > anchor.notAfter) {
        throw identityError(
          now < anchor.notBefore ? 'WEFT_IDENTITY_PEER_NOT_YET_VALID' : 'WEFT_IDENTITY_PEER_EXPIRED',
          `the trust anchor ${anchor.cert.subject} is valid from ${new Date(anchor.notBefore).toISOString()} to ${new Date(anchor.notAfter).toISOString()}`,
        );
      }
      return anchor;
    }
    const parent = chain.find((c, i) => i > 0 && c !== current && c.ca && edge(current, c));
    if (parent === undefined) break;
    current = parent;
  }
  throw identityError(
    'WEFT_IDENTITY_PEER_UNTRUSTED',
    `peer certificate ${chain[0].serialNumber} (issuer ${JSON.stringify(chain[0].issuer)}) does not chain to the trust bundle`,
  );
}

function checkValidity(cert: X509Certificate, depth: number, now: number): void {
  const which = depth === 0 ? 'peer certificate' : `peer chain certificate #${depth}`;
  const from = cert.validFromDate.getTime();
  const to = cert.validToDate.getTime();
  if (now < from) {
    throw identityError('WEFT_IDENTITY_PEER_NOT_YET_VALID', `${which} ${cert.serialNumber} is not valid before ${new Date(from).toISOString()}`);
  }
  // X.509 notAfter is inclusive to the second; Node renders it as that instant.
  if (now > to) {
    throw identityError('WEFT_IDENTITY_PEER_EXPIRED', `${which} ${cert.serialNumber} expired at ${new Date(to).toISOString()}`);
  }
}
