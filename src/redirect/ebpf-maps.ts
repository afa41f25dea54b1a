// Byte layouts of the maps in bpf/redirect.bpf.c (keep the two in step) and their
// encoding as bpftool arguments. Addresses and ports are network byte order, as in the C.

import { ipv4ToInt } from '../model/cidr.ts';
import type { Cidr } from '../model/cidr.ts';
import { redirectError, RedirectErrors } from './errors.ts';

export const MapNames = {
  settings: 'weft_settings',
  skipPorts: 'weft_skip_ports',
  skipCidrs: 'weft_skip_cidrs',
  pods: 'weft_pods',
  byCookie: 'weft_by_cookie',
  conns: 'weft_conns',
  inboundExempt: 'weft_inbound_exempt',
  inboundSkipPorts: 'weft_inbound_skip_ports',
  inboundSocks: 'weft_inbound_socks',
} as const;

export const ProgNames = {
  connect4: 'weft_connect4',
  connect6: 'weft_connect6',
  sockops: 'weft_sockops',
  getpeername4: 'weft_getpeername4',
  getpeername6: 'weft_getpeername6',
  getsockopt: 'weft_getsockopt',
  inbound: 'weft_inbound',
} as const;

export type ProgName = (typeof ProgNames)[keyof typeof ProgNames];

const POD_ID_LEN = 128;
const CGROUP_PATH_LEN = 384;

export interface Settings {
  readonly agentAddress: string;
  readonly agentPort: number;
  /** Identifies the object file the pins came from (first 4 bytes of its SHA-256). */
  readonly buildId: number;
  /** Inbound sockets per pod (one per proxy worker); 0 turns inbound capture off. */
  readonly inboundSlots: number;
}

export interface PodRecord {
  readonly podId: string;
  readonly cgroupPath: string;
}

function ipv4Bytes(ip: string): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ipv4ToInt(ip));
  return b;
}

function ipv4FromBytes(b: Buffer, offset: number): string {
  return [b[offset], b[offset + 1], b[offset + 2], b[offset + 3]].join('.');
}

/** Array key 0, as every single-entry array map uses. */
export function indexKey(index: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(index);
  return b;
}

/** struct weft_settings: agent_ip(4, be) agent_port(2, be) inbound_slots(2, host) build_id(4, host) reserved2(4). */
export function encodeSettings(s: Settings): Buffer {
  const b = Buffer.alloc(16);
  ipv4Bytes(s.agentAddress).copy(b, 0);
  b.writeUInt16BE(s.agentPort, 4);
  b.writeUInt16LE(s.inboundSlots, 6);
  b.writeUInt32LE(s.buildId >>> 0, 8);
  return b;
}

export function decodeSettings(b: Buffer): Settings {
  expectSize('weft_settings value', b, 16);
  return { agentAddress: ipv4FromBytes(b, 0), agentPort: b.readUInt16BE(4), inboundSlots: b.readUInt16LE(6), buildId: b.readUInt32LE(8) };
}

/** weft_inbound_exempt key: a source IPv4 address in network order. */
export function encodeIpKey(ip: string): Buffer {
  return ipv4Bytes(ip);
}

export function decodeIpKey(b: Buffer): string {
  expectSize('weft_inbound_exempt key', b, 4);
  return ipv4FromBytes(b, 0);
}

/** weft_skip_ports key: a __u16 holding the port in network order. */
export function encodePortKey(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(port);
  return b;
}

export function decodePortKey(b: Buffer): number {
  expectSize('weft_skip_ports key', b, 2);
  return b.readUInt16BE(0);
}

/** LPM trie key: prefixlen (__u32, host order) then the address bytes. */
export function encodeCidrKey(cidr: Cidr): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(popcount(cidr.mask), 0);
  b.writeUInt32BE(cidr.base >>> 0, 4);
  return b;
}

function popcount(n: number): number {
  let c = 0;
  for (let v = n >>> 0; v !== 0; v = (v & (v - 1)) >>> 0) c++;
  return c;
}

/** The canonical `a.b.c.d/len` text of an LPM key. */
export function decodeCidrKey(b: Buffer): string {
  expectSize('weft_skip_cidrs key', b, 8);
  return `${ipv4FromBytes(b, 4)}/${b.readUInt32LE(0)}`;
}

export function encodePodKey(ip: string): Buffer {
  return ipv4Bytes(ip);
}

export function decodePodKey(b: Buffer): string {
  expectSize('weft_pods key', b, 4);
  return ipv4FromBytes(b, 0);
}

/** struct weft_pod: NUL-padded pod id (128) and cgroup path (384). */
export function encodePodRecord(r: PodRecord): Buffer {
  const b = Buffer.alloc(POD_ID_LEN + CGROUP_PATH_LEN);
  const id = Buffer.from(r.podId);
  const path = Buffer.from(r.cgroupPath);
  if (id.length >= POD_ID_LEN || path.length >= CGROUP_PATH_LEN) {
    throw redirectError(RedirectErrors.BAD_TARGET, `pod ${JSON.stringify(r.podId)}: id or cgroup path too long for the pods map`);
  }
  id.copy(b, 0);
  path.copy(b, POD_ID_LEN);
  return b;
}

export function decodePodRecord(b: Buffer): PodRecord {
  expectSize('weft_pods value', b, POD_ID_LEN + CGROUP_PATH_LEN);
  return { podId: cString(b.subarray(0, POD_ID_LEN)), cgroupPath: cString(b.subarray(POD_ID_LEN)) };
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end === -1 ? b.length : end).toString();
}

export const ONE = Buffer.from([1]);

function expectSize(what: string, b: Buffer, size: number): void {
  if (b.length !== size) {
    throw redirectError(RedirectErrors.BPFTOOL_FAILED, `${what} is ${b.length} bytes, expected ${size}: bpf object and loader disagree`);
  }
}

/** `hex aa bb ...` tokens for a bpftool key or value argument. */
export function hexArgs(b: Buffer): string[] {
  return ['hex', ...Array.from(b, (x) => x.toString(16).padStart(2, '0'))];
}

/** bpftool -j prints bytes as ["0xc6", "0x12", ...]. */
export function bytesFromJson(value: unknown, what: string): Buffer {
  if (!Array.isArray(value) || !value.every((x) => typeof x === 'string' && /^0x[0-9a-f]{1,2}$/i.test(x))) {
    throw redirectError(RedirectErrors.BPFTOOL_FAILED, `bpftool printed ${what} in an unexpected form: ${JSON.stringify(value)?.slice(0, 200)}`);
  }
  return Buffer.from((value as string[]).map((x) => parseInt(x, 16)));
}
