// The lightweight agents' decoder for DeltaResponse: reads the protobuf wire format of
// control.proto directly, without building an object per resource, so one process can run
// hundreds of agents over the real protocol. It yields each resource's type and name as
// strings and its body as a view into the message (no copy). Anything it cannot read
// throws: a bench agent must not guess.

export interface ScannedResource {
  readonly type: string;
  readonly name: string;
  readonly version: string;
  /** A view into the message buffer. */
  readonly body: Buffer;
}

export interface ScannedResponse {
  readonly systemVersion: string;
  readonly nonce: string;
  readonly resources: readonly ScannedResource[];
  readonly removed: number;
  readonly more: boolean;
  /** Bytes of the whole message. */
  readonly bytes: number;
  /** Bytes of the resource bodies (what the agent decodes). */
  readonly bodyBytes: number;
}

function varint(b: Buffer, at: { i: number }): number {
  let shift = 0;
  let out = 0;
  for (;;) {
    if (at.i >= b.length) throw new Error('truncated varint');
    const byte = b[at.i++];
    out += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return out;
    shift += 7;
    if (shift > 49) throw new Error('varint too long');
  }
}

function lengthDelimited(b: Buffer, at: { i: number }): Buffer {
  const n = varint(b, at);
  if (at.i + n > b.length) throw new Error('truncated field');
  const view = b.subarray(at.i, at.i + n);
  at.i += n;
  return view;
}

function skip(b: Buffer, wire: number, at: { i: number }): void {
  if (wire === 0) varint(b, at);
  else if (wire === 2) lengthDelimited(b, at);
  else if (wire === 1) at.i += 8;
  else if (wire === 5) at.i += 4;
  else throw new Error(`unsupported wire type ${wire}`);
}

function resource(b: Buffer): ScannedResource {
  const at = { i: 0 };
  let type = '';
  let name = '';
  let version = '';
  let body: Buffer = Buffer.alloc(0);
  while (at.i < b.length) {
    const tag = varint(b, at);
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire !== 2) {
      skip(b, wire, at);
      continue;
    }
    const v = lengthDelimited(b, at);
    if (field === 1) type = v.toString('latin1');
    else if (field === 2) name = v.toString('latin1');
    else if (field === 3) version = v.toString('latin1');
    else if (field === 4) body = v;
  }
  return { type, name, version, body };
}

/** DeltaResponse { 1 system_version, 2 nonce, 3 repeated Resource, 4 repeated removed, 5 more }. */
export function scanDeltaResponse(b: Buffer): ScannedResponse {
  const at = { i: 0 };
  let systemVersion = '';
  let nonce = '';
  const resources: ScannedResource[] = [];
  let removed = 0;
  let more = false;
  let bodyBytes = 0;
  while (at.i < b.length) {
    const tag = varint(b, at);
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 5 && wire === 0) {
      more = varint(b, at) !== 0;
      continue;
    }
    if (wire !== 2) {
      skip(b, wire, at);
      continue;
    }
    const v = lengthDelimited(b, at);
    if (field === 1) systemVersion = v.toString('latin1');
    else if (field === 2) nonce = v.toString('latin1');
    else if (field === 3) {
      const r = resource(v);
      bodyBytes += r.body.length;
      resources.push(r);
    } else if (field === 4) removed++;
  }
  return { systemVersion, nonce, resources, removed, more, bytes: b.length, bodyBytes };
}
