// HAProxy configs for the comparison path, in the same hops as weft: an L4 relay in
// node-1 for same-node traffic, and for cross-node traffic a relay in node-1 that opens
// mutual TLS 1.3 to a relay in node-2, which hands plain TCP to the server pod. One
// HAProxy process per node (like one agent per node), one thread (like one Node proxy).
// Debian's defaults otherwise: no splicing, no tuning either side does not get.

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

function relay(name: string, bind: string, server: string): string {
  return `
frontend ${name}
  bind ${bind}
  default_backend ${name}

backend ${name}
  server s ${server}
`;
}

export function node1Config(a: RelayAddresses, tls: TlsFiles, maxconn: number): string {
  let cfg = `# weft bench: node-1 relays (same-node L4, cross-node out over mTLS)\n${header(maxconn)}`;
  for (const s of SERVICE_KINDS) {
    cfg += relay(`same_${s}`, `${a.node1Listen}:${RELAY_PORT.sameNode(s)}`, `${a.sameNodeServer}:${PORTS[s]}`);
    cfg += relay(`cross_${s}`, `${a.node1Listen}:${RELAY_PORT.crossOut(s)}`,
      `${a.node2Underlay}:${RELAY_PORT.crossIn(s)} ssl verify required ca-file ${tls.caFile} crt ${tls.node1Pem}`);
  }
  return cfg;
}

export function node2Config(a: RelayAddresses, tls: TlsFiles, maxconn: number): string {
  let cfg = `# weft bench: node-2 relays (cross-node in: mTLS terminated, plain TCP to the pod)\n${header(maxconn)}`;
  for (const s of SERVICE_KINDS) {
    cfg += relay(`in_${s}`, `${a.node2Underlay}:${RELAY_PORT.crossIn(s)} ssl crt ${tls.node2Pem} ca-file ${tls.caFile} verify required`,
      `${a.crossNodeServer}:${PORTS[s]}`);
  }
  return cfg;
}
