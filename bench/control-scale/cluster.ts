// The scale benchmark's cluster, in the local Kubernetes API server (src/sim/kube-api): one
// enrolled namespace, N nodes (one agent each), services selecting pods by `app`, pods
// spread over nodes and services, and the churn: one pod relabelled to the next service,
// so it leaves one service's endpoints and joins another's on every meshed node.
// Pods look like the API's (managedFields, statuses, env): what an informer really caches.

import { KubeApiServer } from '../../src/sim/kube-api/server.ts';
import { WATCHED_KINDS } from '../../src/control/source/kubernetes.ts';

export const NAMESPACE = 'bench';
const SERVICE_ACCOUNTS = 50;

export interface ClusterShape {
  readonly nodes: number;
  readonly pods: number;
  readonly services: number;
}

const path = (kind: string): string => {
  const k = WATCHED_KINDS.find((w) => w.kind === kind);
  if (k === undefined) throw new Error(`no watched kind ${kind}`);
  return k.path;
};

export const PATHS = { namespace: path('Namespace'), pod: path('Pod'), service: path('Service'), account: path('ServiceAccount'), node: path('Node') };

/** 198.18.16.1 upwards, 250 per /24 (simulated addresses, never assigned). */
export function podIp(j: number): string {
  return `198.18.${16 + Math.floor(j / 250)}.${1 + (j % 250)}`;
}

function serviceVip(i: number): string {
  return `198.19.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
}

function nodeIp(k: number): string {
  return `198.19.${240 + Math.floor(k / 250)}.${1 + (k % 250)}`;
}

export function nodeName(k: number): string {
  return `node-${k + 1}`;
}

export function podBody(j: number, shape: ClusterShape, app: number): Record<string, unknown> {
  const name = `pod-${j}`;
  return {
    metadata: {
      name, namespace: NAMESPACE, uid: `00000000-0000-4000-8000-${String(j).padStart(12, '0')}`, labels: { app: `svc-${app}`, version: 'v1', 'pod-template-hash': '5d8f7c9b6' },
      annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-11-30T10:00:00Z' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `svc-${app}-5d8f7c9b6`, uid: 'rs', controller: true }],
      managedFields: [{ manager: 'kubelet', operation: 'Update', apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:status': { 'f:conditions': {}, 'f:podIP': {} } } }],
    },
    spec: {
      nodeName: nodeName(j % shape.nodes), serviceAccountName: `sa-${j % SERVICE_ACCOUNTS}`, restartPolicy: 'Always', dnsPolicy: 'ClusterFirst',
      containers: [{
        name: 'app', image: 'registry.example/bench:1.0', ports: [{ containerPort: 8080, protocol: 'TCP' }],
        env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }], resources: { requests: { cpu: '10m', memory: '16Mi' } },
        volumeMounts: [{ name: 'token', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
      }],
      volumes: [{ name: 'token', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 3607 } }] } }],
    },
    status: {
      phase: 'Running', podIP: podIp(j), podIPs: [{ ip: podIp(j) }], hostIP: nodeIp(j % shape.nodes), qosClass: 'Burstable',
      conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: '2026-11-30T10:00:05Z' }, { type: 'ContainersReady', status: 'True' }],
      containerStatuses: [{ name: 'app', ready: true, restartCount: 0, image: 'registry.example/bench:1.0', imageID: 'sha256:0123', state: { running: { startedAt: '2026-11-30T10:00:04Z' } } }],
    },
  };
}

/** The cluster, loaded into a new local API server (not listening yet). */
export function seedCluster(shape: ClusterShape): { server: KubeApiServer; apps: number[] } {
  const server = new KubeApiServer(WATCHED_KINDS);
  server.upsert(PATHS.namespace, { metadata: { name: NAMESPACE, labels: { 'weft.dev/mesh': 'enabled' } } });
  for (let i = 0; i < SERVICE_ACCOUNTS; i++) server.upsert(PATHS.account, { metadata: { name: `sa-${i}`, namespace: NAMESPACE } });
  for (let k = 0; k < shape.nodes; k++) {
    server.upsert(PATHS.node, {
      metadata: { name: nodeName(k), labels: { 'kubernetes.io/hostname': nodeName(k) } },
      status: { addresses: [{ type: 'InternalIP', address: nodeIp(k) }, { type: 'Hostname', address: nodeName(k) }], conditions: [{ type: 'Ready', status: 'True' }] },
    });
  }
  for (let i = 0; i < shape.services; i++) {
    server.upsert(PATHS.service, {
      metadata: { name: `svc-${i}`, namespace: NAMESPACE },
      spec: { clusterIP: serviceVip(i), selector: { app: `svc-${i}` }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    });
  }
  const apps = Array.from({ length: shape.pods }, (_, j) => j % shape.services);
  for (let j = 0; j < shape.pods; j++) server.upsert(PATHS.pod, podBody(j, shape, apps[j]));
  return { server, apps };
}

/** The pod the i-th change moves: a stride through every pod, so repeats are a whole round apart. */
export function churnPod(i: number, pods: number): number {
  let stride = 7919;
  while (gcd(stride, pods) !== 1) stride += 2;
  return (i * stride) % pods;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
