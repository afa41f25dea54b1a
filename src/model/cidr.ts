// IPv4 CIDR blocks for policy ipBlocks: parsed once, matched as 32-bit integers.

import { isIPv4 } from 'node:net';
import { modelError, ModelErrors } from './errors.ts';

export interface Cidr {
  readonly base: number;
  readonly mask: number;
  /** Canonical text, e.g. `198.18.0.0/15`. */
  readonly text: string;
}

export function ipv4ToInt(ip: string): number {
  const parts = ip.split('.');
  return ((Number(parts[0]) << 24) | (Number(parts[1]) << 16) | (Number(parts[2]) << 8) | Number(parts[3])) >>> 0;
}

function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** `a.b.c.d/len` or a bare address (/32). Host bits set below the prefix are refused, as Kubernetes does. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash === -1 ? text : text.slice(0, slash);
  const lenText = slash === -1 ? '32' : text.slice(slash + 1);
  if (!isIPv4(addr) || !/^(3[0-2]|[12]?[0-9])$/.test(lenText)) {
    throw modelError(ModelErrors.BAD_CIDR, `${JSON.stringify(text)} is not an IPv4 address or CIDR (a.b.c.d/0-32)`);
  }
  const len = Number(lenText);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const ip = ipv4ToInt(addr);
  const base = (ip & mask) >>> 0;
  if (base !== ip) {
    throw modelError(ModelErrors.BAD_CIDR, `${JSON.stringify(text)} has host bits set; did you mean ${intToIpv4(base)}/${len}?`);
  }
  return Object.freeze({ base, mask, text: `${addr}/${len}` });
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  return isIPv4(ip) && ((ipv4ToInt(ip) & cidr.mask) >>> 0) === cidr.base;
}
