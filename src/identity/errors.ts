// The identity module's error catalogue. Callers branch on the code; the message says
// which identity, node, serial or file was involved.

import { WeftError } from '../core/errors.ts';

export const identityErrorCodes = Object.freeze({
  WEFT_IDENTITY_INVALID_ID: 'a SPIFFE id, namespace, service account or trust domain is malformed',
  WEFT_IDENTITY_WRONG_TRUST_DOMAIN: 'an identity belongs to a trust domain other than this CA\'s',
  WEFT_IDENTITY_NOT_ON_NODE: 'no pod with that service account is scheduled on the asking node',
  WEFT_IDENTITY_BAD_NODE: 'the requesting node name is empty or malformed',
  WEFT_IDENTITY_CSR_MALFORMED: 'the CSR is not a parseable PKCS#10 request in PEM',
  WEFT_IDENTITY_CSR_BAD_SIGNATURE: 'the CSR signature does not verify with the key it carries',
  WEFT_IDENTITY_CSR_KEY_UNSUPPORTED: 'the CSR key is not ECDSA P-256',
  WEFT_IDENTITY_CSR_IDENTITY_MISMATCH: 'the CSR subject alternative names are not exactly the requested SPIFFE id',
  WEFT_IDENTITY_CA_STORE_IO: 'the CA material could not be read or written',
  WEFT_IDENTITY_CA_STORE_CONFLICT: 'another process stored a CA (or changed the stored one) first',
  WEFT_IDENTITY_CA_STORE_CORRUPT: 'the stored CA material is incomplete, unparseable or its key does not match its certificate',
  WEFT_IDENTITY_CA_EXPIRED: 'the stored CA certificate is outside its validity period',
  WEFT_IDENTITY_CA_TRUST_DOMAIN_MISMATCH: 'the stored CA certificate was made for another trust domain',
  WEFT_IDENTITY_SERIAL_INVALID: 'a certificate serial number is not a hexadecimal string',
  WEFT_IDENTITY_BUNDLE_INVALID: 'the trust bundle is empty or holds something other than CA certificates',
  WEFT_IDENTITY_CRL_INVALID: 'the CRL is unparseable or not signed by a CA in the trust bundle',
  WEFT_IDENTITY_PEER_MISSING: 'the TLS peer presented no certificate',
  WEFT_IDENTITY_PEER_MALFORMED: 'the peer certificate or chain could not be parsed',
  WEFT_IDENTITY_PEER_UNTRUSTED: 'the peer certificate does not chain to the trust bundle',
  WEFT_IDENTITY_PEER_EXPIRED: 'the peer certificate (or a certificate in its chain) has expired',
  WEFT_IDENTITY_PEER_NOT_YET_VALID: 'the peer certificate (or a certificate in its chain) is not valid yet',
  WEFT_IDENTITY_PEER_REVOKED: 'the peer certificate serial is on the CRL',
  WEFT_IDENTITY_PEER_IS_CA: 'the peer presented a CA certificate as its leaf',
  WEFT_IDENTITY_PEER_NO_URI_SAN: 'the peer certificate carries no URI subject alternative name',
  WEFT_IDENTITY_PEER_MULTIPLE_URI_SAN: 'the peer certificate carries more than one URI subject alternative name',
  WEFT_IDENTITY_PEER_WRONG_IDENTITY: 'the peer SPIFFE id is not the expected one',
  WEFT_IDENTITY_ISSUED_INVALID: 'the issuer returned a certificate that does not match the request',
  WEFT_IDENTITY_ISSUE_TIMEOUT: 'the issuer did not answer within the request timeout',
  WEFT_IDENTITY_NOT_REQUESTED: 'the certificate store was asked about an identity it does not manage',
  WEFT_IDENTITY_STORE_CLOSED: 'the certificate store is closed',
  WEFT_IDENTITY_TLS_MATERIAL_INVALID: 'key, certificate or trust bundle could not be loaded into a TLS context',
});

export type IdentityErrorCode = keyof typeof identityErrorCodes;

export function identityError(code: IdentityErrorCode, message: string, cause?: unknown): WeftError {
  return new WeftError(code, message, cause === undefined ? undefined : { cause });
}
