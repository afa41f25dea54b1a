// What `weft vet` says about traffic policies across objects: a DestinationPolicy or
// RateLimitPolicy naming a Service that does not exist, a RateLimitPolicy whose selector
// matches no pod, two DestinationPolicies for one Service (only the first by name is used),
// and a route's ExtensionRef to a FaultInjection that does not exist (its requests would all
// fail with 500). Pure.

import type { MeshObjects, PodObject } from './types.ts';
import { selects } from './labels.ts';
import { faultsNamedBy } from './traffic-policy-slice.ts';
import { sortTrafficPolicies } from './traffic-policy-types.ts';

export interface TrafficPolicyFinding {
  /** `Kind/namespace/name` of the object the finding is about. */
  readonly object: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly field: string;
  readonly message: string;
}

/** `pods` are the live pods. */
export function trafficPolicyFindings(objects: MeshObjects, pods: readonly PodObject[]): TrafficPolicyFinding[] {
  const out: TrafficPolicyFinding[] = [];
  const policies = sortTrafficPolicies(objects.trafficPolicies ?? []);
  const services = new Set(objects.services.map((s) => `${s.namespace}/${s.name}`));
  const firstFor = new Map<string, string>();
  for (const p of policies) {
    const at = { object: `${p.kind}/${p.namespace}/${p.name}`, kind: p.kind, namespace: p.namespace, name: p.name };
    if (p.kind === 'FaultInjection') continue;
    if (p.targetRef !== undefined) {
      const svc = `${p.namespace}/${p.targetRef.name}`;
      if (!services.has(svc)) out.push({ ...at, field: 'spec.targetRef.name', message: `names Service ${svc}, which does not exist, so the policy applies to nothing` });
      if (p.kind === 'DestinationPolicy') {
        const first = firstFor.get(svc);
        if (first === undefined) firstFor.set(svc, p.name);
        else out.push({ ...at, field: 'spec.targetRef', message: `conflicts with DestinationPolicy ${p.namespace}/${first}: both target Service ${svc}; only ${first} (first by name) is used` });
      }
    }
    if (p.kind === 'RateLimitPolicy' && p.selector !== undefined) {
      const sel = p.selector;
      if (!pods.some((pod) => pod.namespace === p.namespace && selects(sel, pod.labels))) {
        out.push({ ...at, field: 'spec.selector.matchLabels', message: `selects no Pod in namespace ${p.namespace}, so the policy limits nothing` });
      }
    }
  }
  const faults = new Set(policies.filter((p) => p.kind === 'FaultInjection').map((p) => `${p.namespace}/${p.name}`));
  for (const r of objects.routes ?? []) {
    for (const f of new Set(faultsNamedBy(r))) {
      if (faults.has(f)) continue;
      out.push({
        object: `${r.kind}/${r.namespace}/${r.name}`, kind: r.kind, namespace: r.namespace, name: r.name, field: 'spec.rules',
        message: `an ExtensionRef filter names FaultInjection ${f}, which does not exist, so the requests it matches fail with 500`,
      });
    }
  }
  return out;
}
