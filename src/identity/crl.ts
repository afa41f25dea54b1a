// A CRL checked against the trust bundle once, when it arrives, and kept as a set of serials
// so the per-connection lookup is a hash probe.

import { verify as verifySignature, type X509Certificate } from 'node:crypto';

import { identityError } from './errors.ts';
import { normalizeSerial } from './pem.ts';
import type { TrustAnchor, TrustBundle } from './trust-bundle.ts';
import { x509 } from './x509.ts';

export class RevocationList {
  /** The anchor whose key signed this CRL; it revokes only certificates that anchor issued. */
  readonly issuer: TrustAnchor;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  readonly #serials: ReadonlySet<string>;

  private constructor(issuer: TrustAnchor, thisUpdate: Date, nextUpdate: Date | undefined, serials: ReadonlySet<string>) {
    this.issuer = issuer;
    this.thisUpdate = thisUpdate;
    this.nextUpdate = nextUpdate;
    this.#serials = serials;
  }

  /** Parses a PEM or DER CRL and verifies its signature against the bundle's anchors. */
  static parse(crl: string | Uint8Array, bundle: TrustBundle): RevocationList {
    let parsed: x509.X509Crl;
    let der: Buffer;
    try {
      parsed = new x509.X509Crl(typeof crl === 'string' ? crl : Buffer.from(crl));
      der = Buffer.from(parsed.rawData);
    } catch (err: unknown) {
      throw identityError('WEFT_IDENTITY_CRL_INVALID', 'the CRL does not parse as an X.509 CRL', err);
    }
    const { tbs, signatureAlgorithmOid, signature } = splitSignedDer(der);
    const hash = SIGNATURE_HASH.get(signatureAlgorithmOid);
    if (hash === undefined) {
      throw identityError('WEFT_IDENTITY_CRL_INVALID', `the CRL is signed with algorithm ${signatureAlgorithmOid}, weft accepts ECDSA with SHA-256/384 only`);
    }
    // Verified here with node:crypto (synchronously) rather than the library's async WebCrypto path.
    const issuer = bundle.anchors.find((a) => verifySignature(hash, tbs, { key: a.cert.publicKey, dsaEncoding: 'der' }, signature));
    if (issuer === undefined) {
      throw identityError('WEFT_IDENTITY_CRL_INVALID', `the CRL from ${parsed.issuer} is not signed by any CA in the trust bundle`);
    }
    const serials = new Set(parsed.entries.map((e) => normalizeSerial(e.serialNumber)));
    return new RevocationList(issuer, parsed.thisUpdate, parsed.nextUpdate, serials);
  }

  /** True when `serial` (any spelling) was issued by this CRL's issuer and is revoked. */
  isRevoked(issuer: TrustAnchor, serial: string): boolean {
    return issuer === this.issuer && this.#serials.has(normalizeSerial(serial));
  }

  /** True when this CRL's issuer issued `cert` and lists its serial. */
  revokes(cert: X509Certificate): boolean {
    return this.#serials.has(normalizeSerial(cert.serialNumber)) && cert.checkIssued(this.issuer.cert);
  }

  get size(): number {
    return this.#serials.size;
  }
}

const SIGNATURE_HASH = new Map([
  ['1.2.840.10045.4.3.2', 'sha256'],
  ['1.2.840.10045.4.3.3', 'sha384'],
]);

/**
 * Splits a signed DER structure (SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }) into the
 * exact bytes that were signed and the signature, without re-encoding anything.
 */
function splitSignedDer(der: Buffer): { tbs: Buffer; signatureAlgorithmOid: string; signature: Buffer } {
  const fail = (what: string): never => {
    throw identityError('WEFT_IDENTITY_CRL_INVALID', `the CRL DER is malformed: ${what}`);
  };
  const outer = readTlv(der, 0) ?? fail('no outer SEQUENCE');
  if (outer.tag !== 0x30) fail('outer element is not a SEQUENCE');
  const tbs = readTlv(der, outer.contentStart) ?? fail('no tbsCertList');
  const algorithm = readTlv(der, tbs.end) ?? fail('no signatureAlgorithm');
  const oid = readTlv(der, algorithm.contentStart) ?? fail('no algorithm OID');
  if (oid.tag !== 0x06) fail('signatureAlgorithm does not start with an OID');
  const bits = readTlv(der, algorithm.end) ?? fail('no signatureValue');
  if (bits.tag !== 0x03 || der[bits.contentStart] !== 0) fail('signatureValue is not a whole-byte BIT STRING');
  return {
    tbs: der.subarray(outer.contentStart, tbs.end),
    signatureAlgorithmOid: decodeOid(der.subarray(oid.contentStart, oid.end)),
    signature: der.subarray(bits.contentStart + 1, bits.end),
  };
}

function readTlv(der: Buffer, offset: number): { tag: number; contentStart: number; end: number } | undefined {
  if (offset + 2 > der.length) return undefined;
  const tag = der[offset];
  let length = der[offset + 1];
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || contentStart + count > der.length) return undefined;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[contentStart + i];
    contentStart += count;
  }
  const end = contentStart + length;
  return end > der.length ? undefined : { tag, contentStart, end };
}

function decodeOid(bytes: Buffer): string {
  if (bytes.length === 0) return '';
  const parts = [Math.floor(bytes[0] / 40), bytes[0] % 40];
  let value = 0;
  for (const b of bytes.subarray(1)) {
    value = value * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      parts.push(value);
      value = 0;
    }
  }
  return parts.join('.');
}
