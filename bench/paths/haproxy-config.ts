// HAProxy configs for the comparison path, in the same hops as weft: a relay in node-1 for
// same-node traffic, and for cross-node traffic a relay in node-1 that opens mutual TLS 1.3
// to a relay in node-2, which hands the traffic to the server pod. One HAProxy process per
// node (like one agent per node), one thread (like one Node proxy). Ports weft serves at L7
// (Service ports `http`, `http2`) are relayed in `mode http`, request by request with
// pooled server connections as weft does (h2 kept h2 end to end, over TLS by ALPN); the
// others in `mode tcp`. Debian's defaults otherwise: no splicing, no tuning either side
// does not get.

import { SERVICE_KINDS, PORTS, type ServiceKind } from '../cluster.ts';

/** Where the relays listen: fixed offsets from each service's port, so a port names its role. */
export const RELAY_PORT = {
  sameNode: (s: ServiceKind): number => 10_000 + PORTS[s],
  crossOut: (s: ServiceKind): number => 20_000 + PORTS[s],
  crossIn: (s: ServiceKind): number => 30_000 + PORTS[s],
} as const;

export interface TlsFiles {
  readonly caFile: string;
  /** Certificate + key PEM of each node. */
  readonly node1Pem: string;
  readonly node2Pem: string;
}

export interface RelayAddresses {
  /** Node-1's address as its pods see it (the bridge): where clients connect. */
  readonly node1Listen: string;
  /** Node-2's underlay address: where node-1's relay opens TLS. */
  readonly node2Underlay: string;
  readonly sameNodeServer: string;
  readonly crossNodeServer: string;
}

// maxconn: HAProxy refuses to start when 2 x maxconn descriptors exceed the fd limit.
const header = (maxconn: number): string => `global
  nbthread 1
  maxconn ${maxconn}
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3

defaults
  mode tcp
  maxconn ${maxconn}
  timeout connect 5s
  timeout client 10m
  timeout server 10m
`;

/** How each kind is relayed: as bytes, or as HTTP/1.1 or h2 requests (what weft does on that port). */
export const RELAY_MODE: Readonly<Record<ServiceKind, 'tcp' | 'h1' | 'h2'>> = { http: 'h1', http2: 'h2', sockperf: 'tcp', iperf: 'tcp', hold: 'tcp' };

function relay(name: string, kind: ServiceKind, bind: string, server: string): string {
  const mode = RELAY_MODE[kind];
  const http = mode === 'tcp' ? '' : '  mode http\n';
  const h2 = mode === 'h2' ? ' proto h2' : '';
  return `
frontend ${name}
${http}  bind ${bind}${h2}
  default_backend ${name}

backend ${name}
${http}  server s ${server}${h2}
`;
}

/** ALPN on the cross-node TLS hop for an h2 relay (its server side speaks h2 over TLS). */
const alpn = (s: ServiceKind): string => (RELAY_MODE[s] === 'h2' ? ' alpn h2' : '');

export function node1Config(a: RelayAddresses, tls: TlsFiles, maxconn: number): string {
  let cfg = `# weft bench: node-1 relays (same-node, cross-node out over mTLS)\n${header(maxconn)}`;
  for (const s of SERVICE_KINDS) {
    cfg += relay(`same_${s}`, s, `${a.node1Listen}:${RELAY_PORT.sameNode(s)}`, `${a.sameNodeServer}:${PORTS[s]}`);
    cfg += relay(`cross_${s}`, s, `${a.node1Listen}:${RELAY_PORT.crossOut(s)}`,
      `${a.node2Underlay}:${RELAY_PORT.crossIn(s)} ssl verify required ca-file ${tls.caFile} crt ${tls.node1Pem}${alpn(s)}`);
  }
  return cfg;
}

export function node2Config(a: RelayAddresses, tls: TlsFiles, maxconn: number): string {
  let cfg = `# weft bench: node-2 relays (cross-node in: mTLS terminated, plain TCP to the pod)\n${header(maxconn)}`;
  for (const s of SERVICE_KINDS) {
    cfg += relay(`in_${s}`, s, `${a.node2Underlay}:${RELAY_PORT.crossIn(s)} ssl crt ${tls.node2Pem} ca-file ${tls.caFile} verify required${alpn(s)}`,
      `${a.crossNodeServer}:${PORTS[s]}`);
  }
  return cfg;
}
