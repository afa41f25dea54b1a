// Problems that only show across objects: duplicate VIPs, a VIP that is also a pod IP,
// duplicate pod IPs, selectors matching no pod, slices of unknown services, policies
// naming identities that nothing in the manifests has, pods on nodes no Node object
// declares (when some do), two Nodes sharing an address, enrolled pods with IPv6
// addresses (which agents refuse to capture), PeerAuthentications that select nothing or
// conflict at one scope, AuthorizationPolicies' HTTP rules on ports that are not HTTP
// (policy-check.ts), named target ports that selected pods do not declare, traffic policies
// naming what does not exist (traffic-policy-check.ts), and the route checks of route-check.ts.
// Pure; used by `weft vet`.

import type { MeshObjects, PolicyRule, SourceRef } from './types.ts';
import type { ManifestProblem } from './manifests.ts';
import { originKey, type Kind } from './manifests.ts';
import { selects } from './labels.ts';
import { tryParseSpiffeId } from './spiffe.ts';
import { isLivePod, MESH_DISABLED, namespaceEnrolled, podEnrolled } from './resolve.ts';
import { MESH_LABEL } from './types.ts';
import { buildMeshState } from './state.ts';
import { routeFindings } from './route-check.ts';
import { peerAuthenticationFindings } from './peer-authentication-check.ts';
import { authorizationFindings } from './policy-check.ts';
import { trafficPolicyFindings } from './traffic-policy-check.ts';
import { ruleHasL7 } from './l7-authorization.ts';

export interface CrossCheckOptions {
  readonly trustDomain: string;
  /** Where each object came from (ParsedManifests.origins). */
  readonly origins: ReadonlyMap<string, SourceRef>;
}

