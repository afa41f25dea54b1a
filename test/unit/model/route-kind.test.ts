// HTTPRoute and GRPCRoute validation: every refused shape names its field, one bad route
// rejects only itself, and accepted routes come out with the CRD defaults filled in.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseManifests } from '../../../src/model/manifests.ts';
import { durationMs, parseRoute } from '../../../src/model/route-kind.ts';
import { parent, route } from './route-fixture.ts';
import { yamlOf } from './fixture.ts';

const spec = (rules: object[], parentRefs: object[] = [parent('echo')]) => ({ parentRefs, rules });

test('defaults: weight 1, PathPrefix /, 302, the route namespace on refs, lowercase header names, Gateway as parent kind', () => {
  const r = parseRoute('HTTPRoute', route('HTTPRoute', 'd', {
    parentRefs: [{ name: 'gw' }, parent('echo', { port: 80 })],
    rules: [
      { backendRefs: [{ name: 'echo-v1', port: 80 }] },
      { matches: [{ headers: [{ name: 'X-A', value: 'b' }] }], filters: [{ type: 'RequestRedirect', requestRedirect: {} }] },
    ],
  }) as Record<string, unknown>);
  assert.deepEqual(r.issues, []);
  const h = r.route;
  assert.ok(h?.kind === 'HTTPRoute');
  assert.deepEqual(h.parentRefs, [
    { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'mesh', name: 'gw', port: undefined, sectionName: undefined },
    { group: '', kind: 'Service', namespace: 'mesh', name: 'echo', port: 80, sectionName: undefined },
  ]);
  assert.deepEqual(h.rules[0]?.matches, [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [], method: undefined }]);
  assert.deepEqual(h.rules[0]?.backendRefs, [{ group: '', kind: 'Service', namespace: 'mesh', name: 'echo-v1', port: 80, weight: 1, filters: [] }]);
  assert.deepEqual(h.rules[1]?.matches[0]?.headers, [{ name: 'x-a', type: 'Exact', value: 'b' }]);
  assert.deepEqual(h.rules[1]?.filters, [{ type: 'RequestRedirect', requestRedirect: { scheme: undefined, hostname: undefined, path: undefined, port: undefined, statusCode: 302 } }]);
  const empty = parseRoute('HTTPRoute', route('HTTPRoute', 'e', { parentRefs: [parent('echo')] }) as Record<string, unknown>).route;
  assert.equal(empty?.rules.length, 1, 'no rules: the CRD default, one rule matching everything');
});

test('GEP-1731 retry: given fields kept (codes sorted, deduplicated), unset ones defaulted, absent stays absent', () => {
  const r = parseRoute('HTTPRoute', route('HTTPRoute', 'r', spec([
    { retry: { codes: [503, 500, 503], attempts: 3, backoff: '100ms' } },
    { retry: {} },
    { retry: { codes: [] , attempts: 0 } },
    {},
  ])) as Record<string, unknown>);
  assert.deepEqual(r.issues, []);
  const rules = r.route?.kind === 'HTTPRoute' ? r.route.rules : assert.fail();
  assert.deepEqual(rules.map((x) => x.retry), [
    { attempts: 3, codes: [500, 503], backoffMs: 100 },
    { attempts: 2, codes: [502, 503, 504], backoffMs: 25 },
    { attempts: 0, codes: [], backoffMs: 25 },
    undefined,
  ]);
});

