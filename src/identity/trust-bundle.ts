// The set of CA certificates a peer must chain to, parsed once when config arrives so that
// per-connection checks only compare and verify.

import { X509Certificate } from 'node:crypto';

import { identityError } from './errors.ts';
import { splitPemCertificates } from './pem.ts';
import { parseSubjectAltName } from '../core/subject-alt-name.ts';

export interface TrustAnchor {
  readonly cert: X509Certificate;
  /** From the anchor's `spiffe://<td>` URI SAN, when it names one. */
  readonly trustDomain: string | undefined;
  readonly notBefore: number;
  readonly notAfter: number;
}

export class TrustBundle {
  /** The PEM as given, for TLS contexts (`ca`). */
  readonly pem: string;
  readonly anchors: readonly TrustAnchor[];

  private constructor(pem: string, anchors: readonly TrustAnchor[]) {
    this.pem = pem;
    this.anchors = anchors;
  }

  static parse(pem: string): TrustBundle {
    const blocks = splitPemCertificates(pem);
    if (blocks.length === 0) {
      throw identityError('WEFT_IDENTITY_BUNDLE_INVALID', 'the trust bundle holds no PEM CERTIFICATE block');
    }
    const anchors = blocks.map((block, i): TrustAnchor => {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(block);
      } catch (err: unknown) {
        throw identityError('WEFT_IDENTITY_BUNDLE_INVALID', `trust bundle certificate #${i} does not parse`, err);
      }
      if (!cert.ca) {
        throw identityError('WEFT_IDENTITY_BUNDLE_INVALID', `trust bundle certificate #${i} (${cert.subject}) is not a CA certificate`);
      }
      const domains = uriSans(cert).flatMap((u) => (/^spiffe:\/\/([^/]+)\/?$/.exec(u)?.slice(1) ?? []));
      return Object.freeze({
        cert,
        trustDomain: domains[0],
        notBefore: cert.validFromDate.getTime(),
        notAfter: cert.validToDate.getTime(),
      });
    });
    return new TrustBundle(blocks.join(''), Object.freeze(anchors));
  }

  /** The anchor that signed `cert`, or undefined. Costs one signature verification per candidate. */
  issuerOf(cert: X509Certificate): TrustAnchor | undefined {
    for (const anchor of this.anchors) {
      if (cert.checkIssued(anchor.cert) && cert.verify(anchor.cert.publicKey)) return anchor;
    }
    return undefined;
  }
}

/** URI entries of a certificate's subjectAltName. */
export function uriSans(cert: X509Certificate): string[] {
  return [...parseSubjectAltName(cert.subjectAltName).uris];
}
