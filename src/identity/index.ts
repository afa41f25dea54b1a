// The identity module's public surface. The app wires these; other feature modules receive
// only the narrow interfaces (CertificateIssuer, NodeAuthorizer, a certificate lookup).

export { identityErrorCodes, type IdentityErrorCode } from './errors.ts';
export { DEFAULT_TRUST_DOMAIN, parseSpiffeId, spiffeId, type SpiffeId } from './spiffe.ts';
export { FileCaStore, MemoryCaStore, type CaStore, type RevokedSerial, type StoredCa } from './ca-store.ts';
export { isConflict, SecretCaStore, type SecretClient, type SecretContent } from './secret-ca-store.ts';
export {
  CertificateAuthority,
  DEFAULT_CLOCK_SKEW_MS,
  DEFAULT_WORKLOAD_TTL_MS,
  type CertificateAuthorityOptions,
  type IssuedCertificate,
  type NodeAuthorizer,
  type SignRequest,
} from './ca.ts';
export { createWorkloadCsr, type WorkloadKeyAndCsr } from './csr.ts';
export { TrustBundle, uriSans, type TrustAnchor } from './trust-bundle.ts';
export { RevocationList } from './crl.ts';
export { PeerVerifier, verifyPeer, type PeerChain, type PeerVerifierOptions, type VerifyPeerOptions } from './verify-peer.ts';
export { ManualScheduler, systemScheduler, type Scheduler, type TimerHandle } from '../core/scheduler.ts';
export { DEFAULT_BACKOFF, backoffDelay, type BackoffPolicy } from './backoff.ts';
export {
  CertificateStore,
  type CertificateEvent,
  type CertificateIssuer,
  type CertificateSnapshot,
  type CertificateStoreOptions,
  type WorkloadCertificate,
} from './certificate-store.ts';
export {
  SecureContextCache,
  createWorkloadSecureContext,
  serverNameFor,
  sniCallbackFor,
  spiffeServerIdentityCheck,
  verifyTlsPeer,
  type WorkloadTlsMaterial,
} from './tls-context.ts';
