// A small cluster used by the model tests: two namespaces in and out of the mesh, pods on
// two nodes, one Service resolved by selector and one by EndpointSlice.

import { stringify } from 'yaml';
import { parseManifests, type ParsedManifests } from '../../../src/model/manifests.ts';
import { buildMeshState, type MeshState } from '../../../src/model/state.ts';

export function pod(ns: string, name: string, opts: { sa?: string; node?: string; ip?: string; labels?: Record<string, string> }): object {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: ns, labels: opts.labels ?? {} },
    spec: { nodeName: opts.node, serviceAccountName: opts.sa, containers: [{ name: 'app', image: 'x' }] },
    status: opts.ip === undefined ? {} : { podIP: opts.ip },
  };
}

export function policy(ns: string, name: string, spec: object, annotations: Record<string, string> = {}): object {
  return { apiVersion: 'weft.dev/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns, annotations }, spec };
}

export function node(name: string, addresses: readonly { type: string; address: string }[], labels: Record<string, string> = {}): object {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name, ...labels } }, status: { addresses } };
}

/** Node objects for the fixture's nodes n1..n3 (left out of BASE_DOCS, as manifests often leave them out). */
export const NODE_DOCS: readonly object[] = [1, 2, 3].map((i) => node(`n${i}`, [
  { type: 'InternalIP', address: `198.18.0.${10 + i}` }, { type: 'Hostname', address: `n${i}` },
]));

export function yamlOf(docs: readonly object[]): string {
  return docs.map((d) => stringify(d)).join('---\n');
}

export const BASE_DOCS: readonly object[] = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } } },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'legacy' } },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'weft-system' } },
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: 'shop' } },
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'db', namespace: 'shop' } },
  pod('shop', 'web-1', { sa: 'web', node: 'n1', ip: '198.18.1.10', labels: { app: 'web' } }),
  pod('shop', 'web-2', { sa: 'web', node: 'n2', ip: '198.18.2.10', labels: { app: 'web' } }),
  pod('shop', 'db-1', { sa: 'db', node: 'n2', ip: '198.18.2.11', labels: { app: 'db' } }),
  pod('shop', 'batch', { sa: 'batch', node: 'n1', ip: '198.18.1.30', labels: { app: 'batch', 'weft.dev/mesh': 'disabled' } }),
  pod('legacy', 'old-1', { node: 'n1', ip: '198.18.1.20', labels: { app: 'old' } }),
  pod('legacy', 'new-1', { sa: 'fresh', node: 'n3', ip: '198.18.3.20', labels: { app: 'new', 'weft.dev/mesh': 'enabled' } }),
  pod('shop', 'pending', { sa: 'web', labels: { app: 'web' } }),
  {
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' },
    spec: { clusterIP: '198.19.0.10', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'admin', port: 81, targetPort: 9090 }] },
  },
  {
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'db', namespace: 'shop' },
    spec: { clusterIP: '198.19.0.11', selector: { app: 'db' }, ports: [{ name: 'pg', port: 5432 }] },
  },
  {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'db-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'db' } },
    addressType: 'IPv4',
    ports: [{ name: 'pg', port: 15432, protocol: 'TCP' }],
    endpoints: [
      { addresses: ['198.18.2.11'], conditions: { ready: true }, nodeName: 'n2', targetRef: { kind: 'Pod', name: 'db-1', namespace: 'shop' } },
      { addresses: ['198.18.9.9'], conditions: { ready: false }, nodeName: 'n9' },
      { addresses: ['198.18.8.8'], nodeName: 'n8' },
    ],
  },
];

export function parsed(extra: readonly object[] = []): ParsedManifests {
  const result = parseManifests([{ path: 'cluster.yaml', text: yamlOf([...BASE_DOCS, ...extra]) }], new Set(), { kubernetesSchema: true });
  if (result.problems.length > 0) throw new Error(`fixture has problems: ${JSON.stringify(result.problems)}`);
  return result;
}

export function state(extra: readonly object[] = [], trustDomain?: string): MeshState {
  return buildMeshState(parsed(extra), trustDomain === undefined ? {} : { trustDomain });
}
