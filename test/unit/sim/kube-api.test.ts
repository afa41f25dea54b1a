import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { KubeConfig, CoreV1Api, AuthenticationV1Api, ApiException } from '@kubernetes/client-node';
import { parseResourcePath, objectPath, BUILTIN_KINDS } from '../../../src/sim/kube-api/resources.ts';
import { rbacAllows, type RbacObjects } from '../../../src/sim/kube-api/rbac.ts';
import { KubeApiServer } from '../../../src/sim/kube-api/server.ts';
import { API_AUDIENCE, TOKEN_CLOCK_PATH, TokenAuthority, type ApiUser } from '../../../src/sim/kube-api/tokens.ts';
import { SimApiClient } from '../../../src/sim/install/api-client.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test('request paths name group, version, namespace, plural, name and subresource', () => {
  const cases: Array<[string, ReturnType<typeof parseResourcePath>]> = [
    ['/api/v1/pods', { apiVersion: 'v1', namespace: undefined, plural: 'pods', name: undefined, subresource: undefined }],
    ['/api/v1/namespaces', { apiVersion: 'v1', namespace: undefined, plural: 'namespaces', name: undefined, subresource: undefined }],
    ['/api/v1/namespaces/shop', { apiVersion: 'v1', namespace: undefined, plural: 'namespaces', name: 'shop', subresource: undefined }],
    ['/api/v1/namespaces/shop/pods', { apiVersion: 'v1', namespace: 'shop', plural: 'pods', name: undefined, subresource: undefined }],
    ['/api/v1/namespaces/shop/pods/web-1/status', { apiVersion: 'v1', namespace: 'shop', plural: 'pods', name: 'web-1', subresource: 'status' }],
    ['/apis/apps/v1/namespaces/weft-system/daemonsets/weft-agent', { apiVersion: 'apps/v1', namespace: 'weft-system', plural: 'daemonsets', name: 'weft-agent', subresource: undefined }],
    ['/apis/weft.dev/v1alpha1/authorizationpolicies', { apiVersion: 'weft.dev/v1alpha1', namespace: undefined, plural: 'authorizationpolicies', name: undefined, subresource: undefined }],
    ['/api/v1/nodes/n1', { apiVersion: 'v1', namespace: undefined, plural: 'nodes', name: 'n1', subresource: undefined }],
    ['/', undefined], ['/api', undefined], ['/apis/apps', undefined], ['/version', undefined],
  ];
  for (const [path, want] of cases) assert.deepEqual(parseResourcePath(path), want, path);
  const pod = BUILTIN_KINDS.find((k) => k.kind === 'Pod') ?? assert.fail();
  assert.equal(objectPath(pod, 'shop', 'web-1'), '/api/v1/namespaces/shop/pods/web-1');
});

