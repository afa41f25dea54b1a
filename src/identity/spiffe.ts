// SPIFFE ids for Kubernetes workloads: the model's (src/model/spiffe.ts), with malformed
// ids reported under identity's own code, WEFT_IDENTITY_INVALID_ID, as callers of this
// module branch on it.

import { isWeftError } from '../core/errors.ts';
import { ModelErrors } from '../model/errors.ts';
import { parseSpiffeId as parseModelId, spiffeId as modelId, type SpiffeId } from '../model/spiffe.ts';
import { identityError } from './errors.ts';

export { DEFAULT_TRUST_DOMAIN } from '../model/types.ts';
export type { SpiffeId } from '../model/spiffe.ts';

function asIdentityError<T>(make: () => T): T {
  try {
    return make();
  } catch (err: unknown) {
    if (isWeftError(err, ModelErrors.BAD_SPIFFE_ID)) throw identityError('WEFT_IDENTITY_INVALID_ID', err.message, err);
    throw err;
  }
}

/** Builds a SpiffeId, rejecting names Kubernetes would not accept. */
export function spiffeId(namespace: string, serviceAccount: string, trustDomain?: string): SpiffeId {
  return asIdentityError(() => modelId(namespace, serviceAccount, trustDomain));
}

/** Parses `spiffe://td/ns/N/sa/S`; anything else (other paths, query, port) is refused. */
export function parseSpiffeId(uri: string): SpiffeId {
  return asIdentityError(() => parseModelId(uri));
}