test('GRPCRoute retry from Linkerd\'s annotations: status names (kebab or upper case) for every rule, limit default 1', () => {
  const annotated = (a: Record<string, string>) => parseRoute('GRPCRoute', route('GRPCRoute', 'g', spec([{}, {}]), 'mesh', { annotations: a }) as Record<string, unknown>);
  const r = annotated({ 'retry.linkerd.io/grpc': 'unavailable, DEADLINE_EXCEEDED,unavailable', 'retry.linkerd.io/limit': '3' });
  assert.deepEqual(r.issues, []);
  const rules = r.route?.kind === 'GRPCRoute' ? r.route.rules : assert.fail();
  assert.deepEqual(rules.map((x) => x.retry), [0, 1].map(() => ({ attempts: 3, codes: [], backoffMs: 25, grpcCodes: [4, 14] })));
  const dflt = annotated({ 'retry.linkerd.io/grpc': 'resource-exhausted' });
  assert.deepEqual(dflt.route?.kind === 'GRPCRoute' ? dflt.route.rules[0]?.retry : undefined, { attempts: 1, codes: [], backoffMs: 25, grpcCodes: [8] });
  const none = annotated({});
  assert.equal(none.route?.kind === 'GRPCRoute' ? none.route.rules[0]?.retry : 'x', undefined);
  const refused: [Record<string, string>, string, RegExp][] = [
    [{ 'retry.linkerd.io/grpc': 'unavailable,flaky' }, 'retry.linkerd.io/grpc', /"flaky" is not a gRPC status/],
    [{ 'retry.linkerd.io/grpc': 'ok' }, 'retry.linkerd.io/grpc', /not a gRPC status to retry/],
    [{ 'retry.linkerd.io/grpc': ' , ' }, 'retry.linkerd.io/grpc', /names no gRPC status/],
    [{ 'retry.linkerd.io/grpc': 'unavailable', 'retry.linkerd.io/limit': 'many' }, 'retry.linkerd.io/limit', /whole number 0-10/],
    [{ 'retry.linkerd.io/grpc': 'unavailable', 'retry.linkerd.io/limit': '11' }, 'retry.linkerd.io/limit', /whole number 0-10/],
    [{ 'retry.linkerd.io/limit': '2' }, 'retry.linkerd.io/limit', /no effect without retry.linkerd.io\/grpc/],
  ];
  for (const [a, field, message] of refused) {
    const bad = annotated(a);
    assert.equal(bad.route, undefined, JSON.stringify(a));
    const hit = bad.issues.find((i) => i.field === `metadata.annotations.${field}`);
    assert.ok(hit !== undefined, JSON.stringify(bad.issues));
    assert.match(hit.message, message);
  }
});

test('GEP-2257 durations', () => {
  for (const [d, ms] of [['0s', 0], ['10s', 10_000], ['500ms', 500], ['1h30m', 5_400_000], ['1m30s500ms', 90_500], ['01h', 3_600_000]] as const) assert.equal(durationMs(d), ms, d);
});

interface Case {
  readonly name: string;
  readonly kind?: 'HTTPRoute' | 'GRPCRoute';
  readonly spec: object;
  readonly field: string;
  readonly message: RegExp;
}

