// Which protocol a Service port speaks, as declared: `appProtocol` first, else Istio's
// port-name convention. Pure; the proxy picks L4 splice or its HTTP layer from this, and
// routes attach only to ports declared HTTP-like.

import type { ServicePort } from './types.ts';

/**
 * - `http`: HTTP/1.1 (an HTTP/1.1 Upgrade such as WebSocket included); a client may also
 *   open with the HTTP/2 preface, which Istio's `http` ports accept too.
 * - `http2`: HTTP/2 over cleartext (h2c, prior knowledge).
 * - `grpc`: gRPC, i.e. h2c with trailers and `grpc-status`.
 * - `tcp`: opaque bytes, never parsed (TLS, databases, anything declared `tcp`).
 * - `undeclared`: nothing said; the proxy may sniff briefly (server-first ports excepted,
 *   which is the caller's call: it also applies to pod-IP destinations with no Service port).
 */
export type PortProtocol = 'http' | 'http2' | 'grpc' | 'tcp' | 'undeclared';

// Istio's protocol names (pilot/pkg/model protocol.Parse), lowercased, and the Kubernetes
// standard appProtocol names. TLS and the database protocols are opaque to weft.
const NAMES: Readonly<Record<string, PortProtocol>> = {
  'http': 'http',
  'http2': 'http2',
  'grpc': 'grpc',
  'grpc-web': 'http',
  'tcp': 'tcp',
  'https': 'tcp',
  'tls': 'tcp',
  'mongo': 'tcp',
  'mysql': 'tcp',
  'redis': 'tcp',
  'kubernetes.io/h2c': 'http2',
  'kubernetes.io/ws': 'http',
  'kubernetes.io/wss': 'tcp',
};

function parseName(raw: string): PortProtocol | undefined {
  const name = raw.toLowerCase();
  const exact = NAMES[name];
  if (exact !== undefined) return exact;
  // `grpc-web-x` before the general rule, since the protocol name itself holds a '-'.
  if (name.startsWith('grpc-web-')) return 'http';
  const dash = name.indexOf('-');
  return dash > 0 ? NAMES[name.slice(0, dash)] : undefined;
}

/**
 * The declared protocol of a Service port. As Istio does, a set `appProtocol` decides
 * alone (an unrecognised value means undeclared, not "look at the name"); otherwise the
 * port name's prefix before the first `-` (`http-web`, `grpc`, `tcp-db`) decides.
 */
export function protocolFor(port: Pick<ServicePort, 'name' | 'appProtocol'>): PortProtocol {
  if (port.appProtocol !== undefined) return parseName(port.appProtocol) ?? 'undeclared';
  if (port.name !== undefined) return parseName(port.name) ?? 'undeclared';
  return 'undeclared';
}

/** Ports whose requests the HTTP layer sees, so HTTPRoutes and GRPCRoutes can apply to them. */
export function isHttpProtocol(p: PortProtocol): boolean {
  return p === 'http' || p === 'http2' || p === 'grpc';
}
