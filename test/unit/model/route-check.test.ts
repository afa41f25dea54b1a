// Route status per Service parent, and the route problems `weft vet` reports.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { routeFindings, routeParentStatuses } from '../../../src/model/route-check.ts';
import { meshWith, parent, route, SERVICE_DOCS } from './route-fixture.ts';
import { parseManifests } from '../../../src/model/manifests.ts';
import { yamlOf } from './fixture.ts';
import { buildMeshState } from '../../../src/model/state.ts';

const be = (name: string, port: number, extra: object = {}) => ({ name, port, ...extra });

test('vet: parent not a Service, unknown parent, no such port, unknown backends, weights summing to 0, an opaque TCP port', () => {
  const tcp = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db', namespace: 'mesh' }, spec: { clusterIP: '198.19.1.9', ports: [{ name: 'tcp-pg', port: 5432 }] } };
  const parsed = parseManifests([{ path: 'r.yaml', text: yamlOf([...SERVICE_DOCS, tcp, route('HTTPRoute', 'bad', {
    parentRefs: [{ name: 'gw' }, parent('ghost'), parent('echo', { port: 9999 }), parent('db')],
    hostnames: ['echo.example.com'],
    rules: [
      { backendRefs: [be('nope', 80), be('echo-v1', 1234), { group: 'example.com', kind: 'Bucket', name: 'b' }] },
      { matches: [{ path: { value: '/zero' } }], backendRefs: [be('echo-v1', 80, { weight: 0 }), be('echo-v2', 80, { weight: 0 })] },
      { matches: [{ path: { value: '/m' } }], filters: [{ type: 'RequestMirror', requestMirror: { backendRef: be('missing', 80) } }], backendRefs: [be('echo-v1', 80)] },
    ],
  })]) }]);
  assert.deepEqual(parsed.problems, []);
  const found = routeFindings(buildMeshState(parsed)).map((f) => `${f.field}: ${f.message}`);
  assert.deepEqual(found, [
    'spec.parentRefs[0]: is a gateway.networking.k8s.io/Gateway; weft serves routes whose parent is a Service (GAMMA, group "" kind Service), so it ignores this parent',
    'spec.parentRefs[1]: names Service mesh/ghost, which does not exist',
    'spec.parentRefs[2]: Service mesh/echo port 9999 matches no port of the Service (ports: 80 http, 7070 grpc)',
    'spec.parentRefs[3]: attaches to mesh/db port 5432, declared opaque TCP (name tcp-pg); weft does not parse its traffic as HTTP, so the route never applies there',
    'spec.hostnames: is ignored for Service parents (GEP-1294): the route applies to traffic sent to the Service whatever its Host; match a Host header instead',
    'spec.rules[0].backendRefs[0]: Service mesh/nope does not exist: requests sent there get 500',
    'spec.rules[0].backendRefs[1]: Service mesh/echo-v1 has no port 1234 (ports: 80, 7070, 8080): requests sent there get 500',
    'spec.rules[0].backendRefs[2]: example.com/Bucket b is not a Service; weft sends only to Services: requests sent there get 500',
    'spec.rules[2].filters[0].requestMirror.backendRef: Service mesh/missing does not exist: requests sent there get 500',
    'spec.rules[1].backendRefs: weights sum to 0: every request this rule matches gets 500',
  ]);
});

test('vet: a match identical to one with precedence is never used (overlapping rules), across routes of one group only', () => {
  const s = meshWith([
    route('HTTPRoute', 'a', { parentRefs: [parent('echo')], rules: [{ matches: [{ path: { value: '/x/' }, headers: [{ name: 'B', value: '1' }, { name: 'a', value: '2' }] }], backendRefs: [be('echo-v1', 80)] }] }),
    route('HTTPRoute', 'b', {
      parentRefs: [parent('echo')],
      rules: [
        { matches: [{ path: { value: '/x' }, headers: [{ name: 'a', value: '2' }, { name: 'b', value: '1' }] }], backendRefs: [be('echo-v2', 80)] },
        { matches: [{ path: { value: '/x' } }], backendRefs: [be('echo-v2', 80)] },
      ],
    }),
    route('HTTPRoute', 'c', { parentRefs: [parent('echo', { namespace: 'mesh' })], rules: [{ matches: [{ path: { value: '/x' } }], backendRefs: [be('echo-v2', 80, { namespace: 'mesh' })] }] }, 'consumer'),
  ]);
  const found = routeFindings(s).map((f) => `${f.route} ${f.field}: ${f.message}`);
  assert.deepEqual(found, [
    'HTTPRoute/mesh/b spec.rules[0].matches[0]: is the same match as HTTPRoute/mesh/a spec.rules[0].matches[0], which takes precedence on mesh/echo:80; this one is never used',
  ], 'once (not again for port 7070); /x without headers differs; the consumer route c is in another group');
});

test('status: Accepted and ResolvedRefs per Service parent; NoMatchingParent, BackendNotFound, InvalidKind, Conflicted', () => {
  const s = meshWith([
    route('HTTPRoute', 'ok', { parentRefs: [parent('echo', { port: 80 }), { name: 'gw' }], rules: [{ backendRefs: [be('echo-v1', 80)] }] }),
    route('HTTPRoute', 'no-port', { parentRefs: [parent('echo', { sectionName: 'nope' }), parent('ghost')], rules: [{ backendRefs: [be('nope', 80), { kind: 'Bucket', group: 'x.io', name: 'b' }] }] }),
    route('GRPCRoute', 'grpc', { parentRefs: [parent('echo', { port: 7070 })], rules: [{ backendRefs: [be('echo-v1', 7070)] }] }),
    route('HTTPRoute', 'loses', { parentRefs: [parent('echo', { port: 7070 })], rules: [{ backendRefs: [be('echo-v1', 7070)] }] }),
  ]);
  const of = (name: string) => {
    const r = s.routes.find((x) => x.name === name) ?? assert.fail(name);
    return routeParentStatuses(r, s).map((p) => [p.parentRef.name, p.controllerName, ...p.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`)]);
  };
  assert.deepEqual(of('ok'), [['echo', 'weft.dev/mesh', 'Accepted=True/Accepted', 'ResolvedRefs=True/ResolvedRefs']], 'the Gateway parent is not ours to report');
  assert.deepEqual(of('no-port'), [
    ['echo', 'weft.dev/mesh', 'Accepted=False/NoMatchingParent', 'ResolvedRefs=False/BackendNotFound'],
    ['ghost', 'weft.dev/mesh', 'Accepted=False/NoMatchingParent', 'ResolvedRefs=False/BackendNotFound'],
  ]);
  assert.deepEqual(of('grpc'), [['echo', 'weft.dev/mesh', 'Accepted=True/Accepted', 'ResolvedRefs=True/ResolvedRefs']]);
  assert.deepEqual(of('loses'), [['echo', 'weft.dev/mesh', 'Accepted=False/Conflicted', 'ResolvedRefs=True/ResolvedRefs']]);
  const msg = routeParentStatuses(s.routes.find((x) => x.name === 'no-port') ?? assert.fail(), s)[0]?.conditions[1]?.message;
  assert.equal(msg, 'Service mesh/nope does not exist; x.io/Bucket b is not a Service; weft sends only to Services');
});
