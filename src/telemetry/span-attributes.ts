// What the connection and request tracers both put on spans: the mesh's peer attributes
// (weft.source.* / weft.destination.*), host:port splitting, and setting only what is known.

import type { api } from '@opentelemetry/sdk-node';

import type { PeerRef, ServiceRef } from './types.ts';

export function peerAttributes(source: PeerRef, destination: PeerRef, service: ServiceRef | undefined): api.Attributes {
  return {
    'weft.source.workload': source.workload,
    'weft.source.namespace': source.namespace,
    'weft.source.principal': source.principal,
    'weft.destination.workload': destination.workload,
    'weft.destination.namespace': destination.namespace,
    'weft.destination.principal': destination.principal,
    'weft.destination.service': service?.host,
  };
}

/** Sets the attributes whose value is known. */
export function setKnown(span: api.Span, attributes: api.Attributes): void {
  for (const [k, v] of Object.entries(attributes)) if (v !== undefined) span.setAttribute(k, v);
}

/** `host:port`, `[v6]:port` or a bare host -> [host, port]. */
export function splitHostPort(address: string | undefined): [string | undefined, number | undefined] {
  if (address === undefined || address === '') return [undefined, undefined];
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(address);
  if (m === null) return [address, undefined];
  return [(m[1] ?? '').replace(/^\[|\]$/g, ''), m[2] === undefined ? undefined : Number(m[2])];
}
