// Error codes of the mesh model. Callers branch on these, never on messages.
import { WeftError } from '../core/errors.ts';

export const ModelErrors = {
  /** A string is not a `spiffe://<td>/ns/<ns>/sa/<sa>` id. */
  BAD_SPIFFE_ID: 'WEFT_MODEL_BAD_SPIFFE_ID',
  /** A string is not an IPv4 address or CIDR. */
  BAD_CIDR: 'WEFT_MODEL_BAD_CIDR',
  /** A node resource (the form pushed to agents) is malformed. */
  BAD_RESOURCE: 'WEFT_MODEL_BAD_RESOURCE',
} as const;

export type ModelErrorCode = (typeof ModelErrors)[keyof typeof ModelErrors];

export function modelError(code: ModelErrorCode, message: string, cause?: unknown): WeftError {
  return new WeftError(code, message, cause === undefined ? undefined : { cause });
}
