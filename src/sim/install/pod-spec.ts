// What the kubelet would run for one pod of an installed workload, read from its pod
// template: the first container's command and args with `$(VAR)` expanded from its env, the
// env with fieldRefs resolved (NODE_NAME, HOST_IP, POD_UID, ...) and ConfigMap/Secret keys
// looked up, its volume mounts joined with the pod's volumes (plus the API access token the
// kubelet mounts unless automount is off), the readiness probe, and the security context
// (user, capabilities, read-only root).
// Pure: the lookups come in as a function; tested with tables.

import { WeftError } from '../../core/errors.ts';
import type { ContainerResources } from '../../core/kubelet-cgroups.ts';
import { SimErrors } from '../errors.ts';

type Body = Record<string, unknown>;

/** The pod a template is instantiated as. */
export interface PodContext {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly nodeName: string;
  readonly podIP: string;
  readonly hostIP: string;
  /** The service account's own automountServiceAccountToken, when it says. */
  readonly serviceAccountAutomount?: boolean | undefined;
  /** Environment the kubelet adds to every container (KUBERNETES_SERVICE_HOST, ...). */
  readonly clusterEnv?: Readonly<Record<string, string>>;
}

/** A ConfigMap's or Secret's value by key (Secret values decoded); undefined when absent. */
export type KeyLookup = (kind: 'ConfigMap' | 'Secret', namespace: string, name: string, key: string) => string | undefined;

export type VolumeSource =
  | { readonly type: 'hostPath'; readonly path: string }
  | { readonly type: 'emptyDir' }
  | { readonly type: 'configMap'; readonly name: string; readonly optional: boolean }
  | { readonly type: 'secret'; readonly name: string; readonly optional: boolean }
  | { readonly type: 'token'; readonly path: string; readonly audience: string | undefined; readonly expirationSeconds: number }
  /** The kubelet's kube-api-access volume: token, ca.crt, namespace. */
  | { readonly type: 'apiAccess' };

export interface PodMount {
  readonly volume: string;
  readonly mountPath: string;
  readonly readOnly: boolean;
  /** A projected volume has several sources; the others have one. */
  readonly sources: readonly VolumeSource[];
}

export interface PodRun {
  readonly container: string;
  /** The container's command (undefined: the image's entrypoint, `weft`). */
  readonly command: readonly string[] | undefined;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly hostNetwork: boolean;
  readonly serviceAccount: string;
  readonly mounts: readonly PodMount[];
  readonly readiness: { readonly port: number; readonly path: string } | undefined;
  readonly runAsUser: number | undefined;
  readonly runAsGroup: number | undefined;
  /** securityContext.readOnlyRootFilesystem: nothing but the volumes (and /proc, /dev) is writable. */
  readonly readOnlyRootFilesystem: boolean;
  /** Added and dropped capabilities, upper-case without CAP_ (undefined: the runtime's default set). */
  readonly capabilities: { readonly add: readonly string[]; readonly drop: readonly string[] } | undefined;
  readonly resources: ContainerResources;
}

export const API_ACCESS_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

const isRecord = (v: unknown): v is Body => typeof v === 'object' && v !== null && !Array.isArray(v);
const records = (v: unknown): Body[] => (Array.isArray(v) ? v.filter(isRecord) : []);

function refuse(where: string, message: string): never {
  throw new WeftError(SimErrors.BAD_MANIFEST, `${where}: ${message}`);
}

/** `$(VAR)` -> the value of VAR when defined, `$$(VAR)` -> `$(VAR)`, as the kubelet expands command and args. */
export function expandVars(text: string, env: Readonly<Record<string, string>>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m: string, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && Object.hasOwn(env, name) ? env[name] ?? '' : m;
  });
}

function fieldValue(path: string, ctx: PodContext, serviceAccount: string, where: string): string {
  switch (path) {
    case 'metadata.name': return ctx.name;
    case 'metadata.namespace': return ctx.namespace;
    case 'metadata.uid': return ctx.uid;
    case 'spec.nodeName': return ctx.nodeName;
    case 'spec.serviceAccountName': return serviceAccount;
    case 'status.hostIP': return ctx.hostIP;
    case 'status.podIP': return ctx.podIP;
    default: return refuse(where, `fieldRef ${JSON.stringify(path)} is not one the simulator resolves (metadata.name|namespace|uid, spec.nodeName|serviceAccountName, status.hostIP|podIP)`);
  }
}

