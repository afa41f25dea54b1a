// The manifests the mesh reads for a simulated cluster: one Node per simulated node (its
// underlay address as InternalIP, where other agents reach its tunnel), then the user's (or
// generated) objects as given, except that every Pod is shown as scheduled — metadata.uid,
// spec.nodeName and status.podIP filled in from the plan — just as the Kubernetes API would report it.

import { parseAllDocuments, stringify } from 'yaml';
import type { ManifestFile } from '../model/manifests.ts';
import type { ClusterPlan, SimNode } from './plan.ts';

type Body = Record<string, unknown> & { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown; uid?: unknown }; spec?: Record<string, unknown> };

/** The file of Node objects, first among the rendered manifests. */
export const NODES_FILE = '00-nodes.yaml';

export function nodeManifest(node: SimNode): Record<string, unknown> {
  return {
    apiVersion: 'v1', kind: 'Node',
    metadata: { name: node.name, labels: { 'kubernetes.io/hostname': node.name } },
    spec: { podCIDR: node.podCidr },
    status: { addresses: [{ type: 'InternalIP', address: node.ip }, { type: 'Hostname', address: node.name }] },
  };
}

/**
 * IPv6 entries of a Pod's own status.podIPs, kept so the mesh sees a dual-stack pod (and
 * refuses it); the simulator configures no IPv6 address, its networks being IPv4 only.
 */
function declaredIpv6(body: Body): { ip: string }[] {
  const status = body.status as { podIPs?: unknown } | undefined;
  const list = Array.isArray(status?.podIPs) ? status.podIPs as unknown[] : [];
  return list.flatMap((e) => {
    const ip = typeof e === 'object' && e !== null ? (e as { ip?: unknown }).ip : undefined;
    return typeof ip === 'string' && ip.includes(':') ? [{ ip }] : [];
  });
}

export function renderScheduled(plan: ClusterPlan, manifests: readonly ManifestFile[]): ManifestFile[] {
  const byKey = new Map(plan.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
  const nodes: ManifestFile = { path: NODES_FILE, text: plan.nodes.map((n) => stringify(nodeManifest(n))).join('---\n') };
  return [nodes, ...manifests.map((m, i) => {
    const docs = parseAllDocuments(m.text);
    const bodies = (Array.isArray(docs) ? docs : []).map((d) => d.toJS() as unknown)
      .filter((b): b is Body => b !== null && typeof b === 'object')
      // The simulator owns the nodes and their addresses: a user's Node would duplicate one
      // of NODES_FILE's, or point agents at an address nothing listens on.
      .filter((b) => b.kind !== 'Node');
    for (const body of bodies) {
      if (body.kind !== 'Pod') continue;
      const ns = typeof body.metadata?.namespace === 'string' ? body.metadata.namespace : 'default';
      const pod = byKey.get(`${ns}/${String(body.metadata?.name)}`);
      if (pod === undefined) continue;
      body.metadata = { ...body.metadata, uid: pod.uid };
      body.spec = { ...body.spec, nodeName: pod.node };
      body.status = { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }, ...declaredIpv6(body)] };
    }
    const base = m.path.split('/').pop()?.replace(/[^A-Za-z0-9._-]/g, '_').replace(/\.json$/, '.yaml') ?? 'manifest.yaml';
    return { path: `${String(i + 1).padStart(2, '0')}-${base}`, text: bodies.map((b) => stringify(b)).join('---\n') };
  })];
}
