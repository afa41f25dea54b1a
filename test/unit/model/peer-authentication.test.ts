// PeerAuthentication: parsing and its refusals, the most-specific-wins decision (table),
// MeshState's per-workload mode, node slices (shipped only where they apply, and decoded by
// the agent into the same decision), and what `weft vet` says across objects.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseManifests } from '../../../src/model/manifests.ts';
import { mtlsModeFor, parsePeerAuthentication } from '../../../src/model/peer-authentication.ts';
import { crossCheck } from '../../../src/model/crosscheck.ts';
import { nodeResources, nodeSlice } from '../../../src/model/node-slice.ts';
import { decodeNodeResources } from '../../../src/model/resource-codec.ts';
import { meshStateFromContent } from '../../../src/model/state.ts';
import type { PeerAuthenticationObject, Workload } from '../../../src/model/types.ts';
import { BASE_DOCS, parsed, state, yamlOf } from './fixture.ts';

function pa(namespace: string, name: string, spec: object): object {
  return { apiVersion: 'weft.dev/v1alpha1', kind: 'PeerAuthentication', metadata: { name, namespace }, spec };
}

test('parse: selector and mode; UNSET and no mtls inherit; refusals name the field', () => {
  const ok = parsePeerAuthentication(pa('shop', 'db', { selector: { matchLabels: { app: 'db' } }, mtls: { mode: 'STRICT' } }) as Record<string, unknown>);
  assert.deepEqual(ok, { issues: [], policy: { name: 'db', namespace: 'shop', selector: { app: 'db' }, mode: 'STRICT' } });
  assert.equal(parsePeerAuthentication(pa('shop', 'u', { mtls: { mode: 'UNSET' } }) as Record<string, unknown>).policy?.mode, undefined);
  assert.deepEqual(parsePeerAuthentication(pa('shop', 'none', {}) as Record<string, unknown>).policy, { name: 'none', namespace: 'shop', selector: {} });

  const bad: [object, string, RegExp][] = [
    [{ mtls: { mode: 'STRICTT' } }, 'spec.mtls.mode', /must be one of STRICT, PERMISSIVE, UNSET|STRICTT/],
    [{ mtls: { mode: 'DISABLE' } }, 'spec.mtls.mode', /DISABLE is not supported/],
    [{ portLevelMtls: { 8080: { mode: 'PERMISSIVE' } } }, 'spec.portLevelMtls', /per-port modes are not supported/],
    [{ mtls: { mode: 'STRICT', extra: 1 } }, 'spec.mtls.extra', /not a known field/],
    [{ selector: { matchLabels: { app: 'not a label value' } } }, 'spec.selector.matchLabels.app', /label value/],
  ];
  for (const [spec, field, message] of bad) {
    const r = parsePeerAuthentication(pa('shop', 'x', spec) as Record<string, unknown>);
    assert.equal(r.policy, undefined, JSON.stringify(spec));
    assert.equal(r.issues[0]?.field, field, JSON.stringify(r.issues));
    assert.match(r.issues[0]?.message ?? '', message);
  }
});

test('parseManifests takes the kind (weft.dev/v1alpha1 only); a bad one is a problem naming file, object and field', () => {
  const r = parseManifests([{ path: 'pa.yaml', text: yamlOf([pa('shop', 'good', { mtls: { mode: 'PERMISSIVE' } }), pa('shop', 'bad', { mtls: { mode: 'strict' } }),
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'istio', namespace: 'shop' }, spec: {} }]) }]);
  assert.deepEqual(r.peerAuthentications.map((p) => p.name), ['good']);
  assert.deepEqual(r.problems.map((p) => [p.object, p.field]), [['PeerAuthentication/shop/bad', 'spec.mtls.mode'], ['PeerAuthentication/shop/istio', 'apiVersion']]);
});

