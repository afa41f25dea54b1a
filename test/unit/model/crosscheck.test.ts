import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crossCheck } from '../../../src/model/crosscheck.ts';
import { parseManifests } from '../../../src/model/manifests.ts';
import { BASE_DOCS, node, NODE_DOCS, pod, policy, yamlOf } from './fixture.ts';

function check(extra: readonly object[]) {
  const r = parseManifests([{ path: 'base.yaml', text: yamlOf(BASE_DOCS) }, { path: 'extra.yaml', text: yamlOf(extra) }], new Set(), { kubernetesSchema: true });
  assert.deepEqual(r.problems, []);
  return crossCheck(r, { trustDomain: 'cluster.local', origins: r.origins }).map((p) => `${p.file}: ${p.object}: ${p.field}: ${p.message}`);
}

test('the base fixture is clean', () => {
  assert.deepEqual(check([]), []);
});

test('cross-object problems', () => {
  const svc = (name: string, vip: string, selector: Record<string, string>) => ({
    apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'shop' }, spec: { clusterIP: vip, selector, ports: [{ port: 80 }] },
  });
  const got = check([
    svc('dup', '198.19.0.10', { app: 'web' }),
    svc('ghost', '198.19.0.20', { app: 'nothing' }),
    svc('on-pod', '198.18.1.10', { app: 'web' }),
    pod('shop', 'twin', { node: 'n1', ip: '198.18.2.11', labels: { app: 'web' } }),
    { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'orphan', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'gone' } }, addressType: 'IPv4', endpoints: [] },
    policy('shop', 'p', { rules: [{ from: [{ source: {
      principals: ['cluster.local/ns/shop/sa/web', 'cluster.local/ns/shop/sa/nobody', 'other.td/ns/shop/sa/web', 'cluster.local/ns/shop/*'],
      notPrincipals: ['cluster.local/ns/legacy/sa/default', 'cluster.local/ns/legacy/sa/ghost'],
    } }] }] }),
    pod('shop', 'far', { node: 'node-that-no-one-declared', ip: '198.18.4.4' }),
  ]);
  assert.deepEqual(got, [
    'extra.yaml: Pod/shop/twin: status.podIP: 198.18.2.11 is also the IP of Pod shop/db-1',
    'extra.yaml: Service/shop/on-pod: spec.clusterIP: 198.18.1.10 is also the IP of Pod shop/web-1',
    'base.yaml: Service/shop/web: spec.clusterIP: 198.19.0.10 is already the cluster IP of Service shop/dup',
    'extra.yaml: Service/shop/ghost: spec.selector: selects no Pod in namespace shop (app=nothing), so the Service has no endpoints',
    'extra.yaml: EndpointSlice/shop/orphan: metadata.labels.kubernetes.io/service-name: names Service shop/gone, which does not exist',
    'extra.yaml: AuthorizationPolicy/shop/p: spec.rules[0].from[0].source.principals[1]: no ServiceAccount or Pod has service account shop/nobody',
    'extra.yaml: AuthorizationPolicy/shop/p: spec.rules[0].from[0].source.principals[2]: trust domain "other.td" is not the mesh\'s ("cluster.local"), so spiffe://other.td/ns/shop/sa/web never matches',
    'extra.yaml: AuthorizationPolicy/shop/p: spec.rules[0].from[0].source.notPrincipals[1]: no ServiceAccount or Pod has service account legacy/ghost',
  ]);
});

test('a Pod on a node no Node object declares is a problem only when some Node objects are given', () => {
  const far = pod('shop', 'far', { node: 'n7', ip: '198.18.7.4' });
  assert.deepEqual(check([far]), [], 'manifests without Nodes: the cluster has them');
  const done = { ...pod('shop', 'done', { node: 'gone', ip: '198.18.7.5' }), status: { podIP: '198.18.7.5', phase: 'Succeeded' } };
  assert.deepEqual(check([...NODE_DOCS, far, done]), [
    'extra.yaml: Pod/shop/far: spec.nodeName: is scheduled on node "n7", which no Node object declares (Nodes: n1, n2, n3)',
  ]);
});

test('two Nodes with one address are a problem', () => {
  assert.deepEqual(check([...NODE_DOCS, node('n4', [{ type: 'InternalIP', address: '198.18.0.11' }])]), [
    'extra.yaml: Node/n4: status.addresses: 198.18.0.11 is also the address of Node n1, so tunnels to one would reach the other',
  ]);
});

