// The `reason` label of weft_tunnel_handshake_failures_total: a small fixed vocabulary, so a
// flood of odd handshakes cannot blow up metric cardinality. The detail goes to the log.

export const HandshakeReasons = {
  /** The peer's chain does not verify against the trust bundle (expired, other CA, ...). */
  UNTRUSTED_PEER: 'untrusted_peer',
  /** A client presented no certificate. */
  NO_PEER_CERTIFICATE: 'no_peer_certificate',
  /** The chain verified but the identity was refused (wrong SAN, revoked, not the one asked for). */
  IDENTITY_REJECTED: 'identity_rejected',
  /** The server name (SNI) is missing or names no identity on this node. */
  UNKNOWN_SERVER_NAME: 'unknown_server_name',
  /** The bytes were not TLS (plain TCP, HTTP/1 text, garbage). */
  NOT_TLS: 'not_tls',
  /** TLS older than 1.3 or no common cipher. */
  TLS_VERSION: 'tls_version',
  /** An established session ended because a certificate it used was revoked (a new CRL). */
  REVOKED: 'revoked',
  /** ALPN did not settle on h2. */
  NO_H2: 'no_h2',
  /** The peer refused us with a TLS alert. */
  PEER_ALERT: 'peer_alert',
  /** The handshake did not finish in time. */
  TIMEOUT: 'timeout',
  /** The peer went away during the handshake. */
  ABORTED: 'aborted',
  OTHER: 'other',
} as const;

export type HandshakeReason = (typeof HandshakeReasons)[keyof typeof HandshakeReasons];

const NOT_TLS_CODES = new Set([
  'ERR_SSL_HTTP_REQUEST', 'ERR_SSL_HTTPS_PROXY_REQUEST', 'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_UNKNOWN_PROTOCOL',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_RECORD_LENGTH_MISMATCH', 'ERR_SSL_UNEXPECTED_RECORD',
  'ERR_SSL_RECORD_LAYER_FAILURE', 'ERR_SSL_UNEXPECTED_MESSAGE',
  // A record or message with an impossible length: garbage, or a hand-made "TLS" header.
  'ERR_SSL_DATA_LENGTH_TOO_LONG', 'ERR_SSL_EXCESSIVE_MESSAGE_SIZE', 'ERR_SSL_ENCRYPTED_LENGTH_TOO_LONG', 'ERR_SSL_BAD_PACKET_LENGTH',
  'ERR_SSL_BAD_LENGTH', 'ERR_SSL_LENGTH_MISMATCH', 'ERR_SSL_RECORD_TOO_SMALL', 'ERR_SSL_BAD_RECORD_TYPE',
]);
const VERSION_CODES = new Set([
  'ERR_SSL_UNSUPPORTED_PROTOCOL', 'ERR_SSL_NO_SHARED_CIPHER', 'ERR_SSL_NO_PROTOCOLS_AVAILABLE', 'ERR_SSL_VERSION_TOO_LOW',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
]);

function codeOf(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return '';
}

/** Classifies a TLS-level error from either side of a handshake. */
export function classifyHandshakeError(err: unknown): HandshakeReason {
  const code = codeOf(err);
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return HandshakeReasons.TIMEOUT;
  if (NOT_TLS_CODES.has(code)) return HandshakeReasons.NOT_TLS;
  if (VERSION_CODES.has(code)) return HandshakeReasons.TLS_VERSION;
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return HandshakeReasons.NO_PEER_CERTIFICATE;
  if (code.startsWith('ERR_SSL_TLSV1_ALERT_') || code.startsWith('ERR_SSL_SSLV3_ALERT_') || code.startsWith('ERR_SSL_TLSV13_ALERT_')) {
    return HandshakeReasons.PEER_ALERT;
  }
  // OpenSSL X509 verification results surface as bare codes such as UNABLE_TO_VERIFY_LEAF_SIGNATURE.
  // (errno codes such as ECONNRESET have no underscore).
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED') return HandshakeReasons.ABORTED;
  if (/^[A-Z][A-Z0-9]*_[A-Z0-9_]+$/.test(code) && !code.startsWith('ERR_')) return HandshakeReasons.UNTRUSTED_PEER;
  return HandshakeReasons.OTHER;
}

/** Classifies a server-side socket whose client certificate OpenSSL did not accept. */
export function classifyUnauthorizedClient(hasCertificate: boolean): HandshakeReason {
  return hasCertificate ? HandshakeReasons.UNTRUSTED_PEER : HandshakeReasons.NO_PEER_CERTIFICATE;
}