function resolveEnv(container: Body, ctx: PodContext, serviceAccount: string, lookup: KeyLookup, where: string): Record<string, string> {
  const env: Record<string, string> = { ...ctx.clusterEnv };
  for (const [i, e] of records(container.env).entries()) {
    const at = `${where}.env[${i}]`;
    const name = typeof e.name === 'string' ? e.name : refuse(at, 'has no name');
    if (typeof e.value === 'string') {
      env[name] = expandVars(e.value, env);
      continue;
    }
    const from = isRecord(e.valueFrom) ? e.valueFrom : undefined;
    if (from === undefined) {
      env[name] = '';
      continue;
    }
    if (isRecord(from.fieldRef)) {
      env[name] = fieldValue(String(from.fieldRef.fieldPath), ctx, serviceAccount, `${at}.valueFrom`);
      continue;
    }
    const ref = isRecord(from.configMapKeyRef) ? { kind: 'ConfigMap' as const, r: from.configMapKeyRef } : isRecord(from.secretKeyRef) ? { kind: 'Secret' as const, r: from.secretKeyRef } : undefined;
    if (ref === undefined) refuse(`${at}.valueFrom`, 'only fieldRef, configMapKeyRef and secretKeyRef are supported');
    const value = lookup(ref.kind, ctx.namespace, String(ref.r.name), String(ref.r.key));
    if (value === undefined && ref.r.optional !== true) refuse(`${at}.valueFrom`, `${ref.kind} ${ctx.namespace}/${String(ref.r.name)} has no key ${JSON.stringify(ref.r.key)} (the kubelet would not start the container)`);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

function volumeSources(v: Body, where: string): VolumeSource[] {
  if (isRecord(v.hostPath)) return [{ type: 'hostPath', path: String(v.hostPath.path) }];
  if (isRecord(v.emptyDir)) return [{ type: 'emptyDir' }];
  if (isRecord(v.configMap)) return [{ type: 'configMap', name: String(v.configMap.name), optional: v.configMap.optional === true }];
  if (isRecord(v.secret)) return [{ type: 'secret', name: String(v.secret.secretName), optional: v.secret.optional === true }];
  if (isRecord(v.projected)) {
    return records(v.projected.sources).map((s, i): VolumeSource => {
      if (isRecord(s.serviceAccountToken)) {
        const t = s.serviceAccountToken;
        return { type: 'token', path: String(t.path), audience: typeof t.audience === 'string' ? t.audience : undefined, expirationSeconds: typeof t.expirationSeconds === 'number' ? t.expirationSeconds : 3600 };
      }
      if (isRecord(s.configMap)) return { type: 'configMap', name: String(s.configMap.name), optional: s.configMap.optional === true };
      if (isRecord(s.secret)) return { type: 'secret', name: String(s.secret.name), optional: s.secret.optional === true };
      return refuse(`${where}.projected.sources[${i}]`, 'only serviceAccountToken, configMap and secret sources are supported');
    });
  }
  return refuse(where, 'only hostPath, emptyDir, configMap, secret and projected volumes are supported');
}

function probeOf(container: Body, where: string): PodRun['readiness'] {
  const probe = isRecord(container.readinessProbe) ? container.readinessProbe : undefined;
  if (probe === undefined) return undefined;
  const get = isRecord(probe.httpGet) ? probe.httpGet : refuse(`${where}.readinessProbe`, 'only httpGet probes are supported');
  let port = get.port;
  if (typeof port === 'string') {
    const named = records(container.ports).find((p) => p.name === port);
    port = named?.containerPort ?? refuse(`${where}.readinessProbe.httpGet.port`, `no container port is named ${JSON.stringify(port)}`);
  }
  if (typeof port !== 'number') return refuse(`${where}.readinessProbe.httpGet.port`, 'must be a port number or name');
  return { port, path: typeof get.path === 'string' ? get.path : '/' };
}

function upperCaps(v: unknown): string[] {
  return Array.isArray(v) ? v.map((c) => String(c).toUpperCase().replace(/^CAP_/, '')) : [];
}

/** What the kubelet runs for `template` as pod `ctx` (its first container). */
export function podRun(template: Body, ctx: PodContext, lookup: KeyLookup, where: string): PodRun {
  const spec = isRecord(template.spec) ? template.spec : {};
  const container = records(spec.containers)[0] ?? refuse(`${where}.spec.containers`, 'is empty');
  const cWhere = `${where}.spec.containers[0]`;
  const serviceAccount = typeof spec.serviceAccountName === 'string' ? spec.serviceAccountName : 'default';
  const env = resolveEnv(container, ctx, serviceAccount, lookup, cWhere);
  const expand = (l: unknown): string[] | undefined => (Array.isArray(l) ? l.map((a) => expandVars(String(a), env)) : undefined);

  const volumes = new Map(records(spec.volumes).map((v) => [String(v.name), v]));
  const mounts: PodMount[] = records(container.volumeMounts).map((m, i) => {
    const v = volumes.get(String(m.name)) ?? refuse(`${cWhere}.volumeMounts[${i}]`, `no volume named ${JSON.stringify(m.name)} in spec.volumes`);
    if (m.subPath !== undefined) refuse(`${cWhere}.volumeMounts[${i}].subPath`, 'subPath mounts are not supported');
    return { volume: String(m.name), mountPath: String(m.mountPath), readOnly: m.readOnly === true, sources: volumeSources(v, `${where}.spec.volumes[${String(m.name)}]`) };
  });
  const automount = typeof spec.automountServiceAccountToken === 'boolean' ? spec.automountServiceAccountToken : ctx.serviceAccountAutomount ?? true;
  if (automount && !mounts.some((m) => m.mountPath === API_ACCESS_MOUNT)) {
    mounts.push({ volume: 'kube-api-access', mountPath: API_ACCESS_MOUNT, readOnly: true, sources: [{ type: 'apiAccess' }] });
  }

  const podSec = isRecord(spec.securityContext) ? spec.securityContext : {};
  const sec = isRecord(container.securityContext) ? container.securityContext : {};
  const uid = sec.runAsUser ?? podSec.runAsUser;
  const gid = sec.runAsGroup ?? podSec.runAsGroup;
  const caps = isRecord(sec.capabilities) ? sec.capabilities : undefined;
  return Object.freeze({
    container: String(container.name),
    command: expand(container.command),
    args: expand(container.args) ?? [],
    env: Object.freeze(env),
    hostNetwork: spec.hostNetwork === true,
    serviceAccount,
    mounts: Object.freeze(mounts),
    readiness: probeOf(container, cWhere),
    runAsUser: typeof uid === 'number' ? uid : undefined,
    runAsGroup: typeof gid === 'number' ? gid : undefined,
    readOnlyRootFilesystem: sec.readOnlyRootFilesystem === true,
    capabilities: caps === undefined ? undefined : { add: upperCaps(caps.add), drop: upperCaps(caps.drop) },
    resources: isRecord(container.resources) ? container.resources as ContainerResources : {},
  });
}
