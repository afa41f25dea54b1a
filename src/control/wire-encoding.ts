// The server's encoding of DeltaResponse (control.proto), with every Resource encoded once
// and reused by every agent that gets it: a response is then its resources' bytes put side
// by side, not a protobuf encoding of each resource again per agent (which, with 1,000
// agents syncing, was most of the control plane's CPU and garbage). Hand-written because
// protobufjs cannot embed an already-encoded message; the wire format is protobuf's, and a
// test decodes it with the generated decoder.

import type { WireResource } from './protocol.ts';

/** A DeltaResponse with its resources, removals and `more` already encoded (encodeDeltaTail). */
export interface EncodedDeltaResponse {
  readonly systemVersion: string;
  readonly nonce: string;
  /** Fields 3, 4 and 5; the same bytes serve every agent sent the same part. */
  readonly tail: Buffer;
}

/** What fields 3-5 of a DeltaResponse carry, with each resource an encoded `Resource`. */
export interface DeltaTail {
  readonly resources: readonly Buffer[];
  readonly removed: readonly string[];
  readonly more: boolean;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  buf[at++] = n;
  return at;
}

// Field `field`, wire type 2 (length-delimited): tag byte(s), length, bytes.
function fieldLength(field: number, bytes: number): number {
  return varintLength(field * 8 + 2) + varintLength(bytes) + bytes;
}

function writeField(buf: Buffer, at: number, field: number, bytes: Buffer | string, length: number): number {
  at = writeVarint(buf, at, field * 8 + 2);
  at = writeVarint(buf, at, length);
  if (typeof bytes === 'string') at += buf.write(bytes, at, 'utf8');
  else at += bytes.copy(buf, at);
  return at;
}

/** `Resource { 1 type, 2 name, 3 version, 4 body }`, encoded. */
export function encodeResource(r: WireResource): Buffer {
  const strings = [r.type, r.name, r.version].map((s) => ({ s, n: Buffer.byteLength(s) }));
  let total = fieldLength(4, r.body.length);
  strings.forEach(({ n }, i) => { if (n > 0) total += fieldLength(i + 1, n); });
  // Kept as long as the resource (WireEncoder): memory of its own, not a slice of Node's
  // shared pool, where it would pin a whole 64 KiB slab (155 MB of them at 100 agents and
  // 5,000 pods after 30 s of churn, most holding one or two live encodings).
  const buf = Buffer.allocUnsafeSlow(total);
  let at = 0;
  strings.forEach(({ s, n }, i) => { if (n > 0) at = writeField(buf, at, i + 1, s, n); });
  if (r.body.length > 0) at = writeField(buf, at, 4, r.body, r.body.length);
  return at === total ? buf : buf.subarray(0, at);
}

/** Fields 3 (repeated Resource), 4 (repeated removed) and 5 (more) of a DeltaResponse. */
export function encodeDeltaTail(m: DeltaTail): Buffer {
  const removed = m.removed.map((k) => Buffer.byteLength(k));
  let total = m.more ? 2 : 0;
  for (const r of m.resources) total += fieldLength(3, r.length);
  for (const n of removed) total += fieldLength(4, n);
  // Kept as long as its part (the server's tail cache): memory of its own, as encodeResource.
  const buf = Buffer.allocUnsafeSlow(total);
  let at = 0;
  for (const r of m.resources) at = writeField(buf, at, 3, r, r.length);
  m.removed.forEach((k, i) => { at = writeField(buf, at, 4, k, removed[i]); });
  if (m.more) {
    buf[at++] = 5 * 8; // field 5, varint
    buf[at++] = 1;
  }
  return buf;
}

/** `DeltaResponse { 1 system_version, 2 nonce, 3-5 the tail }`, encoded (protobuf takes fields in any order). */
export function encodeDeltaResponse(m: EncodedDeltaResponse): Buffer {
  const sv = Buffer.byteLength(m.systemVersion);
  const nonce = Buffer.byteLength(m.nonce);
  const head = (sv > 0 ? fieldLength(1, sv) : 0) + (nonce > 0 ? fieldLength(2, nonce) : 0);
  const buf = Buffer.allocUnsafe(head + m.tail.length);
  let at = 0;
  if (sv > 0) at = writeField(buf, at, 1, m.systemVersion, sv);
  if (nonce > 0) at = writeField(buf, at, 2, m.nonce, nonce);
  m.tail.copy(buf, at);
  return buf;
}
