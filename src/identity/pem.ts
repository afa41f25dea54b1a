// PEM and serial-number plumbing shared by the CA, the verifier and the store.

import { identityError } from './errors.ts';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block in `pem`, in order, each ending with a newline. */
export function splitPemCertificates(pem: string): string[] {
  return Array.from(pem.matchAll(PEM_CERTIFICATE), (m) => `${m[0]}\n`);
}

/** Wraps DER bytes as PEM with the given label. */
export function derToPem(label: string, der: ArrayBuffer | Uint8Array): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * One spelling for serial numbers: lowercase hex without leading zeros. Node prints them
 * uppercase, @peculiar/x509 lowercase, CRL tools with a leading 00 for the sign bit.
 */
export function normalizeSerial(serial: string): string {
  const hex = serial.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex)) {
    throw identityError('WEFT_IDENTITY_SERIAL_INVALID', `serial ${JSON.stringify(serial)} is not hexadecimal`);
  }
  const trimmed = hex.replace(/^0+/, '');
  return trimmed === '' ? '0' : trimmed;
}

/**
 * A normalised serial as @peculiar/x509 wants it for DER: an even number of hex digits
 * and a leading 00 when the top bit is set, so the INTEGER stays positive.
 */
export function derSerialHex(serial: string): string {
  let hex = normalizeSerial(serial);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  return parseInt(hex.slice(0, 2), 16) >= 0x80 ? `00${hex}` : hex;
}
