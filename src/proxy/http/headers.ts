// Header handling between a downstream and an upstream HTTP hop, as RFC 9110 section 7.6.1
// says for an intermediary: hop-by-hop fields (Connection, the options it names, Keep-Alive,
// Proxy-Connection, TE, Transfer-Encoding, Upgrade, HTTP2-Settings) are not forwarded, except
// `te: trailers` to an HTTP/2 upstream (gRPC needs it); HTTP/2 pseudo-headers are rebuilt per
// hop; Host and :authority are one value. The mesh never trusts headers for identity: an
// `x-forwarded-client-cert` from a client is dropped (the tunnel's mTLS is the only proof of
// who calls), and `x-forwarded-*` / `forwarded` are passed on untouched and never read.
// Gateway API header modifiers are applied here too. Pure.

import type { HeaderModifier, RequestHeaders } from './contracts.ts';

/** Headers as node:http and node:http2 take them. */
export type OutHeaders = Record<string, string | string[]>;

const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'http2-settings',
]);

/** Dropped from requests: only the mesh may assert who the client is. */
const UNTRUSTED: ReadonlySet<string> = new Set(['x-forwarded-client-cert']);

function values(v: string | readonly string[] | undefined): readonly string[] {
  if (v === undefined) return [];
  return typeof v === 'string' ? [v] : v;
}

/** The lowercased option names of Connection header values. */
export function connectionOptions(v: string | readonly string[] | undefined): Set<string> {
  const out = new Set<string>();
  for (const line of values(v)) {
    for (const token of line.split(',')) {
      const t = token.trim().toLowerCase();
      if (t !== '') out.add(t);
    }
  }
  return out;
}

/** True when a TE header offers trailers. */
export function acceptsTrailers(te: string | readonly string[] | undefined): boolean {
  return values(te).some((line) => line.split(',').some((t) => t.split(';')[0]?.trim().toLowerCase() === 'trailers'));
}

const NONE: ReadonlySet<string> = new Set();

// Per request and per response: no entries array, no Set unless a Connection header names options.
function copyEndToEnd(input: RequestHeaders, drop: ReadonlySet<string>): OutHeaders {
  const named = input.connection === undefined ? NONE : connectionOptions(input.connection);
  const out: OutHeaders = {};
  for (const name in input) {
    const v = input[name];
    if (v === undefined || name.charCodeAt(0) === 58 /* ':' */ || !Object.hasOwn(input, name)) continue;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower) || drop.has(lower)) continue;
    out[lower] = typeof v === 'string' ? v : [...v];
  }
  return out;
}

/** Dropped from requests besides hop-by-hop fields: the proxy answers `Expect: 100-continue` itself. */
const REQUEST_ONLY_DROP: ReadonlySet<string> = new Set([...UNTRUSTED, 'expect', 'host']);

/**
 * A client's request headers reduced to what passes to any next hop: no pseudo-headers,
 * no hop-by-hop fields, no host (the authority travels apart), no expect, nothing the mesh
 * alone may assert. Route filters then edit the result.
 */
export function endToEndRequestHeaders(input: RequestHeaders): OutHeaders {
  return copyEndToEnd(input, REQUEST_ONLY_DROP);
}

/**
 * The final headers for one upstream protocol: HTTP/1.1 carries the authority as `host`;
 * HTTP/2 carries it as `:authority` (the sender sets pseudo-headers) and keeps `te: trailers`
 * when the client offered trailers (gRPC servers want it).
 */
export function headersForUpstream(headers: OutHeaders, authority: string | undefined, to: 'h1' | 'h2', teTrailers: boolean): OutHeaders {
  const out: OutHeaders = { ...headers };
  if (to === 'h1') {
    if (authority !== undefined) out.host = authority;
  } else if (teTrailers) {
    out.te = 'trailers';
  }
  return out;
}

/** The headers of a response (or trailers) as the client's hop gets them. */
export function responseHeadersFor(input: RequestHeaders): OutHeaders {
  return copyEndToEnd(input, NONE);
}

/** Applies Gateway API header modifiers in order: set replaces, add appends, remove deletes. */
export function applyHeaderModifiers(headers: OutHeaders, modifiers: readonly HeaderModifier[]): OutHeaders {
  for (const m of modifiers) {
    for (const { name, value } of m.set) headers[name.toLowerCase()] = value;
    for (const { name, value } of m.add) {
      const key = name.toLowerCase();
      const had = headers[key];
      // Appended as a separate field line; a client joins them with ", " as RFC 9110 allows.
      headers[key] = had === undefined ? value : [...(typeof had === 'string' ? [had] : had), value];
    }
    for (const name of m.remove) delete headers[name.toLowerCase()];
  }
  return headers;
}

/** The first value of a header, or undefined. */
export function first(v: string | readonly string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : v?.[0];
}

/** gRPC requests: content-type application/grpc or application/grpc+<codec>. */
export function isGrpc(contentType: string | readonly string[] | undefined): boolean {
  const ct = first(contentType)?.toLowerCase();
  return ct !== undefined && (ct === 'application/grpc' || ct.startsWith('application/grpc+') || ct.startsWith('application/grpc;'));
}