const sa = (ns: string, name: string): ApiUser => ({ username: `system:serviceaccount:${ns}:${name}`, uid: 'u', groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'], extra: {} });

test('RBAC: cluster bindings apply everywhere, role bindings only in their namespace, resourceNames narrow', () => {
  const objects: RbacObjects = {
    clusterRoles: [
      { metadata: { name: 'reader' }, rules: [{ apiGroups: [''], resources: ['pods', 'namespaces'], verbs: ['get', 'list', 'watch'] }, { apiGroups: ['weft.dev'], resources: ['*'], verbs: ['list'] }] },
      { metadata: { name: 'cm-writer' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'update'] }] },
    ],
    roles: [{ metadata: { name: 'ca', namespace: 'weft-system' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'update'], resourceNames: ['weft-ca'] }, { apiGroups: [''], resources: ['secrets'], verbs: ['create'] }] }],
    clusterRoleBindings: [{ metadata: { name: 'b1' }, roleRef: { kind: 'ClusterRole', name: 'reader' }, subjects: [{ kind: 'ServiceAccount', name: 'weft-control', namespace: 'weft-system' }] }],
    roleBindings: [
      { metadata: { name: 'b2', namespace: 'weft-system' }, roleRef: { kind: 'Role', name: 'ca' }, subjects: [{ kind: 'ServiceAccount', name: 'weft-control' }] },
      { metadata: { name: 'b3', namespace: 'shop' }, roleRef: { kind: 'ClusterRole', name: 'cm-writer' }, subjects: [{ kind: 'Group', name: 'system:serviceaccounts:weft-system' }] },
    ],
  };
  const control = sa('weft-system', 'weft-control');
  const agent = sa('weft-system', 'weft-agent');
  const cases: Array<[ApiUser, Parameters<typeof rbacAllows>[2], boolean]> = [
    [control, { verb: 'watch', apiGroup: '', resource: 'pods' }, true],
    [control, { verb: 'watch', apiGroup: '', resource: 'pods', namespace: 'shop' }, true],
    [control, { verb: 'delete', apiGroup: '', resource: 'pods', namespace: 'shop', name: 'x' }, false],
    [control, { verb: 'list', apiGroup: 'weft.dev', resource: 'authorizationpolicies' }, true],
    [control, { verb: 'get', apiGroup: '', resource: 'pods', subresource: 'log', namespace: 'shop', name: 'x' }, false],
    [control, { verb: 'get', apiGroup: '', resource: 'secrets', namespace: 'weft-system', name: 'weft-ca' }, true],
    [control, { verb: 'get', apiGroup: '', resource: 'secrets', namespace: 'weft-system', name: 'other' }, false],
    [control, { verb: 'get', apiGroup: '', resource: 'secrets', namespace: 'shop', name: 'weft-ca' }, false],
    [control, { verb: 'create', apiGroup: '', resource: 'secrets', namespace: 'weft-system', name: 'weft-ca' }, true],
    [control, { verb: 'create', apiGroup: '', resource: 'configmaps', namespace: 'shop' }, true],
    [control, { verb: 'create', apiGroup: '', resource: 'configmaps', namespace: 'other' }, false],
    [agent, { verb: 'list', apiGroup: '', resource: 'pods' }, false],
    [agent, { verb: 'create', apiGroup: '', resource: 'configmaps', namespace: 'shop' }, true], // via its group
    [{ ...agent, groups: ['system:masters'] }, { verb: 'delete', apiGroup: '', resource: 'nodes' }, true],
  ];
  for (const [user, req, want] of cases) assert.equal(rbacAllows(objects, user, req), want, `${user.username} ${JSON.stringify(req)}`);
});

test('token review: audiences intersect, the bound pod and node are in extra, expiry holds', () => {
  let now = 1_000_000;
  const tokens = new TokenAuthority(() => now);
  const t = tokens.issue({ namespace: 'weft-system', serviceAccount: 'weft-agent', audiences: ['weft-control'], expirationSeconds: 600, pod: { name: 'weft-agent-x', uid: 'p-1' }, node: { name: 'node-1' } });
  const ok = tokens.review(t, ['weft-control']);
  assert.equal(ok.authenticated, true);
  assert.equal(ok.user?.username, 'system:serviceaccount:weft-system:weft-agent');
  assert.deepEqual(ok.user?.extra['authentication.kubernetes.io/node-name'], ['node-1']);
  assert.deepEqual(ok.audiences, ['weft-control']);
  const wrong = tokens.review(t, ['weft']);
  assert.equal(wrong.authenticated, false);
  assert.match(wrong.error ?? '', /token audiences \["weft-control"\] is invalid for the target audiences \["weft"\]/);
  assert.equal(tokens.authenticate(t), undefined, 'a token for weft-control is no API credential');
  const api = tokens.issue({ namespace: 'weft-system', serviceAccount: 'weft-control', audiences: [API_AUDIENCE], expirationSeconds: 600 });
  assert.equal(tokens.authenticate(api)?.username, 'system:serviceaccount:weft-system:weft-control');
  now += 600_000;
  assert.match(tokens.review(t, ['weft-control']).error ?? '', /expired/);
  assert.equal(tokens.review('nonsense', undefined).authenticated, false);
});

async function served(t: TestContext, rbac: boolean): Promise<{ server: KubeApiServer; kc: (token: string) => KubeConfig }> {
  const server = new KubeApiServer([], { rbac }).serveBuiltins();
  t.after(() => server.close());
  const url = await server.listen();
  const kc = (token: string): KubeConfig => {
    const k = new KubeConfig();
    k.loadFromOptions({ clusters: [{ name: 'sim', server: url, skipTLSVerify: true }], users: [{ name: 'u', token }], contexts: [{ name: 'sim', cluster: 'sim', user: 'u' }], currentContext: 'sim' });
    return k;
  };
  return { server, kc };
}

