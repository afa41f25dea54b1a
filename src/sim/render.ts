// The manifests the mesh reads for a simulated cluster: the user's (or generated) objects
// as given, except that every Pod is shown as scheduled — spec.nodeName and status.podIP
// filled in from the plan — just as the Kubernetes API would report it.

import { parseAllDocuments, stringify } from 'yaml';
import type { ManifestFile } from '../model/manifests.ts';
import type { ClusterPlan } from './plan.ts';

type Body = Record<string, unknown> & { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown }; spec?: Record<string, unknown> };

export function renderScheduled(plan: ClusterPlan, manifests: readonly ManifestFile[]): ManifestFile[] {
  const byKey = new Map(plan.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
  return manifests.map((m, i) => {
    const docs = parseAllDocuments(m.text);
    const bodies = (Array.isArray(docs) ? docs : []).map((d) => d.toJS() as unknown).filter((b): b is Body => b !== null && typeof b === 'object');
    for (const body of bodies) {
      if (body.kind !== 'Pod') continue;
      const ns = typeof body.metadata?.namespace === 'string' ? body.metadata.namespace : 'default';
      const pod = byKey.get(`${ns}/${String(body.metadata?.name)}`);
      if (pod === undefined) continue;
      body.spec = { ...body.spec, nodeName: pod.node };
      body.status = { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] };
    }
    const base = m.path.split('/').pop()?.replace(/[^A-Za-z0-9._-]/g, '_').replace(/\.json$/, '.yaml') ?? 'manifest.yaml';
    return { path: `${String(i).padStart(2, '0')}-${base}`, text: bodies.map((b) => stringify(b)).join('---\n') };
  });
}
