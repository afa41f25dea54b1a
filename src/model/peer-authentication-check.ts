// What `weft vet` says about PeerAuthentications across objects: a workload-scoped policy
// whose selector matches no pod, and two policies at one scope for one workload (only the
// first by name is used, so the other one silently does nothing). Pure.

import type { PeerAuthenticationObject, PodObject } from './types.ts';
import { selects } from './labels.ts';
import { peerAuthenticationScope } from './peer-authentication.ts';

export interface PeerAuthenticationFinding {
  readonly namespace: string;
  readonly name: string;
  readonly field: string;
  readonly message: string;
}

const key = (p: PeerAuthenticationObject): string => `${p.namespace}/${p.name}`;
const modeText = (p: PeerAuthenticationObject): string => p.mode ?? 'UNSET';

/** `pods` are the live pods (the ones that are workloads). */
export function peerAuthenticationFindings(policies: readonly PeerAuthenticationObject[], pods: readonly PodObject[]): PeerAuthenticationFinding[] {
  const out: PeerAuthenticationFinding[] = [];
  const sorted = [...policies].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  // Mesh-wide and namespace-wide: one per namespace.
  const wide = new Map<string, PeerAuthenticationObject>();
  for (const p of sorted) {
    const scope = peerAuthenticationScope(p);
    if (scope === 'workload') continue;
    const first = wide.get(p.namespace);
    if (first === undefined) {
      wide.set(p.namespace, p);
      continue;
    }
    const where = scope === 'mesh' ? 'mesh-wide (root namespace, no selector)' : `namespace-wide in ${p.namespace} (no selector)`;
    out.push({
      namespace: p.namespace, name: p.name, field: 'spec',
      message: `conflicts with PeerAuthentication ${key(first)}: both are ${where}; only ${key(first)} (first by name, mode ${modeText(first)}) is used, this one (mode ${modeText(p)}) is ignored`,
    });
  }
  // Workload scope: by the pods each selects.
  const reported = new Set<string>();
  for (const p of sorted) {
    if (peerAuthenticationScope(p) !== 'workload') continue;
    const selected = pods.filter((pod) => pod.namespace === p.namespace && selects(p.selector, pod.labels));
    if (selected.length === 0) {
      const sel = Object.entries(p.selector).map(([k, v]) => `${k}=${v}`).join(',');
      out.push({ namespace: p.namespace, name: p.name, field: 'spec.selector.matchLabels', message: `selects no Pod in namespace ${p.namespace} (${sel}), so it applies to nothing` });
      continue;
    }
    for (const pod of selected) {
      const first = sorted.find((q) => q !== p && peerAuthenticationScope(q) === 'workload' && q.namespace === p.namespace && key(q) < key(p) && selects(q.selector, pod.labels));
      if (first === undefined || reported.has(`${key(first)} ${key(p)}`)) continue;
      reported.add(`${key(first)} ${key(p)}`);
      out.push({
        namespace: p.namespace, name: p.name, field: 'spec.selector.matchLabels',
        message: `conflicts with PeerAuthentication ${key(first)}: both select Pod ${pod.namespace}/${pod.name}; only ${key(first)} (first by name, mode ${modeText(first)}) is used for it, this one (mode ${modeText(p)}) is ignored`,
      });
    }
  }
  return out;
}