const code = (want: number) => (err: unknown) => err instanceof ApiException && err.code === want;

test('CRUD with client-node: create, 409 on a duplicate and on a stale resourceVersion, 404, RBAC 403', async (t) => {
  const { server, kc } = await served(t, true);
  const admin = kc(server.token).makeApiClient(CoreV1Api);
  await admin.createNamespace({ body: { metadata: { name: 'weft-system' } } });
  const created = await admin.createNamespacedConfigMap({ namespace: 'weft-system', body: { metadata: { name: 'c' }, data: { a: '1' } } });
  assert.match(created.metadata?.uid ?? '', /^[0-9a-f-]{36}$/);
  await assert.rejects(admin.createNamespacedConfigMap({ namespace: 'weft-system', body: { metadata: { name: 'c' } } }), code(409));
  const replaced = await admin.replaceNamespacedConfigMap({ namespace: 'weft-system', name: 'c', body: { metadata: { name: 'c', resourceVersion: created.metadata?.resourceVersion }, data: { a: '2' } } });
  assert.equal(replaced.data?.a, '2');
  await assert.rejects(admin.replaceNamespacedConfigMap({ namespace: 'weft-system', name: 'c', body: { metadata: { name: 'c', resourceVersion: created.metadata?.resourceVersion } } }), code(409));
  await assert.rejects(admin.readNamespacedConfigMap({ namespace: 'weft-system', name: 'nope' }), code(404));
  assert.equal((await admin.listNamespacedConfigMap({ namespace: 'weft-system' })).items.length, 1);
  await admin.deleteNamespacedConfigMap({ namespace: 'weft-system', name: 'c' });
  await assert.rejects(admin.readNamespacedConfigMap({ namespace: 'weft-system', name: 'c' }), code(404));

  // A service account with no binding is refused; a binding makes the same call work.
  const token = server.tokens.issue({ namespace: 'weft-system', serviceAccount: 'weft-control', audiences: [API_AUDIENCE], expirationSeconds: 3600 });
  const control = kc(token).makeApiClient(CoreV1Api);
  await assert.rejects(control.listNamespace(), (err: unknown) => err instanceof ApiException && err.code === 403 && /cannot list resource "namespaces"/.test((JSON.parse(String(err.body)) as { message: string }).message));
  server.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'r' }, rules: [{ apiGroups: [''], resources: ['namespaces'], verbs: ['list'] }] });
  server.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'r' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'r' }, subjects: [{ kind: 'ServiceAccount', name: 'weft-control', namespace: 'weft-system' }] });
  assert.deepEqual((await control.listNamespace()).items.map((n) => n.metadata?.name), ['weft-system']);
  await assert.rejects(kc('bogus').makeApiClient(CoreV1Api).listNamespace(), code(401));

  // TokenReview through the API, as the control plane calls it.
  server.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'tr' }, rules: [{ apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] }] });
  server.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'tr' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'tr' }, subjects: [{ kind: 'ServiceAccount', name: 'weft-control', namespace: 'weft-system' }] });
  const agentToken = server.tokens.issue({ namespace: 'weft-system', serviceAccount: 'weft-agent', audiences: ['weft-control'], expirationSeconds: 3600, node: { name: 'node-1' } });
  const review = await kc(token).makeApiClient(AuthenticationV1Api).createTokenReview({ body: { spec: { token: agentToken, audiences: ['weft-control'] } } });
  assert.equal(review.status?.authenticated, true);
  assert.deepEqual(review.status?.user?.extra?.['authentication.kubernetes.io/node-name'], ['node-1']);
});

