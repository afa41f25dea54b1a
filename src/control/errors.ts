// Error codes of the control plane and its agent-side client. Callers branch on the code;
// the message names the node, token file, resource or flag involved.

import { WeftError } from '../core/errors.ts';

export const ControlErrors = {
  /** A bootstrap token file is unreadable or malformed. */
  BAD_TOKEN_FILE: 'WEFT_CONTROL_BAD_TOKEN_FILE',
  /** A caller presented no credential, an unknown token or an unverified certificate. */
  UNAUTHENTICATED: 'WEFT_CONTROL_UNAUTHENTICATED',
  /** An authenticated node asked for something that belongs to another node. */
  WRONG_NODE: 'WEFT_CONTROL_WRONG_NODE',
  /** A node name is not a DNS-1123 subdomain (or too long to fit a certificate name). */
  BAD_NODE_NAME: 'WEFT_CONTROL_BAD_NODE_NAME',
  /** A channel CSR is malformed, badly signed, or names something other than what would be issued. */
  BAD_CSR: 'WEFT_CONTROL_BAD_CSR',
  /** The CA material given for channel certificates is unusable. */
  BAD_CA_MATERIAL: 'WEFT_CONTROL_BAD_CA_MATERIAL',
  /** The server's own TLS material is missing or refused by TLS. */
  BAD_TLS_MATERIAL: 'WEFT_CONTROL_BAD_TLS_MATERIAL',
  /** The gRPC server could not listen. */
  LISTEN_FAILED: 'WEFT_CONTROL_LISTEN_FAILED',
  /** A certificate request to the control plane failed (the message carries the server's reason). */
  SIGN_FAILED: 'WEFT_CONTROL_SIGN_FAILED',
  /** The control plane could not be reached, or a call to it failed without a reason of its own. */
  UNAVAILABLE: 'WEFT_CONTROL_UNAVAILABLE',
  /** The client was used after close(). */
  CLOSED: 'WEFT_CONTROL_CLOSED',
  /** The server ended a config stream for the agent to resubscribe (it fell behind the change history, or refused a push whole). */
  RESYNC: 'WEFT_CONTROL_RESYNC',
  /** Options given to a control component are invalid. */
  BAD_OPTIONS: 'WEFT_CONTROL_BAD_OPTIONS',
  /** A revocation request (or the stored list of revoked nodes) is malformed; the message names the field. */
  BAD_REVOCATION: 'WEFT_CONTROL_BAD_REVOCATION',
  /** The node (or the certificate it presented) was revoked by an operator: no certificate, no config. */
  REVOKED: 'WEFT_CONTROL_REVOKED',
  /** A call to the control plane's admin endpoint lacked the admin token, or gave another. */
  ADMIN_UNAUTHENTICATED: 'WEFT_CONTROL_ADMIN_UNAUTHENTICATED',
} as const;

export type ControlErrorCode = (typeof ControlErrors)[keyof typeof ControlErrors];

export function controlError(code: ControlErrorCode, message: string, cause?: unknown): WeftError {
  return new WeftError(code, message, cause === undefined ? undefined : { cause });
}
