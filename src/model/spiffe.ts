// SPIFFE ids of workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.

import { modelError, ModelErrors } from './errors.ts';
import { DEFAULT_TRUST_DOMAIN } from './types.ts';

export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The full `spiffe://...` URI. */
  readonly uri: string;
}

// SPIFFE spec: trust domain of lowercase letters, digits, '.', '-', '_'.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
// Kubernetes: a namespace is a DNS-1123 label, a service account a DNS-1123 subdomain.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const URI_FORM = /^spiffe:\/\/([^/?#]+)\/ns\/([^/?#]+)\/sa\/([^/?#]+)$/;

export function isTrustDomain(s: string): boolean {
  return TRUST_DOMAIN.test(s);
}

/** Builds the id, rejecting names Kubernetes (or SPIFFE) would not accept. */
export function spiffeId(namespace: string, serviceAccount: string, trustDomain: string = DEFAULT_TRUST_DOMAIN): SpiffeId {
  if (!TRUST_DOMAIN.test(trustDomain)) {
    throw modelError(ModelErrors.BAD_SPIFFE_ID, `trust domain ${JSON.stringify(trustDomain)} must be lowercase letters, digits, '.', '-' or '_'`);
  }
  if (!DNS_LABEL.test(namespace)) {
    throw modelError(ModelErrors.BAD_SPIFFE_ID, `namespace ${JSON.stringify(namespace)} is not a DNS-1123 label`);
  }
  if (serviceAccount.length > 253 || !DNS_SUBDOMAIN.test(serviceAccount)) {
    throw modelError(ModelErrors.BAD_SPIFFE_ID, `service account ${JSON.stringify(serviceAccount)} is not a DNS-1123 subdomain`);
  }
  return Object.freeze({ trustDomain, namespace, serviceAccount, uri: `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}` });
}

/** The URI string alone. */
export function spiffeUri(namespace: string, serviceAccount: string, trustDomain: string = DEFAULT_TRUST_DOMAIN): string {
  return spiffeId(namespace, serviceAccount, trustDomain).uri;
}

/** Parses `spiffe://td/ns/N/sa/S`; other paths, ports, queries, fragments and escapes are refused. */
export function parseSpiffeId(uri: string): SpiffeId {
  const m = uri.length <= 2048 ? URI_FORM.exec(uri) : null;
  if (m === null) {
    throw modelError(ModelErrors.BAD_SPIFFE_ID, `${JSON.stringify(uri)} is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`);
  }
  return spiffeId(m[2] ?? '', m[3] ?? '', m[1]);
}

/** parseSpiffeId that answers undefined instead of throwing. */
export function tryParseSpiffeId(uri: string): SpiffeId | undefined {
  try {
    return parseSpiffeId(uri);
  } catch {
    return undefined;
  }
}