const w = (namespace: string, labels: Record<string, string> = {}): Workload => ({
  key: `${namespace}/w`, name: 'w', namespace, serviceAccount: 'default', node: 'n1', ip: '198.18.1.10', labels, enrolled: true,
  identity: `spiffe://cluster.local/ns/${namespace}/sa/default`,
});
const obj = (namespace: string, name: string, mode: 'STRICT' | 'PERMISSIVE' | undefined, selector: Record<string, string> = {}): PeerAuthenticationObject => ({
  name, namespace, selector, ...(mode === undefined ? {} : { mode }),
});

test('decision: the most specific scope with a mode wins; UNSET inherits; first by name within a scope; PERMISSIVE by default', () => {
  const mesh = obj('weft-system', 'mesh', 'STRICT');
  const shop = obj('shop', 'ns', 'PERMISSIVE');
  const web = obj('shop', 'web', 'STRICT', { app: 'web' });
  const cases: [string, PeerAuthenticationObject[], Workload, string, string | undefined][] = [
    ['nothing: the default', [], w('shop'), 'PERMISSIVE', undefined],
    ['mesh-wide', [mesh], w('shop'), 'STRICT', 'weft-system/mesh'],
    ['namespace over mesh', [mesh, shop], w('shop'), 'PERMISSIVE', 'shop/ns'],
    ['workload over namespace', [mesh, shop, web], w('shop', { app: 'web' }), 'STRICT', 'shop/web'],
    ['a workload policy that does not select it', [shop, web], w('shop', { app: 'db' }), 'PERMISSIVE', 'shop/ns'],
    ['another namespace\'s policy does not apply', [obj('legacy', 'ns', 'STRICT')], w('shop'), 'PERMISSIVE', undefined],
    ['UNSET at workload scope inherits the namespace', [obj('shop', 'ns', 'STRICT'), obj('shop', 'web', undefined, { app: 'web' })], w('shop', { app: 'web' }), 'STRICT', 'shop/ns'],
    ['UNSET at namespace scope inherits the mesh', [mesh, obj('shop', 'ns', undefined)], w('shop'), 'STRICT', 'weft-system/mesh'],
    ['first by name within one scope', [obj('shop', 'b', 'PERMISSIVE'), obj('shop', 'a', 'STRICT')], w('shop'), 'STRICT', 'shop/a'],
    ['in the root namespace, a selector is workload scope there only', [obj('weft-system', 'sel', 'STRICT', { app: 'web' })], w('shop', { app: 'web' }), 'PERMISSIVE', undefined],
    ['a workload of the root namespace: its namespace-wide policy is the mesh one', [mesh], w('weft-system'), 'STRICT', 'weft-system/mesh'],
  ];
  for (const [what, policies, workload, mode, policy] of cases) {
    const d = mtlsModeFor(policies, workload);
    assert.deepEqual([d.mode, d.policy], [mode, policy], what);
  }
});

const PAS = [
  pa('weft-system', 'mesh', { mtls: { mode: 'PERMISSIVE' } }),
  pa('shop', 'db-strict', { selector: { matchLabels: { app: 'db' } }, mtls: { mode: 'STRICT' } }),
  pa('legacy', 'legacy-strict', { mtls: { mode: 'STRICT' } }),
];

test('MeshState: each workload\'s mode', () => {
  const s = state(PAS);
  const mode = (key: string): string | undefined => {
    const wl = s.workload(key);
    return wl === undefined ? undefined : `${s.mtlsModeFor(wl).mode} ${s.mtlsModeFor(wl).policy ?? '-'}`;
  };
  assert.equal(mode('shop/db-1'), 'STRICT shop/db-strict');
  assert.equal(mode('shop/web-1'), 'PERMISSIVE weft-system/mesh');
  assert.equal(mode('legacy/new-1'), 'STRICT legacy/legacy-strict');
  assert.equal(s.peerAuthentications.length, 3);
});

