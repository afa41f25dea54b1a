// Agent side of issuance: a fresh ECDSA P-256 key and a CSR naming exactly one SPIFFE id.

import { derToPem } from './pem.ts';
import type { SpiffeId } from './spiffe.ts';
import { ecdsaP256, nodeCrypto, x509 } from './x509.ts';

export interface WorkloadKeyAndCsr {
  /** PKCS#8 PEM; stays on the node. */
  readonly keyPem: string;
  readonly csrPem: string;
}

export async function createWorkloadCsr(identity: SpiffeId): Promise<WorkloadKeyAndCsr> {
  // Extractable because Node's TLS takes the key as PEM, not as a CryptoKey.
  const keys = await nodeCrypto.subtle.generateKey(ecdsaP256, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      keys,
      signingAlgorithm: ecdsaP256,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity.uri }], true)],
    },
    nodeCrypto,
  );
  const pkcs8 = await nodeCrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return Object.freeze({ keyPem: derToPem('PRIVATE KEY', pkcs8), csrPem: csr.toString('pem') + '\n' });
}
