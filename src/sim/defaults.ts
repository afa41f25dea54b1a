// The sample cluster `weft sim up` builds when no --manifests are given: namespace `demo`
// (in the mesh), pods alternating between two apps on every node, and one Service per
// app that selects pods on every node, port 80 -> 8080.

import { stringify } from 'yaml';
import type { ManifestFile } from '../model/manifests.ts';
import { MESH_ENABLED, MESH_LABEL } from '../model/types.ts';
import { nodeName } from './plan.ts';

export const SAMPLE_APPS = ['echo', 'hello'] as const;
export const SAMPLE_NAMESPACE = 'demo';
export const WORKLOAD_PORT = 8080;

export function sampleVip(appIndex: number): string {
  return `198.19.0.${10 + appIndex}`;
}

export function defaultManifests(nodes: number, podsPerNode: number): ManifestFile[] {
  const docs: unknown[] = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SAMPLE_NAMESPACE, labels: { [MESH_LABEL]: MESH_ENABLED } } },
  ];
  SAMPLE_APPS.forEach((app) => {
    docs.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: app, namespace: SAMPLE_NAMESPACE } });
  });
  SAMPLE_APPS.forEach((app, i) => {
    docs.push({
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: app, namespace: SAMPLE_NAMESPACE },
      spec: { clusterIP: sampleVip(i), selector: { app }, ports: [{ name: 'http', port: 80, targetPort: WORKLOAD_PORT, protocol: 'TCP' }] },
    });
  });
  for (let n = 1; n <= nodes; n++) {
    for (let j = 0; j < podsPerNode; j++) {
      const app = SAMPLE_APPS[j % SAMPLE_APPS.length] ?? 'echo';
      docs.push({
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name: `${app}-${n}-${j}`, namespace: SAMPLE_NAMESPACE, labels: { app } },
        spec: {
          nodeName: nodeName(n), serviceAccountName: app,
          containers: [{ name: 'app', image: 'weft/echo', ports: [{ containerPort: WORKLOAD_PORT }] }],
        },
      });
    }
  }
  return [{ path: 'generated.yaml', text: docs.map((d) => stringify(d)).join('---\n') }];
}