test('a custom kind is served once its CRD is created', async (t) => {
  const { server } = await served(t, false);
  assert.throws(() => server.apply({ apiVersion: 'weft.dev/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'shop' } }), /serves no AuthorizationPolicy/);
  server.apply({
    apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'authorizationpolicies.weft.dev' },
    spec: { group: 'weft.dev', scope: 'Namespaced', names: { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies' }, versions: [{ name: 'v1alpha1', served: true, storage: true }] },
  });
  const p = server.apply({ apiVersion: 'weft.dev/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'shop' }, spec: {} });
  assert.equal((p.metadata as { namespace: string }).namespace, 'shop');
  assert.equal(server.list('/apis/weft.dev/v1alpha1/authorizationpolicies').length, 1);
});

test('TokenRequest (the kubelet\'s projected tokens) over the administrator socket: bound to the pod and its node, refusals tried', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-kube-api-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const server = new KubeApiServer([], { rbac: true }).serveBuiltins();
  t.after(() => server.close());
  await server.listen({ socketPath: join(dir, 'api.sock') });
  const url = await server.listen();
  const api = new SimApiClient(join(dir, 'api.sock'));
  server.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'weft-agent', namespace: 'weft-system' } });
  const pod = server.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'weft-agent-n1', namespace: 'weft-system' }, spec: { nodeName: 'node-1', containers: [] } });
  const uid = String((pod.metadata as { uid: string }).uid);

  const token = await api.token('weft-system', 'weft-agent', ['weft-control'], 3600, { name: 'weft-agent-n1', uid });
  const review = server.tokens.review(token, ['weft-control']);
  assert.equal(review.authenticated, true);
  assert.equal(review.user?.username, 'system:serviceaccount:weft-system:weft-agent');
  assert.deepEqual(review.user?.extra['authentication.kubernetes.io/node-name'], ['node-1']);
  assert.deepEqual(review.user?.extra['authentication.kubernetes.io/pod-uid'], [uid]);
  assert.equal(server.tokens.review(token, ['https://kubernetes.default.svc.cluster.local']).authenticated, false, 'not an API credential');

  await assert.rejects(api.token('weft-system', 'nobody', ['a'], 3600, { name: 'weft-agent-n1', uid }), /HTTP 404: serviceaccounts "nobody" not found/);
  await assert.rejects(api.token('weft-system', 'weft-agent', ['a'], 3600, { name: 'weft-agent-n1', uid: 'other' }), /HTTP 404: the bound object Pod "weft-agent-n1" was not found/);
  await assert.rejects(api.token('weft-system', 'weft-agent', ['a'], 60, { name: 'weft-agent-n1', uid }), /HTTP 422: .*less than 10 minutes/);
  // Another account may not mint tokens for weft-agent without RBAC saying so.
  const other = server.tokens.issue({ namespace: 'shop', serviceAccount: 'web', audiences: [API_AUDIENCE], expirationSeconds: 3600 });
  const res = await fetch(`${url}/api/v1/namespaces/weft-system/serviceaccounts/weft-agent/token`, { method: 'POST', headers: { authorization: `Bearer ${other}`, 'content-type': 'application/json' }, body: JSON.stringify({ spec: { audiences: ['weft-control'] } }) });
  assert.equal(res.status, 403);
  assert.match(((await res.json()) as { message: string }).message, /cannot create resource "serviceaccounts\/token"/);

  // The token clock (the simulator's own verb): an hour passes for tokens, not for anything else.
  const moved = await fetch(`${url}${TOKEN_CLOCK_PATH}`, { method: 'POST', headers: { authorization: `Bearer ${other}`, 'content-type': 'application/json' }, body: JSON.stringify({ seconds: 3600 }) });
  assert.equal(moved.status, 403, 'only the administrator moves the token clock');
  assert.equal(server.tokens.review(token, ['weft-control']).authenticated, true);
  assert.equal((await api.request('POST', TOKEN_CLOCK_PATH, { seconds: -1 })).status, 400);
  assert.equal((await api.request('POST', TOKEN_CLOCK_PATH, { seconds: 2880 })).status, 200);
  // At 80% of its lifetime the kubelet asks for a new token; once the old one's hour is up only the new one works.
  const renewed = await api.token('weft-system', 'weft-agent', ['weft-control'], 3600, { name: 'weft-agent-n1', uid });
  assert.equal((await api.request('POST', TOKEN_CLOCK_PATH, { seconds: 720 })).status, 200);
  assert.match(server.tokens.review(token, ['weft-control']).error ?? '', /expired/);
  assert.equal(server.tokens.review(renewed, ['weft-control']).authenticated, true);
});
