// Which traffic policies one node's agent enforces, so each agent gets only those:
// - DestinationPolicy limits calls to a Service at the caller's agent: every meshed node,
//   when the Service exists;
// - RateLimitPolicy is enforced at the destination agent: nodes hosting an enrolled workload
//   it selects (its selector, or the endpoints of its targetRef Service);
// - FaultInjection runs where its HTTPRoute's filter runs, the caller's agent: nodes that get
//   a route naming it. Pure.

import type { MeshState } from './state.ts';
import type { Workload } from './types.ts';
import type { RouteObject } from './route-types.ts';
import { selects } from './labels.ts';
import type { RateLimitPolicyObject, TrafficPolicyObject } from './traffic-policy-types.ts';
import { WEFT_API_VERSION } from './types.ts';

const WEFT_GROUP = WEFT_API_VERSION.split('/')[0];

/** Whether the rate limit applies to the workload (the destination). */
export function rateLimitApplies(state: Pick<MeshState, 'service'>, p: RateLimitPolicyObject, w: Workload): boolean {
  if (p.namespace !== w.namespace || !w.enrolled) return false;
  if (p.selector !== undefined) return selects(p.selector, w.labels);
  const svc = p.targetRef === undefined ? undefined : state.service(`${p.namespace}/${p.targetRef.name}`);
  return svc?.endpoints.some((pe) => pe.endpoints.some((e) => e.workload === w.key)) === true;
}

/** FaultInjections a route's ExtensionRef filters name, as `namespace/name`. */
export function faultsNamedBy(r: RouteObject): string[] {
  const out: string[] = [];
  for (const rule of r.rules) {
    for (const f of [...rule.filters, ...rule.backendRefs.flatMap((b) => b.filters)]) {
      if (f.type === 'ExtensionRef' && f.extensionRef.group === WEFT_GROUP && f.extensionRef.kind === 'FaultInjection') out.push(`${r.namespace}/${f.extensionRef.name}`);
    }
  }
  return out;
}

export function trafficPoliciesForNode(state: MeshState, enrolled: readonly Workload[], routes: readonly RouteObject[], meshed: boolean): TrafficPolicyObject[] {
  if (state.trafficPolicies.length === 0) return [];
  const faults = new Set(routes.flatMap(faultsNamedBy));
  return state.trafficPolicies.filter((p) => {
    switch (p.kind) {
      case 'DestinationPolicy': return meshed && state.service(`${p.namespace}/${p.targetRef.name}`) !== undefined;
      case 'RateLimitPolicy': return enrolled.some((w) => rateLimitApplies(state, p, w));
      case 'FaultInjection': return faults.has(`${p.namespace}/${p.name}`);
    }
  });
}
