// AuthorizationPolicy's HTTP attributes, Istio's semantics: methods, paths (normalised, query
// dropped), hosts (no port, any case), `when` on headers and L4 keys; gRPC methods as paths;
// and checked without the request (a connection), HTTP rules fail closed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorize, needsRequestCheck, type AuthorizationRequest } from '../../../src/model/authorize.ts';
import { normalizePath, normalizeHost, type HttpAttributes } from '../../../src/model/l7-authorization.ts';
import { nodeResources, type NodeResource } from '../../../src/model/node-slice.ts';
import { decodeNodeResources } from '../../../src/model/resource-codec.ts';
import { meshStateFromContent } from '../../../src/model/state.ts';
import { pod, policy, state } from './fixture.ts';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

const s = state([
  pod('shop', 'api', { node: 'n1', ip: '198.18.1.50', labels: { app: 'api' } }),
  pod('shop', 'grpc', { node: 'n1', ip: '198.18.1.51', labels: { app: 'grpc' } }),
  pod('shop', 'plain', { node: 'n1', ip: '198.18.1.52', labels: { app: 'plain' } }),
  policy('shop', 'api-public', {
    selector: { matchLabels: { app: 'api' } },
    rules: [
      { to: [{ operation: { methods: ['GET', 'HEAD'], paths: ['/public', '/public/*'] } }] },
      { from: [{ source: { principals: [WEB] } }], to: [{ operation: { methods: ['POST'], paths: ['/orders'], hosts: ['api.shop.svc.cluster.local', '*.example.com'] } }] },
      { to: [{ operation: { paths: ['*.css'], notPaths: ['/secret/*'] } }] },
      { to: [{ operation: { ports: [9000] } }], when: [{ key: 'request.headers[X-Canary]', values: ['yes', 'prefix-*'] }] },
      { when: [{ key: 'source.ip', values: ['198.18.9.0/24'] }, { key: 'request.headers[x-token]', notValues: ['bad'] }] },
    ],
  }),
  policy('shop', 'api-deny-admin', {
    selector: { matchLabels: { app: 'api' } }, action: 'DENY',
    rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }],
  }),
  policy('shop', 'grpc-calls', {
    selector: { matchLabels: { app: 'grpc' } },
    rules: [{ to: [{ operation: { paths: ['/shop.Catalog/List', '/shop.Catalog/Get'] } }] }],
  }),
  policy('shop', 'grpc-deny-admin', {
    selector: { matchLabels: { app: 'grpc' } }, action: 'DENY',
    rules: [{ to: [{ operation: { methods: ['POST'], paths: ['/shop.Admin/*'] } }] }],
  }),
  policy('shop', 'plain-l4', { selector: { matchLabels: { app: 'plain' } }, rules: [{ to: [{ operation: { ports: [80] } }] }] }),
]);

const http = (method: string, path: string, headers: Record<string, string> = {}, host = 'api.shop.svc.cluster.local:80'): HttpAttributes => ({ method, path, host, headers });

const CASES: [string, string, HttpAttributes | undefined, { principal?: string; ip?: string; port?: number }, boolean, string | undefined][] = [
  // what, workload, request (undefined: a connection), source, allowed, deciding policy
  ['GET /public allowed', 'shop/api', http('GET', '/public'), {}, true, 'shop/api-public'],
  ['GET /public/x?y=1: query dropped, prefix', 'shop/api', http('GET', '/public/x?y=1'), {}, true, 'shop/api-public'],
  ['POST /public: method not listed', 'shop/api', http('POST', '/public'), {}, false, undefined],
  ['POST /admin denied', 'shop/api', http('POST', '/admin'), { principal: WEB }, false, 'shop/api-deny-admin'],
  ['GET /public/../admin: normalised, denied', 'shop/api', http('GET', '/public/../admin'), {}, false, 'shop/api-deny-admin'],
  ['GET /%61dmin: unreserved decoded, denied', 'shop/api', http('GET', '/%61dmin'), {}, false, 'shop/api-deny-admin'],
  ['POST /orders from web, host with port and case', 'shop/api', http('POST', '/orders', {}, 'API.shop.svc.cluster.local:80'), { principal: WEB }, true, 'shop/api-public'],
  ['POST /orders from web, wildcard host', 'shop/api', http('POST', '/orders', {}, 'eu.example.com'), { principal: WEB }, true, 'shop/api-public'],
  ['POST /orders from web, other host', 'shop/api', http('POST', '/orders', {}, 'evil.test'), { principal: WEB }, false, undefined],
  ['POST /orders from plaintext', 'shop/api', http('POST', '/orders'), {}, false, undefined],
  ['suffix path', 'shop/api', http('GET', '/static/site.css'), {}, true, 'shop/api-public'],
  ['notPaths carve out', 'shop/api', http('GET', '/secret/site.css'), {}, false, undefined],
  ['header condition (name any case), exact', 'shop/api', http('PUT', '/x', { 'x-canary': 'yes' }), { port: 9000 }, true, 'shop/api-public'],
  ['header condition, prefix', 'shop/api', http('PUT', '/x', { 'x-canary': 'prefix-7' }), { port: 9000 }, true, 'shop/api-public'],
  ['header condition, other port', 'shop/api', http('PUT', '/x', { 'x-canary': 'yes' }), { port: 8000 }, false, undefined],
  ['header absent', 'shop/api', http('PUT', '/x'), { port: 9000 }, false, undefined],
  ['source.ip and notValues: absent header passes', 'shop/api', http('PUT', '/x'), { ip: '198.18.9.7' }, true, 'shop/api-public'],
  ['notValues: the bad token fails', 'shop/api', http('PUT', '/x', { 'x-token': 'bad' }), { ip: '198.18.9.7' }, false, undefined],
  ['connection: HTTP rules never allow', 'shop/api', undefined, {}, false, 'shop/api-deny-admin'],
  ['gRPC List allowed', 'shop/grpc', http('POST', '/shop.Catalog/List', { 'content-type': 'application/grpc' }), {}, true, 'shop/grpc-calls'],
  ['gRPC Admin denied', 'shop/grpc', http('POST', '/shop.Admin/Drop', { 'content-type': 'application/grpc' }), {}, false, 'shop/grpc-deny-admin'],
  ['gRPC unlisted method', 'shop/grpc', http('POST', '/shop.Catalog/Delete'), {}, false, undefined],
  ['L4-only policy ignores the request', 'shop/plain', http('DELETE', '/anything'), { port: 80 }, true, 'shop/plain-l4'],
  ['L4-only policy on a connection', 'shop/plain', undefined, { port: 80 }, true, 'shop/plain-l4'],
];

