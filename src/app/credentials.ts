// The proxy's TunnelCredentials, built from plain certificate material so it can cross a
// worker_threads boundary: one SecureContext per identity and serial (built once, not per
// connection) and one PeerVerifier per trust bundle + CRL.

import type { X509Certificate } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import { PeerVerifier, RevocationList, TrustBundle, createWorkloadSecureContext } from '../identity/index.ts';
import type { Clock } from '../core/clock.ts';
import type { TunnelCredentials } from '../proxy/index.ts';

/** One workload certificate, as posted to proxy workers (keys stay inside the agent process). */
export interface CredentialMaterial {
  readonly identity: string;
  readonly serial: string;
  readonly keyPem: string;
  readonly certPem: string;
  readonly chainPem: readonly string[];
}

export interface CredentialSet {
  readonly trustBundlePem: string;
  readonly crlPem: string | undefined;
  readonly certificates: readonly CredentialMaterial[];
}

export class WorkloadCredentials implements TunnelCredentials {
  readonly #clock: Clock;
  #contexts = new Map<string, { serial: string; context: SecureContext }>();
  #verifier: PeerVerifier | undefined;
  #bundlePem = '';
  #crlPem: string | undefined;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Swaps in a new set; unchanged identities keep their contexts. True when the trust bundle or CRL changed. */
  update(set: CredentialSet): boolean {
    const trustChanged = set.trustBundlePem !== this.#bundlePem || set.crlPem !== this.#crlPem;
    if (trustChanged) {
      const bundle = TrustBundle.parse(set.trustBundlePem);
      const crl = set.crlPem === undefined ? undefined : RevocationList.parse(set.crlPem, bundle);
      this.#verifier = new PeerVerifier({ trustBundle: bundle, clock: this.#clock, ...(crl === undefined ? {} : { crl }) });
      this.#contexts = new Map();
      this.#bundlePem = set.trustBundlePem;
      this.#crlPem = set.crlPem;
    }
    const next = new Map<string, { serial: string; context: SecureContext }>();
    for (const c of set.certificates) {
      const old = this.#contexts.get(c.identity);
      next.set(c.identity, old !== undefined && old.serial === c.serial ? old : {
        serial: c.serial,
        context: createWorkloadSecureContext({ keyPem: c.keyPem, certPem: c.certPem, chainPem: [...c.chainPem], trustBundlePem: this.#bundlePem }),
      });
    }
    this.#contexts = next;
    return trustChanged;
  }

  /** Whether the current CRL revokes `certificate` (a peer's, or one of ours). */
  isRevoked(certificate: X509Certificate): boolean {
    return this.#verifier?.crl?.revokes(certificate) ?? false;
  }

  secureContext(identity: string): SecureContext | undefined {
    return this.#contexts.get(identity)?.context;
  }

  verifyPeer(certificate: X509Certificate, expectedIdentity?: string): string {
    if (this.#verifier === undefined) throw new Error('no trust bundle yet: the agent has not received its config');
    return this.#verifier.verify(certificate, expectedIdentity).uri;
  }

  identities(): string[] {
    return [...this.#contexts.keys()];
  }
}
