// SPIFFE ids for Kubernetes workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.

import { identityError } from './errors.ts';

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The full `spiffe://...` URI; also the key used for maps of identities. */
  readonly uri: string;
}

// SPIFFE trust domain: lowercase letters, digits, dots, dashes, underscores.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
// Kubernetes: namespaces are DNS-1123 labels, service accounts DNS-1123 subdomains.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const URI_FORM = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

/** Builds a SpiffeId, rejecting names Kubernetes would not accept. */
export function spiffeId(namespace: string, serviceAccount: string, trustDomain: string = DEFAULT_TRUST_DOMAIN): SpiffeId {
  if (!TRUST_DOMAIN.test(trustDomain)) {
    throw identityError('WEFT_IDENTITY_INVALID_ID', `trust domain ${JSON.stringify(trustDomain)} is not a valid SPIFFE trust domain`);
  }
  if (!DNS_LABEL.test(namespace)) {
    throw identityError('WEFT_IDENTITY_INVALID_ID', `namespace ${JSON.stringify(namespace)} is not a DNS-1123 label`);
  }
  if (serviceAccount.length > 253 || !DNS_SUBDOMAIN.test(serviceAccount)) {
    throw identityError('WEFT_IDENTITY_INVALID_ID', `service account ${JSON.stringify(serviceAccount)} is not a DNS-1123 subdomain`);
  }
  return Object.freeze({
    trustDomain,
    namespace,
    serviceAccount,
    uri: `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`,
  });
}

/** Parses `spiffe://td/ns/N/sa/S`; anything else (other paths, query, port) is refused. */
export function parseSpiffeId(uri: string): SpiffeId {
  const m = URI_FORM.exec(uri);
  if (m === null) {
    throw identityError('WEFT_IDENTITY_INVALID_ID', `${JSON.stringify(uri)} is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`);
  }
  return spiffeId(m[2], m[3], m[1]);
}
