// What `weft vet` says about AuthorizationPolicies' HTTP rules across objects: a rule with
// HTTP attributes (methods, paths, hosts, request headers) that applies to a port no Service
// declares HTTP. The destination agent sees no requests there, so such a rule could never
// allow (in an ALLOW policy) and would refuse whole connections (in a DENY policy): an
// error, rather than a policy that silently means something else. Pure.

import type { MeshState } from './state.ts';
import type { PolicyRule, Workload } from './types.ts';
import { policyApplies } from './authorize.ts';
import { ruleHasL7 } from './l7-authorization.ts';
import { isHttpProtocol, protocolFor, type PortProtocol } from './protocol.ts';

export interface PolicyFinding {
  readonly namespace: string;
  readonly name: string;
  readonly field: string;
  readonly message: string;
}

/** The declared protocol of each target port of the workload, from the Service ports that send to it. */
function workloadPorts(state: MeshState, w: Workload): Map<number, PortProtocol> {
  const out = new Map<number, PortProtocol>();
  for (const s of state.services) {
    for (const pe of s.endpoints) {
      const sp = s.ports.find((p) => p.port === pe.port);
      if (sp === undefined) continue;
      for (const e of pe.endpoints) {
        if (e.workload !== w.key) continue;
        const proto = protocolFor(sp);
        // Two Service ports on one target port: HTTP if either says so (the layer parses it).
        if (!isHttpProtocol(out.get(e.port) ?? 'tcp')) out.set(e.port, proto);
      }
    }
  }
  return out;
}

function rulePorts(rule: PolicyRule): readonly number[] | undefined {
  if (rule.to.length === 0 || rule.to.some((o) => o.ports === undefined)) return undefined;
  return [...new Set(rule.to.flatMap((o) => o.ports ?? []))].sort((a, b) => a - b);
}

export function authorizationFindings(state: MeshState): PolicyFinding[] {
  const out: PolicyFinding[] = [];
  for (const p of state.policies) {
    const l7 = p.rules.map((r, i) => [r, i] as const).filter(([r]) => ruleHasL7(r));
    if (l7.length === 0) continue;
    const workloads = state.workloads.filter((w) => w.enrolled && policyApplies(p, w));
    for (const [rule, i] of l7) {
      const bad = new Map<string, string>();
      for (const w of workloads) {
        const ports = workloadPorts(state, w);
        for (const port of rulePorts(rule) ?? [...ports.keys()].sort((a, b) => a - b)) {
          const proto = ports.get(port);
          if (proto !== undefined && isHttpProtocol(proto)) continue;
          const what = proto === undefined ? 'no Service declares it' : `its Service port is declared ${proto}`;
          bad.set(`${port}`, `port ${port} of ${w.key} (${what})`);
        }
      }
      if (bad.size === 0) continue;
      const shown = [...bad.values()].slice(0, 3).join('; ') + (bad.size > 3 ? `; and ${bad.size - 3} more` : '');
      out.push({
        namespace: p.namespace, name: p.name, field: `spec.rules[${i}]`,
        message: `has HTTP attributes (methods, paths, hosts or request headers) but applies to a port that is not HTTP: ${shown}. `
          + `weft sees no requests there, so the rule would ${p.action === 'ALLOW' ? 'never allow' : 'deny whole connections'}; `
          + 'declare the Service port http, http2 or grpc (appProtocol or name prefix), or limit the rule with to[].operation.ports',
      });
    }
  }
  return out;
}
