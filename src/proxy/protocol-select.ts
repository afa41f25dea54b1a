// Which protocol a routed connection speaks, decided before any byte is forwarded: the
// destination port's declaration (appProtocol or Istio's port-name prefix, model/protocol.ts)
// when there is one, "opaque at once" for ports of server-first protocols (the server talks
// first, so waiting for the client would only delay its banner), else a sniff of the
// client's first bytes for at most a short bound. Pure; sniff.ts does the reading.

import { protocolFor, type PortProtocol } from '../model/protocol.ts';
import type { Destination } from './outbound-route.ts';

/**
 * Server-first protocols, as Istio lists them: SMTP (25, 587), MySQL (3306), Selenium hub
 * (4444), PostgreSQL (5432), Redis (6379), Elasticsearch transport (9300), memcached (11211).
 */
export const SERVER_FIRST_PORTS: ReadonlySet<number> = new Set([25, 587, 3306, 4444, 5432, 6379, 9300, 11211]);

export type PortDecision =
  /** Splice without looking at a byte. */
  | { readonly kind: 'opaque'; readonly why: string }
  /** Declared HTTP: wait for the client (it speaks first) to tell HTTP/1.1 from the h2 preface. */
  | { readonly kind: 'http'; readonly declared: PortProtocol }
  /** Undeclared: read the client's first bytes for at most the sniff bound. */
  | { readonly kind: 'sniff' };

export function portDecision(destination: Destination): PortDecision {
  // Outside the mesh: passthrough bytes, never parsed.
  if (destination.kind === 'external') return { kind: 'opaque', why: 'outside the mesh' };
  const port = destination.kind === 'service' ? destination.service.port : undefined;
  const declared: PortProtocol = port === undefined ? 'undeclared' : protocolFor(port);
  if (declared === 'tcp') return { kind: 'opaque', why: 'declared tcp' };
  if (declared !== 'undeclared') return { kind: 'http', declared };
  // A named targetPort (resolved per pod) is judged by the Service port alone.
  const numbers = destination.kind === 'service' ? [destination.service.port.port, destination.service.port.targetPort] : [destination.target.port];
  if (numbers.some((n) => typeof n === 'number' && SERVER_FIRST_PORTS.has(n))) return { kind: 'opaque', why: 'server-first port' };
  return { kind: 'sniff' };
}

/** What a client's first bytes say. */
export type ClientBytes = 'h2' | 'http1' | 'opaque' | 'more';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
// RFC 9110 methods and the common WebDAV ones; anything else is not worth parsing as HTTP.
const METHODS = [
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH',
];
const LONGEST_METHOD = Math.max(...METHODS.map((m) => m.length));
/** A request line longer than this is not one we will parse as HTTP. */
export const MAX_SNIFF_BYTES = 8 * 1024;
const REQUEST_LINE = /^[A-Z]+ [^ \r\n]+ HTTP\/1\.[01]\r?\n/;

function isPrefix(prefix: Buffer, of: Buffer): boolean {
  return prefix.length <= of.length && of.subarray(0, prefix.length).equals(prefix);
}

/**
 * Classifies what the client sent so far: the h2 preface, an HTTP/1.x request line, or
 * something else; 'more' while a prefix of either could still become one.
 */
export function classifyClientBytes(b: Buffer): ClientBytes {
  if (b.length === 0) return 'more';
  if (isPrefix(b.subarray(0, H2_PREFACE.length), H2_PREFACE)) return b.length >= H2_PREFACE.length ? 'h2' : 'more';
  const space = b.indexOf(0x20);
  const head = b.subarray(0, space < 0 ? Math.min(b.length, LONGEST_METHOD + 1) : space).toString('latin1');
  if (space < 0) {
    if (head.length > LONGEST_METHOD) return 'opaque';
    return METHODS.some((m) => m.startsWith(head)) ? 'more' : 'opaque';
  }
  if (!METHODS.includes(head)) return 'opaque';
  const eol = b.indexOf(0x0a);
  if (eol < 0) return b.length >= MAX_SNIFF_BYTES ? 'opaque' : 'more';
  return REQUEST_LINE.test(b.subarray(0, eol + 1).toString('latin1')) ? 'http1' : 'opaque';
}
