// Where an outbound connection goes, decided over the mesh view: a Service VIP (then one of
// its endpoints), a pod, or something outside the mesh; and for a chosen pod, whether to
// connect straight (same node, or not in the mesh) or through the tunnel to its node's agent.
// Pure.

import type { ServiceAtVip } from '../model/state.ts';
import type { Endpoint, Workload } from '../model/types.ts';
import type { MeshView, SocketAddress } from './contracts.ts';

export interface OutboundTarget {
  readonly ip: string;
  readonly port: number;
  /** The pod at `ip`, when the mesh knows it. */
  readonly workload: Workload | undefined;
}

export type Destination =
  | { readonly kind: 'service'; readonly service: ServiceAtVip; readonly endpoints: readonly Endpoint[] }
  | { readonly kind: 'workload'; readonly target: OutboundTarget }
  | { readonly kind: 'external'; readonly target: OutboundTarget };

export type Hop =
  | { readonly kind: 'direct'; readonly target: OutboundTarget }
  | { readonly kind: 'tunnel'; readonly target: OutboundTarget; readonly workload: Workload; readonly nodeAddress: string }
  | { readonly kind: 'unreachable'; readonly target: OutboundTarget; readonly detail: string };

export function resolveDestination(mesh: MeshView, dst: SocketAddress): Destination {
  const service = mesh.serviceByVip(dst.address, dst.port);
  if (service !== undefined) return { kind: 'service', service, endpoints: mesh.endpoints(service.service.key, service.port.port) };
  const workload = mesh.workloadByIp(dst.address);
  const target = { ip: dst.address, port: dst.port, workload };
  return workload === undefined ? { kind: 'external', target } : { kind: 'workload', target };
}

export function endpointTarget(mesh: Pick<MeshView, 'workloadByIp'>, e: Endpoint): OutboundTarget {
  return { ip: e.ip, port: e.port, workload: mesh.workloadByIp(e.ip) };
}

/** Straight to pods on this node and to pods outside the mesh; through the tunnel otherwise. */
export function planHop(mesh: Pick<MeshView, 'nodeAddress'>, localNode: string, target: OutboundTarget): Hop {
  const w = target.workload;
  if (w === undefined || !w.enrolled) return { kind: 'direct', target };
  if (w.node === undefined) return { kind: 'unreachable', target, detail: `${w.key} is not scheduled on a node` };
  if (w.node === localNode) return { kind: 'direct', target };
  const nodeAddress = mesh.nodeAddress(w.node);
  if (nodeAddress === undefined) return { kind: 'unreachable', target, detail: `no address known for node ${w.node} of ${w.key}` };
  return { kind: 'tunnel', target, workload: w, nodeAddress };
}
