// `weft control --kubernetes` against the simulator's API server: the CA in a Secret that two
// replicas share and a restart keeps, the trust bundle published as a ConfigMap in every
// namespace, agents bootstrapped by TokenReview of a projected token with one audience.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { runControlPlane, validateAgentResource } from '../../../src/app/control.ts';
import { controlConfigFromArgv } from '../../../src/config/control.ts';
import { ControlClient } from '../../../src/control/client.ts';
import { KubeApiServer } from '../../../src/sim/kube-api/server.ts';
import { waitFor } from './harness.ts';

const CRD = {
  apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'authorizationpolicies.weft.dev' },
  spec: { group: 'weft.dev', scope: 'Namespaced', names: { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies' }, versions: [{ name: 'v1alpha1', served: true, storage: true }] },
};

async function cluster(t: TestContext) {
  const server = new KubeApiServer([], { rbac: true }).serveBuiltins();
  t.after(() => server.close());
  const url = await server.listen();
  const dir = mkdtempSync(join(tmpdir(), 'weft-k8s-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  server.apply(CRD);
  for (const ns of ['weft-system', 'shop', 'kube-system']) server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, ...(ns === 'shop' ? { labels: { 'weft.dev/mesh': 'enabled' } } : {}) } });
  server.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: 'shop' } });
  server.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }] } });
  server.apply({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-0', namespace: 'shop', labels: { app: 'web' } },
    spec: { nodeName: 'node-a', serviceAccountName: 'web', containers: [{ name: 'app', image: 'x' }] }, status: { phase: 'Running', podIP: '198.18.1.10' },
  });
  // The control plane's own account, with just what it needs (the chart's ClusterRole says the same).
  server.apply({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'weft-control' },
    rules: [
      { apiGroups: [''], resources: ['namespaces', 'nodes', 'pods', 'services', 'serviceaccounts'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['weft.dev'], resources: ['authorizationpolicies'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'create', 'update'] },
    ],
  });
  server.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'weft-control' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'weft-control' }, subjects: [{ kind: 'ServiceAccount', name: 'weft-control', namespace: 'weft-system' }] });
  server.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'weft-control-ca', namespace: 'weft-system' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create', 'update'] }] });
  server.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'weft-control-ca', namespace: 'weft-system' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'weft-control-ca' }, subjects: [{ kind: 'ServiceAccount', name: 'weft-control' }] });
  const controlToken = server.tokens.issue({ namespace: 'weft-system', serviceAccount: 'weft-control', audiences: ['https://kubernetes.default.svc.cluster.local'], expirationSeconds: 3600 });
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, stringify({
    apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'sim', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'control', user: { token: controlToken } }], contexts: [{ name: 'sim', context: { cluster: 'sim', user: 'control' } }], 'current-context': 'sim',
  }));
  const start = (extra: string[] = []) => runControlPlane(controlConfigFromArgv([
    '--kubernetes', '--kubeconfig', kubeconfig, '--ca-secret', 'weft-system/weft-ca', '--trust-bundle-configmap', 'weft-ca-root-cert',
    '--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--dashboard', 'off', ...extra,
  ], {}), { logger: pino({ level: 'silent' }) });
  return { server, start };
}

function agentClient(t: TestContext, port: number, token: string, trustBundlePem: string): ControlClient {
  const agent = new ControlClient({
    address: `127.0.0.1:${port}`, node: 'node-a', trustDomain: 'cluster.local', trustBundlePem, bootstrapToken: () => token,
    validate: validateAgentResource, backoff: { initialMs: 50, maxMs: 200 },
  });
  t.after(() => agent.close());
  return agent;
}

test('two replicas share the CA Secret, publish the bundle everywhere, and bootstrap agents by TokenReview', async (t) => {
  const { server, start } = await cluster(t);
  const [a, b] = await Promise.all([start(), start()]);
  t.after(() => a.close());
  t.after(() => b.close());
  assert.equal(a.trustBundlePem, b.trustBundlePem, 'one root for both replicas');
  const secret = server.get('/api/v1/secrets', 'weft-system', 'weft-ca') as { data: Record<string, string> } | undefined;
  assert.equal(Buffer.from(secret?.data['ca.crt'] ?? '', 'base64').toString(), a.trustBundlePem);
  await waitFor(() => ['weft-system', 'shop', 'kube-system'].every((ns) => server.get('/api/v1/configmaps', ns, 'weft-ca-root-cert') !== undefined), 'the bundle in every namespace', 5000);
  const cm = server.get('/api/v1/configmaps', 'shop', 'weft-ca-root-cert') as { data: Record<string, string> };
  assert.equal(cm.data['root-cert.pem'], a.trustBundlePem);
  server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'later' } });
  await waitFor(() => server.get('/api/v1/configmaps', 'later', 'weft-ca-root-cert') !== undefined, 'the bundle in a new namespace', 5000);

  // The agent's projected token: audience weft-control, bound to its pod on node-a.
  const agentToken = server.tokens.issue({ namespace: 'weft-system', serviceAccount: 'weft-agent', audiences: ['weft-control'], expirationSeconds: 3600, pod: { name: 'weft-agent-1', uid: 'p' }, node: { name: 'node-a' } });
  for (const plane of [a, b]) {
    const agent = agentClient(t, plane.port, agentToken, cm.data['root-cert.pem'] ?? '');
    agent.start();
    await agent.whenSynced();
    assert.ok(agent.config().resources.has('workload/shop/web-0'));
    await agent.close();
  }

  // A token minted for another audience is refused: the chart must use one audience everywhere.
  const wrong = server.tokens.issue({ namespace: 'weft-system', serviceAccount: 'weft-agent', audiences: ['weft'], expirationSeconds: 3600, node: { name: 'node-a' } });
  const refused = agentClient(t, a.port, wrong, a.trustBundlePem);
  refused.start();
  await waitFor(() => refused.configDump().lastError !== undefined, 'the wrong-audience token to be refused', 5000);
  assert.match(refused.configDump().lastError ?? '', /WEFT_CONTROL_UNAUTHENTICATED: .*TokenReview did not accept it as system:serviceaccount:weft-system:weft-agent for audience "weft-control"/);
  assert.equal(refused.configDump().synced, false);

  // A restart keeps the root.
  await a.close();
  await b.close();
  const c = await start();
  t.after(() => c.close());
  assert.equal(c.trustBundlePem, a.trustBundlePem);
});
