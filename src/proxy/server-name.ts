// The TLS server name (SNI) an outbound agent sends so the inbound agent, which serves many
// local identities on one port, presents the right certificate. The name is derived from the
// SPIFFE id and reversible, so the server needs no table of names:
//
//   spiffe://cluster.local/ns/shop/sa/web  ->  web.shop.cluster.local.weft
//
// (`<sa>.<ns>.<trust-domain>.weft`) when the service account is one DNS label, the namespace
// a DNS label and the trust domain DNS labels. Anything else (a dotted service account, a
// trust domain with '_', a non-Kubernetes path, a name past 253 characters, or a trust domain
// whose last label is `b32`) is sent as the base32 of the whole URI cut into 63-character
// labels, ending in `.b32.weft`. The client still checks the certificate's URI SAN, so the
// name only chooses a certificate; it authorises nothing.

import { ProxyErrors, proxyError } from './errors.ts';

const SUFFIX = '.weft';
const B32_SUFFIX = '.b32.weft';
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const K8S_FORM = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;
const MAX_NAME = 253;

function isDnsName(s: string): boolean {
  return s.length > 0 && s.split('.').every((l) => LABEL.test(l));
}

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function unbase32(s: string): Uint8Array | undefined {
  const out = new Uint8Array(Math.floor((s.length * 5) / 8));
  let bits = 0;
  let value = 0;
  let n = 0;
  for (const ch of s) {
    const v = ALPHABET.indexOf(ch);
    if (v < 0) return undefined;
    value = ((value << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      out[n++] = (value >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  return out;
}

function readable(identity: string): string | undefined {
  const m = K8S_FORM.exec(identity);
  if (m === null) return undefined;
  const [, td = '', ns = '', sa = ''] = m;
  if (!LABEL.test(sa) || !LABEL.test(ns) || !isDnsName(td) || td === 'b32' || td.endsWith('.b32')) return undefined;
  const name = `${sa}.${ns}.${td}${SUFFIX}`;
  return name.length <= MAX_NAME ? name : undefined;
}

/** The server name that asks for `identity`'s certificate. Throws WEFT_PROXY_BAD_SERVER_NAME when it cannot fit. */
export function serverNameFor(identity: string): string {
  const simple = readable(identity);
  if (simple !== undefined) return simple;
  const encoded = base32(new TextEncoder().encode(identity));
  const labels = encoded.match(/.{1,63}/g) ?? [];
  const name = `${labels.join('.')}${B32_SUFFIX}`;
  if (labels.length === 0 || name.length > MAX_NAME) {
    throw proxyError(ProxyErrors.BAD_SERVER_NAME, `SPIFFE id ${JSON.stringify(identity)} is too long to carry in a TLS server name`);
  }
  return name;
}

/** The SPIFFE id a server name asks for, or undefined when it is not a name serverNameFor makes. */
export function identityForServerName(serverName: string): string | undefined {
  const name = serverName.toLowerCase();
  let identity: string | undefined;
  if (name.endsWith(B32_SUFFIX)) {
    const bytes = unbase32(name.slice(0, -B32_SUFFIX.length).replaceAll('.', ''));
    if (bytes === undefined) return undefined;
    try {
      identity = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return undefined;
    }
  } else if (name.endsWith(SUFFIX)) {
    const labels = name.slice(0, -SUFFIX.length).split('.');
    if (labels.length < 3) return undefined;
    identity = `spiffe://${labels.slice(2).join('.')}/ns/${labels[1]}/sa/${labels[0]}`;
  }
  // Only canonical names: one identity, one name.
  return identity !== undefined && serverNameFor(identity) === name ? identity : undefined;
}