for (const [what, to, req, from, allowed, decidedBy] of CASES) {
  test(`L7 authorize: ${what}`, () => {
    const dest = s.workload(to);
    assert.ok(dest, to);
    const r: AuthorizationRequest = {
      sourcePrincipal: from.principal, sourceNamespace: from.principal === undefined ? undefined : 'shop', sourceIp: from.ip ?? '198.18.1.10',
      destinationWorkload: dest, destinationPort: from.port ?? 80, http: req,
    };
    const d = authorize(s, r);
    assert.deepEqual([d.allowed, d.policy], [allowed, decidedBy], d.reason);
  });
}

test('a connection admitted for per-request checks: HTTP rules neither refuse nor admit it alone; L4 parts still do', () => {
  const of = (k: string, from: { principal?: string; port?: number; ip?: string }) => {
    const dest = s.workload(k);
    assert.ok(dest);
    return authorize(s, {
      sourcePrincipal: from.principal, sourceNamespace: from.principal === undefined ? undefined : 'shop', sourceIp: from.ip ?? '198.18.1.10',
      destinationWorkload: dest, destinationPort: from.port ?? 80, http: 'per-request',
    });
  };
  // api: the DENY /admin* rule does not refuse the connection; the ALLOW GET /public rule may admit it.
  assert.deepEqual([of('shop/api', {}).allowed, of('shop/api', {}).policy], [true, 'shop/api-public']);
  assert.equal(of('shop/grpc', {}).allowed, true);
  // L4 parts still decide: plain-l4 allows port 80 only.
  assert.deepEqual([of('shop/plain', { port: 80 }).allowed, of('shop/plain', { port: 81 }).allowed], [true, false]);
});

test('needsRequestCheck: only where an applying policy has HTTP attributes', () => {
  const of = (k: string): boolean => {
    const w = s.workload(k);
    assert.ok(w);
    return needsRequestCheck(s.policiesFor(w));
  };
  assert.deepEqual([of('shop/api'), of('shop/grpc'), of('shop/plain')], [true, true, false]);
});

test('normalizePath and normalizeHost', () => {
  const paths: [string, string][] = [
    ['/a/b', '/a/b'], ['/a/./b', '/a/b'], ['/a/../b', '/b'], ['/../../b', '/b'], ['/a/b/..', '/a/'], ['/a?x=/..', '/a'],
    ['/a#frag', '/a'], ['/%7Euser', '/~user'], ['/a%2Fb', '/a%2Fb'], ['', '/'], ['/a//b', '/a//b'],
  ];
  for (const [p, want] of paths) assert.equal(normalizePath(p), want, p);
  assert.deepEqual([normalizeHost('A.b:8080'), normalizeHost('a.b'), normalizeHost('[::1]:80'), normalizeHost(undefined)], ['a.b', 'a.b', '[::1]:80', undefined]);
});

test('HTTP rules reach the destination agent intact: its state decides every case the same', () => {
  const wire = JSON.parse(JSON.stringify([...nodeResources(s, 'n1').values()])) as NodeResource[];
  const decoded = decodeNodeResources(wire);
  assert.deepEqual(decoded.problems, []);
  const agent = meshStateFromContent(decoded.content);
  for (const [what, to, req, from, allowed] of CASES) {
    const dest = agent.workload(to);
    assert.ok(dest, to);
    const d = authorize(agent, {
      sourcePrincipal: from.principal, sourceNamespace: from.principal === undefined ? undefined : 'shop', sourceIp: from.ip ?? '198.18.1.10',
      destinationWorkload: dest, destinationPort: from.port ?? 80, http: req,
    });
    assert.equal(d.allowed, allowed, `${what} at the agent: ${d.reason}`);
  }
});