const CASES: readonly Case[] = [
  { name: 'path not absolute', spec: spec([{ matches: [{ path: { type: 'PathPrefix', value: 'foo' } }] }]), field: 'spec.rules[0].matches[0].path.value', message: /absolute path/ },
  { name: 'path with //', spec: spec([{ matches: [{ path: { type: 'Exact', value: '/a//b' } }] }]), field: 'spec.rules[0].matches[0].path.value', message: /"\/\/"/ },
  { name: 'path with %2f', spec: spec([{ matches: [{ path: { value: '/a%2fb' } }] }]), field: 'spec.rules[0].matches[0].path.value', message: /%2f/ },
  { name: 'unknown path type', spec: spec([{ matches: [{ path: { type: 'Glob', value: '/a' } }] }]), field: 'spec.rules[0].matches[0].path.type', message: /must be one of/ },
  { name: 'bad regex', spec: spec([{ matches: [{ path: { type: 'RegularExpression', value: '/(a' } }] }]), field: 'spec.rules[0].matches[0].path.value', message: /RE2/ },
  { name: 'regex outside RE2 (lookbehind)', spec: spec([{ matches: [{ headers: [{ name: 'a', type: 'RegularExpression', value: '(?<=x)y' }] }] }]), field: 'spec.rules[0].matches[0].headers[0].value', message: /RE2/ },
  { name: 'bad method', spec: spec([{ matches: [{ method: 'get' }] }]), field: 'spec.rules[0].matches[0].method', message: /must be one of GET/ },
  { name: 'header name with a colon', spec: spec([{ matches: [{ headers: [{ name: ':path', value: '/' }] }] }]), field: 'spec.rules[0].matches[0].headers[0].name', message: /header name/ },
  { name: 'redirect with backendRefs', spec: spec([{ filters: [{ type: 'RequestRedirect', requestRedirect: {} }], backendRefs: [{ name: 'echo', port: 80 }] }]), field: 'spec.rules[0].filters', message: /RequestRedirect filter must not be used together with backendRefs/ },
  { name: 'redirect and rewrite together', spec: spec([{ filters: [{ type: 'RequestRedirect', requestRedirect: {} }, { type: 'URLRewrite', urlRewrite: {} }] }]), field: 'spec.rules[0].filters', message: /not both/ },
  { name: 'filter repeated', spec: spec([{ filters: [{ type: 'URLRewrite', urlRewrite: {} }, { type: 'URLRewrite', urlRewrite: {} }] }]), field: 'spec.rules[0].filters[1]', message: /may appear once/ },
  { name: 'filter body missing', spec: spec([{ filters: [{ type: 'RequestHeaderModifier' }] }]), field: 'spec.rules[0].filters[0].requestHeaderModifier', message: /required/ },
  { name: 'filter body of another type', spec: spec([{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: {}, urlRewrite: {} }] }]), field: 'spec.rules[0].filters[0].urlRewrite', message: /must not be set/ },
  { name: 'two actions on one header', spec: spec([{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-A', value: '1' }], remove: ['x-a'] } }] }]), field: 'spec.rules[0].filters[0].requestHeaderModifier.remove[0]', message: /one action per header name/ },
  { name: 'ReplacePrefixMatch without one PathPrefix match', spec: spec([{ matches: [{ path: { type: 'Exact', value: '/a' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }] }]), field: 'spec.rules[0].matches', message: /exactly one match, of type PathPrefix/ },
  { name: 'path modifier value of the wrong type', spec: spec([{ filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replacePrefixMatch: '/b' } } }] }]), field: 'spec.rules[0].filters[0].urlRewrite.path.replaceFullPath', message: /required/ },
  { name: 'redirect status 304', spec: spec([{ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 304 } }] }]), field: 'spec.rules[0].filters[0].requestRedirect.statusCode', message: /301, 302, 303, 307, 308/ },
  { name: 'redirect scheme ftp', spec: spec([{ filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'ftp' } }] }]), field: 'spec.rules[0].filters[0].requestRedirect.scheme', message: /http, https/ },
  { name: 'Service backend without port', spec: spec([{ backendRefs: [{ name: 'echo' }] }]), field: 'spec.rules[0].backendRefs[0].port', message: /required for a Service/ },
  { name: 'weight out of range', spec: spec([{ backendRefs: [{ name: 'echo', port: 80, weight: -1 }] }]), field: 'spec.rules[0].backendRefs[0].weight', message: /0-1000000/ },
  { name: 'mirror with percent and fraction', spec: spec([{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'echo', port: 80 }, percent: 5, fraction: { numerator: 1 } } }] }]), field: 'spec.rules[0].filters[0].requestMirror', message: /not both/ },
  { name: 'backendRequest longer than request', spec: spec([{ timeouts: { request: '1s', backendRequest: '2s' } }]), field: 'spec.rules[0].timeouts.backendRequest', message: /not be longer/ },
  { name: 'duration with a fraction', spec: spec([{ timeouts: { request: '1.5s' } }]), field: 'spec.rules[0].timeouts.request', message: /duration/ },
  { name: 'retry code outside 400-599', spec: spec([{ retry: { codes: [200] } }]), field: 'spec.rules[0].retry.codes[0]', message: /400-599/ },
  { name: 'retry attempts over 10', spec: spec([{ retry: { attempts: 11 } }]), field: 'spec.rules[0].retry.attempts', message: /0-10/ },
  { name: 'retry backoff not a duration', spec: spec([{ retry: { backoff: '1.5s' } }]), field: 'spec.rules[0].retry.backoff', message: /duration/ },
  { name: 'retry with an unknown field', spec: spec([{ retry: { perTryTimeout: '1s' } }]), field: 'spec.rules[0].retry.perTryTimeout', message: /not a known field/ },
  { name: 'GRPCRoute has no retry (GEP-1731 is HTTPRoute only)', kind: 'GRPCRoute', spec: spec([{ retry: { attempts: 1 } }]), field: 'spec.rules[0].retry', message: /not a known field/ },
  { name: 'CORS filter', spec: spec([{ filters: [{ type: 'CORS' }] }]), field: 'spec.rules[0].filters[0].type', message: /must be one of/ },
  { name: 'misspelt field', spec: spec([{ matchs: [] }]), field: 'spec.rules[0].matchs', message: /not a known field/ },
  { name: 'duplicate rule names', spec: spec([{ name: 'a' }, { name: 'a' }]), field: 'spec.rules[1].name', message: /duplicates/ },
  { name: 'same parent twice without sectionName or port', spec: spec([{}], [parent('echo'), parent('echo')]), field: 'spec.parentRefs[1]', message: /duplicates/ },
  { name: 'same parent, one with port', spec: spec([{}], [parent('echo'), parent('echo', { port: 80 })]), field: 'spec.parentRefs[1]', message: /same of sectionName and port/ },
  { name: 'too many rules', spec: spec(Array.from({ length: 17 }, () => ({}))), field: 'spec.rules', message: /at most 16/ },
  { name: 'GRPCRoute method match with neither service nor method', kind: 'GRPCRoute', spec: spec([{ matches: [{ method: { type: 'Exact' } }] }]), field: 'spec.rules[0].matches[0].method', message: /service, method or both/ },
  { name: 'GRPCRoute service with a slash', kind: 'GRPCRoute', spec: spec([{ matches: [{ method: { service: 'a/b' } }] }]), field: 'spec.rules[0].matches[0].method.service', message: /must match/ },
  { name: 'GRPCRoute has no redirect filter', kind: 'GRPCRoute', spec: spec([{ filters: [{ type: 'RequestRedirect', requestRedirect: {} }] }]), field: 'spec.rules[0].filters[0].type', message: /must be one of/ },
  { name: 'GRPCRoute has no timeouts', kind: 'GRPCRoute', spec: spec([{ timeouts: { request: '1s' } }]), field: 'spec.rules[0].timeouts', message: /not a known field/ },
];