test('node slices carry the PeerAuthentications of their enrolled workloads; the agent decodes the same decision', () => {
  const s = state(PAS);
  assert.deepEqual(nodeSlice(s, 'n2').peerAuthentications.map((p) => `${p.namespace}/${p.name}`), ['shop/db-strict', 'weft-system/mesh']);
  assert.deepEqual(nodeSlice(s, 'n1').peerAuthentications.map((p) => `${p.namespace}/${p.name}`), ['weft-system/mesh'], 'legacy/old-1 on n1 is not enrolled, shop/db-1 is not on n1');
  assert.deepEqual(nodeSlice(s, 'n3').peerAuthentications.map((p) => `${p.namespace}/${p.name}`), ['legacy/legacy-strict', 'weft-system/mesh']);
  const resources = nodeResources(s, 'n2');
  assert.ok(resources.has('peerauthentication/shop/db-strict'));
  const decoded = decodeNodeResources(resources.values());
  assert.deepEqual(decoded.problems, []);
  const agent = meshStateFromContent(decoded.content);
  const db = agent.workload('shop/db-1');
  assert.ok(db);
  assert.deepEqual(agent.mtlsModeFor(db), s.mtlsModeFor(s.workload('shop/db-1') as Workload));
});

test('an agent refuses a PeerAuthentication resource with a bad mode, naming it', () => {
  const resources = [...nodeResources(state(PAS), 'n2').values()].map((r) => (r.type === 'peerauthentication' && r.name === 'shop/db-strict'
    ? { ...r, body: { ...(r.body as object), mode: 'OFF' } } : r));
  const decoded = decodeNodeResources(resources);
  assert.equal(decoded.problems.length, 1);
  assert.equal(decoded.problems[0]?.key, 'peerauthentication/shop/db-strict');
  assert.match(decoded.problems[0]?.message ?? '', /body\.mode/);
  assert.deepEqual(decoded.content.peerAuthentications?.map((p) => p.name), ['mesh']);
});

test('vet across objects: a selector matching nothing, and conflicting policies at one scope', () => {
  const objects = parsed([
    ...PAS,
    pa('weft-system', 'mesh-2', { mtls: { mode: 'STRICT' } }),
    pa('shop', 'ns-a', { mtls: { mode: 'STRICT' } }),
    pa('shop', 'ns-b', { mtls: { mode: 'PERMISSIVE' } }),
    pa('shop', 'ghost', { selector: { matchLabels: { app: 'ghost' } }, mtls: { mode: 'STRICT' } }),
    pa('shop', 'z-db', { selector: { matchLabels: { app: 'db' } }, mtls: { mode: 'PERMISSIVE' } }),
  ]);
  const got = crossCheck(objects, { trustDomain: 'cluster.local', origins: objects.origins })
    .filter((p) => p.object?.startsWith('PeerAuthentication/') === true).map((p) => `${p.object}: ${p.field}: ${p.message}`);
  assert.deepEqual(got, [
    'PeerAuthentication/shop/ns-b: spec: conflicts with PeerAuthentication shop/ns-a: both are namespace-wide in shop (no selector); only shop/ns-a (first by name, mode STRICT) is used, this one (mode PERMISSIVE) is ignored',
    'PeerAuthentication/weft-system/mesh-2: spec: conflicts with PeerAuthentication weft-system/mesh: both are mesh-wide (root namespace, no selector); only weft-system/mesh (first by name, mode PERMISSIVE) is used, this one (mode STRICT) is ignored',
    'PeerAuthentication/shop/ghost: spec.selector.matchLabels: selects no Pod in namespace shop (app=ghost), so it applies to nothing',
    'PeerAuthentication/shop/z-db: spec.selector.matchLabels: conflicts with PeerAuthentication shop/db-strict: both select Pod shop/db-1; only shop/db-strict (first by name, mode STRICT) is used for it, this one (mode PERMISSIVE) is ignored',
  ]);
});

test('a clean set of PeerAuthentications gives vet nothing to say', () => {
  const objects = parseManifests([{ path: 'x.yaml', text: yamlOf([...BASE_DOCS, ...PAS]) }], new Set(), { kubernetesSchema: true });
  assert.deepEqual(objects.problems, []);
  assert.deepEqual(crossCheck(objects, { trustDomain: 'cluster.local', origins: objects.origins }).filter((p) => p.object?.startsWith('PeerAuthentication/') === true), []);
});