test('an enrolled pod with IPv6 addresses is named: its agent will refuse to capture it', () => {
  const dual = { ...(pod('shop', 'dual', { sa: 'web', node: 'n1', ip: '198.18.1.40' }) as Record<string, unknown>), status: { podIP: '198.18.1.40', podIPs: [{ ip: '198.18.1.40' }, { ip: 'fd00::30' }] } };
  const outside = { ...(pod('legacy', 'dual', { node: 'n1', ip: '198.18.1.41' }) as Record<string, unknown>), status: { podIP: '198.18.1.41', podIPs: [{ ip: 'fd00::31' }] } };
  const got = check([dual, outside]);
  assert.deepEqual(got, [
    'extra.yaml: Pod/shop/dual: status.podIPs: has IPv6 address(es) fd00::30; weft captures IPv4 only, so the agent refuses to capture this pod (label it weft.dev/mesh: disabled to keep it out of the mesh knowingly)',
  ], 'only the enrolled one: a pod outside the mesh is not captured anyway');
});

test('a named targetPort is checked against the selected pods\' container ports', () => {
  const named = (name: string, ip: string, ports: readonly object[]) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', labels: { app: 'named' } },
    spec: { nodeName: 'n1', containers: [{ name: 'app', image: 'x', ports }] }, status: { podIP: ip },
  });
  const got = check([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'named', namespace: 'shop' }, spec: { clusterIP: '198.19.0.30', selector: { app: 'named' }, ports: [{ port: 80, targetPort: 'web' }, { port: 81, targetPort: 'admin' }] } },
    named('has-both', '198.18.5.1', [{ name: 'web', containerPort: 8080 }, { name: 'admin', containerPort: 9090 }]),
    named('web-only', '198.18.5.2', [{ name: 'web', containerPort: 8081 }]),
    named('numbers-only', '198.18.5.3', [{ containerPort: 8080 }]),
  ]);
  assert.deepEqual(got, [
    'extra.yaml: Service/shop/named: spec.ports[0].targetPort: names container port "web", which 1 of the 3 selected Pods do not declare (numbers-only), so they get no traffic on port 80',
    'extra.yaml: Service/shop/named: spec.ports[1].targetPort: names container port "admin", which 2 of the 3 selected Pods do not declare (numbers-only, web-only), so they get no traffic on port 81',
  ]);
});

test('an AuthorizationPolicy HTTP rule on a port that is not HTTP is a problem naming the rule and the port; on HTTP ports it is not', () => {
  const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'l7', labels: { 'weft.dev/mesh': 'enabled' } } };
  const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'l7' }, spec: { clusterIP: '198.19.7.1', selector: { app: 'api' }, ports: [
    { name: 'http', port: 80, targetPort: 8080 }, { name: 'tcp-db', port: 5432, targetPort: 5432 },
  ] } };
  const docs = [ns, svc, pod('l7', 'api-1', { node: 'n1', ip: '198.18.7.10', labels: { app: 'api' } })];
  const got = check([...docs,
    policy('l7', 'on-http', { selector: { matchLabels: { app: 'api' } }, rules: [{ to: [{ operation: { ports: [8080], methods: ['GET'] } }] }] }),
    policy('l7', 'on-tcp', { selector: { matchLabels: { app: 'api' } }, action: 'DENY', rules: [{ to: [{ operation: { ports: [5432], paths: ['/x'] } }] }] }),
    policy('l7', 'every-port', { selector: { matchLabels: { app: 'api' } }, rules: [{ from: [{ source: { namespaces: ['l7'] } }] }, { when: [{ key: 'request.headers[x-a]', values: ['1'] }] }] }),
    policy('l7', 'undeclared', { selector: { matchLabels: { app: 'api' } }, rules: [{ to: [{ operation: { ports: [9999], methods: ['GET'] } }] }] }),
  ]);
  assert.equal(got.length, 3, got.join('\n'));
  assert.match(got[1] ?? '', /AuthorizationPolicy\/l7\/on-tcp: spec\.rules\[0\]: .*port 5432 of l7\/api-1 \(its Service port is declared tcp\).*deny whole connections/);
  assert.match(got[0] ?? '', /AuthorizationPolicy\/l7\/every-port: spec\.rules\[1\]: .*port 5432 of l7\/api-1.*never allow/);
  assert.match(got[2] ?? '', /AuthorizationPolicy\/l7\/undeclared: spec\.rules\[0\]: .*port 9999 of l7\/api-1 \(no Service declares it\)/);
});