export function crossCheck(objects: MeshObjects, options: CrossCheckOptions): ManifestProblem[] {
  const problems: ManifestProblem[] = [];
  const report = (kind: Kind, namespace: string, name: string, field: string, message: string): void => {
    const file = options.origins.get(originKey(kind, namespace, name))?.file ?? '(unknown file)';
    problems.push({ file, object: namespace === '' ? `${kind}/${name}` : `${kind}/${namespace}/${name}`, field, message });
  };
  const byKey = <T extends { namespace: string; name: string }>(a: T, b: T): number =>
    `${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1;
  const services = [...objects.services].sort(byKey);
  const pods = objects.pods.filter(isLivePod).sort(byKey);

  const enrolledNs = new Set(objects.namespaces.filter(namespaceEnrolled).map((n) => n.name));
  for (const p of pods) {
    if (podEnrolled(p, enrolledNs.has(p.namespace)) && p.ipv6 !== undefined) {
      report('Pod', p.namespace, p.name, 'status.podIPs', `has IPv6 address(es) ${p.ipv6.join(', ')}; weft captures IPv4 only, so the agent refuses to capture this pod (label it ${MESH_LABEL}: ${MESH_DISABLED} to keep it out of the mesh knowingly)`);
    }
  }

  const podByIp = new Map<string, string>();
  for (const p of pods) {
    if (p.ip === undefined) continue;
    const other = podByIp.get(p.ip);
    if (other !== undefined) report('Pod', p.namespace, p.name, 'status.podIP', `${p.ip} is also the IP of Pod ${other}`);
    else podByIp.set(p.ip, `${p.namespace}/${p.name}`);
  }

  const vipOwner = new Map<string, string>();
  for (const s of services) {
    const other = vipOwner.get(s.vip);
    if (other !== undefined) report('Service', s.namespace, s.name, 'spec.clusterIP', `${s.vip} is already the cluster IP of Service ${other}`);
    else vipOwner.set(s.vip, `${s.namespace}/${s.name}`);
    const pod = podByIp.get(s.vip);
    if (pod !== undefined) report('Service', s.namespace, s.name, 'spec.clusterIP', `${s.vip} is also the IP of Pod ${pod}`);
  }

  const sliced = new Set(objects.endpointSlices.map((e) => `${e.namespace}/${e.serviceName}`));
  for (const s of services) {
    if (Object.keys(s.selector).length === 0 || sliced.has(`${s.namespace}/${s.name}`)) continue;
    const selected = pods.filter((p) => p.namespace === s.namespace && selects(s.selector, p.labels));
    if (selected.length === 0) {
      const sel = Object.entries(s.selector).map(([k, v]) => `${k}=${v}`).join(',');
      report('Service', s.namespace, s.name, 'spec.selector', `selects no Pod in namespace ${s.namespace} (${sel}), so the Service has no endpoints`);
    }
    s.ports.forEach((sp, i) => {
      if (typeof sp.targetPort !== 'string') return;
      const name = sp.targetPort;
      const without = selected.filter((p) => p.namedPorts?.[name] === undefined).map((p) => p.name);
      if (without.length === 0) return;
      const shown = without.length <= 5 ? without.join(', ') : `${without.slice(0, 5).join(', ')}, ...`;
      report('Service', s.namespace, s.name, `spec.ports[${i}].targetPort`, `names container port ${JSON.stringify(name)}, which ${without.length} of the ${selected.length} selected Pods do not declare (${shown}), so they get no traffic on port ${sp.port}`);
    });
  }

  checkNodes(objects, report);

  const serviceKeys = new Set(services.map((s) => `${s.namespace}/${s.name}`));
  for (const e of objects.endpointSlices) {
    if (!serviceKeys.has(`${e.namespace}/${e.serviceName}`)) {
      report('EndpointSlice', e.namespace, e.name, 'metadata.labels.kubernetes.io/service-name', `names Service ${e.namespace}/${e.serviceName}, which does not exist`);
    }
  }

  const accounts = new Set([
    ...objects.serviceAccounts.map((a) => `${a.namespace}/${a.name}`),
    ...objects.pods.map((p) => `${p.namespace}/${p.serviceAccount}`),
  ]);
  for (const pol of objects.policies) {
    checkPrincipals(pol.rules, options.trustDomain, accounts, (field, message) => report('AuthorizationPolicy', pol.namespace, pol.name, field, message));
  }
  if (objects.policies.some((p) => p.rules.some(ruleHasL7))) {
    for (const f of authorizationFindings(buildMeshState(objects, { trustDomain: options.trustDomain }))) report('AuthorizationPolicy', f.namespace, f.name, f.field, f.message);
  }
  for (const f of trafficPolicyFindings(objects, pods)) {
    const file = options.origins.get(f.object)?.file ?? '(unknown file)';
    problems.push({ file, object: f.object, field: f.field, message: f.message });
  }
  for (const f of peerAuthenticationFindings(objects.peerAuthentications ?? [], pods)) report('PeerAuthentication', f.namespace, f.name, f.field, f.message);
  if ((objects.routes ?? []).length > 0) {
    for (const f of routeFindings(buildMeshState(objects, { trustDomain: options.trustDomain }))) {
      const file = options.origins.get(f.route)?.file ?? '(unknown file)';
      problems.push({ file, object: f.route, field: f.field, message: f.message });
    }
  }
  return problems;
}

function checkNodes(objects: MeshObjects, report: (kind: Kind, namespace: string, name: string, field: string, message: string) => void): void {
  // Manifests often leave Nodes out (the cluster has them); only when some are given is a
  // Pod on an undeclared node a mistake (a typo, or a Node file forgotten).
  if (objects.nodes.length === 0) return;
  const nodes = [...objects.nodes].sort((a, b) => (a.name < b.name ? -1 : 1));
  const byAddress = new Map<string, string>();
  for (const n of nodes) {
    const other = byAddress.get(n.address);
    if (other !== undefined) report('Node', '', n.name, 'status.addresses', `${n.address} is also the address of Node ${other}, so tunnels to one would reach the other`);
    else byAddress.set(n.address, n.name);
  }
  const names = new Set(nodes.map((n) => n.name));
  const shown = nodes.length <= 5 ? nodes.map((n) => n.name).join(', ') : `${nodes.slice(0, 5).map((n) => n.name).join(', ')}, ...`;
  const pods = objects.pods.filter((x) => x.phase !== 'Succeeded' && x.phase !== 'Failed')
    .sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
  for (const p of pods) {
    if (p.nodeName === undefined || names.has(p.nodeName)) continue;
    report('Pod', p.namespace, p.name, 'spec.nodeName', `is scheduled on node ${JSON.stringify(p.nodeName)}, which no Node object declares (Nodes: ${shown})`);
  }
}

function checkPrincipals(
  rules: readonly PolicyRule[], trustDomain: string, accounts: ReadonlySet<string>, report: (field: string, message: string) => void,
): void {
  rules.forEach((rule, i) => rule.from.forEach((source, j) => {
    for (const list of ['principals', 'notPrincipals'] as const) {
      (source[list] ?? []).forEach((principal, k) => {
        const id = principal.includes('*') ? undefined : tryParseSpiffeId(principal);
        if (id === undefined) return; // wildcards name no one in particular
        const field = `spec.rules[${i}].from[${j}].source.${list}[${k}]`;
        if (id.trustDomain !== trustDomain) {
          report(field, `trust domain ${JSON.stringify(id.trustDomain)} is not the mesh's (${JSON.stringify(trustDomain)}), so ${principal} never matches`);
        } else if (!accounts.has(`${id.namespace}/${id.serviceAccount}`)) {
          report(field, `no ServiceAccount or Pod has service account ${id.namespace}/${id.serviceAccount}`);
        }
      });
    }
  }));
}
