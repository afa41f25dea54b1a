// Turning model objects into telemetry descriptions (PeerRef, ServiceRef).

import type { MeshService, Workload } from '../model/types.ts';
import type { PeerRef, ServiceRef } from './contracts.ts';
import { hostPort } from './tunnel-tuning.ts';

// Kubernetes name suffixes come from this alphabet (no vowels, no 0/1/3).
const SAFE = '[bcdfghjklmnpqrstvwxz2456789]';
const DEPLOYMENT_POD = new RegExp(`^(.+)-${SAFE}{6,10}-${SAFE}{5}$`);
const GENERATED_POD = new RegExp(`^(.+)-${SAFE}{5}$`);

/**
 * The workload a pod belongs to, as Istio labels it: `web-7d9f8c6b5-x2x4k` (a Deployment's
 * pod) is `web`, `agent-x2x4k` (DaemonSet, Job) is `agent`, anything else is the pod name.
 * Keeps metric series per workload, not per pod.
 */
export function workloadName(podName: string): string {
  return DEPLOYMENT_POD.exec(podName)?.[1] ?? GENERATED_POD.exec(podName)?.[1] ?? podName;
}

export function appOf(w: Workload): string | undefined {
  return w.labels['app.kubernetes.io/name'] ?? w.labels.app;
}

export function peerOf(w: Workload | undefined, address: string | undefined, principal?: string): PeerRef {
  if (w === undefined) return principal === undefined ? { address } : { address, principal };
  return { workload: workloadName(w.name), namespace: w.namespace, principal: principal ?? w.identity, app: appOf(w), address };
}

export function serviceRef(s: Pick<MeshService, 'name' | 'namespace'>, clusterDomain: string): ServiceRef {
  return { host: `${s.name}.${s.namespace}.svc.${clusterDomain}`, name: s.name, namespace: s.namespace };
}

export function addressOf(ip: string | undefined, port: number | undefined): string | undefined {
  return ip === undefined || ip === '' ? undefined : hostPort(ip, port ?? 0);
}