for (const c of CASES) {
  test(`refused: ${c.name}`, () => {
    const kind = c.kind ?? 'HTTPRoute';
    const r = parseRoute(kind, route(kind, 'bad', c.spec) as Record<string, unknown>);
    assert.equal(r.route, undefined);
    const hit = r.issues.find((i) => i.field === c.field);
    assert.ok(hit !== undefined, `no issue at ${c.field}; got ${JSON.stringify(r.issues)}`);
    assert.match(hit.message, c.message);
  });
}

test('one bad route rejects only itself; an invalid new version keeps the last good one', () => {
  const good = route('HTTPRoute', 'good', spec([{ backendRefs: [{ name: 'echo', port: 80 }] }]));
  const bad = route('HTTPRoute', 'bad', spec([{ matches: [{ path: { value: 'nope' } }] }]));
  const first = parseManifests([{ path: 'r.yaml', text: yamlOf([good, bad]) }]);
  assert.deepEqual(first.routes.map((r) => r.name), ['good']);
  assert.deepEqual(first.problems.map((p) => [p.object, p.field]), [['HTTPRoute/mesh/bad', 'spec.rules[0].matches[0].path.value']]);
  const broken = route('HTTPRoute', 'good', spec([{ backendRefs: [{ name: 'echo' }] }]));
  const second = parseManifests([{ path: 'r.yaml', text: yamlOf([broken]) }], new Set(), { previous: first });
  assert.deepEqual(second.routes.map((r) => r.rules[0]?.backendRefs[0]?.port), [80]);
  assert.match(second.problems[0]?.message ?? '', /keeping the previous version/);
  const wrongVersion = parseManifests([{ path: 'r.yaml', text: yamlOf([{ ...good, apiVersion: 'gateway.networking.k8s.io/v1beta1' }]) }]);
  assert.equal(wrongVersion.problems[0]?.field, 'apiVersion');
});
