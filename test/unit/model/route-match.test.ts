// Route matching, table by table, named after the Gateway API mesh conformance tests
// (conformance/tests/mesh/*.go) whose routes and expectations these cases reproduce.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CONSUMER_NS, decide, meshWith, outcome, parent, request, route } from './route-fixture.ts';
import { decideAtVip, decideRoute, modifyPath, parseQuery, spreadDraws } from '../../../src/model/route-match.ts';
import { prefixMatches } from '../../../src/model/route-table.ts';
import type { Forward, RouteDecision } from '../../../src/model/route-decision.ts';

const be = (name: string, port: number, extra: object = {}) => ({ name, port, ...extra });

function forward(d: RouteDecision): Forward {
  if (d.kind !== 'forward') assert.fail(`expected a forward, got ${JSON.stringify(d)}`);
  return d;
}

test('MeshHTTPRouteSimpleSameNamespace: one rule sends everything to its backend', () => {
  const s = meshWith([route('HTTPRoute', 'simple', { parentRefs: [parent('echo', { port: 80 })], rules: [{ backendRefs: [be('echo-v1', 8080)] }] })]);
  assert.equal(outcome(decide(s, 'echo', request('/'))), 'echo-v1:8080');
  assert.deepEqual(forward(decide(s, 'echo', request('/'))).route, { kind: 'HTTPRoute', namespace: 'mesh', name: 'simple', rule: 0, ruleName: undefined });
});

test('MeshHTTPRouteMatching: path and header matches, precedence across rules, path-prefix element boundaries', () => {
  const s = meshWith([route('HTTPRoute', 'mesh-matching', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      { matches: [{ path: { type: 'PathPrefix', value: '/' } }, { headers: [{ name: 'version', value: 'one' }] }], backendRefs: [be('echo-v1', 8080)] },
      { matches: [{ path: { type: 'PathPrefix', value: '/v2' } }, { headers: [{ name: 'version', value: 'two' }] }], backendRefs: [be('echo-v2', 8080)] },
    ],
  })]);
  const cases: [string, Record<string, string>, string][] = [
    ['/', {}, 'echo-v1'],
    ['/example', {}, 'echo-v1'],
    ['/', { version: 'one' }, 'echo-v1'],
    ['/v2', {}, 'echo-v2'],
    ['/v2/example', {}, 'echo-v2'],
    ['/', { version: 'two' }, 'echo-v2'],
    ['/v2/', {}, 'echo-v2'],
    ['/v2example', {}, 'echo-v1'],
    ['/foo/v2/example', {}, 'echo-v1'],
  ];
  for (const [path, headers, want] of cases) {
    assert.equal(outcome(decide(s, 'echo', request(path, { headers }))), `${want}:8080`, `${path} ${JSON.stringify(headers)}`);
  }
});

test('MeshHTTPRouteMatching: Exact beats PathPrefix beats RegularExpression; then method, header count, query count', () => {
  const s = meshWith([route('HTTPRoute', 'order', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      { matches: [{ path: { type: 'RegularExpression', value: '/api/.*' } }], backendRefs: [be('echo-v1', 80)] },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [be('echo-v2', 80)] },
      { matches: [{ path: { type: 'Exact', value: '/api/exact' } }], backendRefs: [be('echo-v1', 8080)] },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'POST' }], backendRefs: [be('echo-v2', 8080)] },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-a', value: '1' }, { name: 'x-b', value: '2' }] }], backendRefs: [be('echo-v1', 7070)] },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-a', value: '1' }] }], backendRefs: [be('echo-v2', 7070)] },
    ],
  })]);
  assert.equal(outcome(decide(s, 'echo', request('/api/exact'))), 'echo-v1:8080');
  assert.equal(outcome(decide(s, 'echo', request('/api/other'))), 'echo-v2:80', 'prefix beats regex');
  assert.equal(outcome(decide(s, 'echo', request('/api/x', { method: 'POST', headers: { 'x-a': '1', 'x-b': '2' } }))), 'echo-v2:8080', 'method before headers');
  assert.equal(outcome(decide(s, 'echo', request('/api/x', { headers: { 'x-a': '1', 'x-b': '2' } }))), 'echo-v1:7070', 'more headers first');
  assert.equal(outcome(decide(s, 'echo', request('/api/x', { headers: { 'x-a': '1' } }))), 'echo-v2:7070');
  assert.equal(outcome(decide(s, 'echo', request('/apix'))), 'status 404', 'regex /api/.* does not match /apix, nor does the prefix');
});

test('MeshHTTPRouteMatching: ties go to the older route, then namespace/name, then rule order', () => {
  const rules = (backend: string) => [{ matches: [{ path: { type: 'PathPrefix', value: '/same' } }], backendRefs: [be(backend, 80)] }];
  const s = meshWith([
    route('HTTPRoute', 'a-new', { parentRefs: [parent('echo')], rules: rules('echo-v1') }, 'mesh', { creationTimestamp: '2024-02-01T00:00:00Z' }),
    route('HTTPRoute', 'z-old', { parentRefs: [parent('echo')], rules: rules('echo-v2') }, 'mesh', { creationTimestamp: '2024-01-01T00:00:00Z' }),
  ]);
  assert.equal(outcome(decide(s, 'echo', request('/same'))), 'echo-v2:80');
  const noTime = meshWith([
    route('HTTPRoute', 'b', { parentRefs: [parent('echo')], rules: rules('echo-v1') }),
    route('HTTPRoute', 'a', { parentRefs: [parent('echo')], rules: rules('echo-v2') }),
  ]);
  assert.equal(outcome(decide(noTime, 'echo', request('/same'))), 'echo-v2:80', 'mesh/a before mesh/b');
});

test('MeshHTTPRouteQueryParamMatching: exact query values, combinations, and 404 when nothing matches', () => {
  const q = (name: string, value: string) => ({ name, value });
  const s = meshWith([route('HTTPRoute', 'mesh-query-param-matching', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      { matches: [{ queryParams: [q('animal', 'whale')] }], backendRefs: [be('echo-v1', 8080)] },
      { matches: [{ queryParams: [q('animal', 'dolphin')] }], backendRefs: [be('echo-v2', 8080)] },
      { matches: [{ path: { type: 'PathPrefix', value: '/path1' }, queryParams: [q('animal', 'whale')] }], backendRefs: [be('echo-v1', 8080)] },
      { matches: [{ headers: [{ name: 'version', value: 'one' }], queryParams: [q('animal', 'whale')] }], backendRefs: [be('echo-v2', 8080)] },
      {
        matches: [
          { path: { type: 'PathPrefix', value: '/path3' }, queryParams: [q('animal', 'shark')] },
          { path: { type: 'PathPrefix', value: '/path4' }, headers: [{ name: 'version', value: 'three' }], queryParams: [q('animal', 'kraken')] },
        ],
        backendRefs: [be('echo-v1', 8080)],
      },
      { matches: [{ path: { type: 'PathPrefix', value: '/path5' } }], backendRefs: [be('echo-v1', 8080)] },
      { matches: [{ queryParams: [q('animal', 'hydra')] }], backendRefs: [be('echo-v2', 8080)] },
    ],
  })]);
  const cases: [string, Record<string, string>, string][] = [
    ['/?animal=whale', {}, 'echo-v1:8080'],
    ['/?animal=dolphin', {}, 'echo-v2:8080'],
    ['/?animal=whale&otherparam=irrelevant', {}, 'echo-v1:8080'],
    ['/?animal=dolphin&color=yellow', {}, 'echo-v2:8080'],
    ['/?color=blue', {}, 'status 404'],
    ['/?animal=dog', {}, 'status 404'],
    ['/?animal=whaledolphin', {}, 'status 404'],
    ['/', {}, 'status 404'],
    ['/path1?animal=whale', {}, 'echo-v1:8080'],
    ['/?animal=whale', { version: 'one' }, 'echo-v2:8080'],
    ['/path3?animal=shark', {}, 'echo-v1:8080'],
    ['/path4?animal=kraken', { version: 'three' }, 'echo-v1:8080'],
    ['/?animal=shark', {}, 'status 404'],
    ['/path4?animal=kraken', {}, 'status 404'],
    ['/path5?animal=hydra', {}, 'echo-v1:8080'],
    ['/?animal=wh%61le', {}, 'echo-v1:8080'],
    ['/?animal=whale&animal=dolphin', {}, 'echo-v1:8080'],
  ];
  for (const [path, headers, want] of cases) assert.equal(outcome(decide(s, 'echo', request(path, { headers }))), want, `${path} ${JSON.stringify(headers)}`);
  assert.deepEqual([...parseQuery('a=1&b&a=2&c=%zz')], [['a', '1'], ['b', ''], ['c', '%zz']]);
});

test('MeshHTTPRouteMethodMatching: a method match selects by method; other methods fall through', () => {
  const s = meshWith([route('HTTPRoute', 'methods', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      { matches: [{ method: 'POST' }], backendRefs: [be('echo-v1', 8080)] },
      { matches: [{ method: 'GET', path: { type: 'PathPrefix', value: '/get' } }], backendRefs: [be('echo-v2', 8080)] },
    ],
  })]);
  assert.equal(outcome(decide(s, 'echo', request('/', { method: 'POST' }))), 'echo-v1:8080');
  assert.equal(outcome(decide(s, 'echo', request('/get', { method: 'GET' }))), 'echo-v2:8080');
  assert.equal(outcome(decide(s, 'echo', request('/get', { method: 'PUT' }))), 'status 404');
  assert.equal(outcome(decide(s, 'echo', request('/', { method: 'GET' }))), 'status 404');
});

test('header matches: names case-insensitive, values exact and case-sensitive, regex is RE2 and whole-value', () => {
  const s = meshWith([route('HTTPRoute', 'headers', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      { matches: [{ headers: [{ name: 'X-Env', value: 'Canary' }, { name: 'x-env', value: 'ignored-second-entry' }] }], backendRefs: [be('echo-v2', 80)] },
      { matches: [{ headers: [{ name: 'x-user', type: 'RegularExpression', value: 'u-[0-9]+' }] }], backendRefs: [be('echo-v1', 8080)] },
      { matches: [{ headers: [{ name: 'host', value: 'echo.mesh' }] }], backendRefs: [be('echo-v2', 8080)] },
    ],
  })]);
  assert.equal(outcome(decide(s, 'echo', request('/', { headers: { 'x-env': 'Canary' } }))), 'echo-v2:80');
  assert.equal(outcome(decide(s, 'echo', request('/', { headers: { 'x-env': 'canary' } }))), 'status 404');
  assert.equal(outcome(decide(s, 'echo', request('/', { headers: { 'x-user': 'u-42' } }))), 'echo-v1:8080');
  assert.equal(outcome(decide(s, 'echo', request('/', { headers: { 'x-user': 'xu-42' } }))), 'status 404', 'the whole value must match');
  assert.equal(outcome(decide(s, 'echo', request('/', { authority: 'echo.mesh' }))), 'echo-v2:8080', 'Host is :authority in HTTP/2');
});

test('MeshHTTPRouteWeight: weights split by the random draw; weight 0 never chosen', () => {
  const s = meshWith([route('HTTPRoute', 'mesh-weighted-backends', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [{ backendRefs: [be('echo-v1', 8080, { weight: 70 }), be('echo-v2', 8080, { weight: 30 }), be('echo-v3', 7070, { weight: 0 })] }],
  })]);
  const counts = new Map<string, number>();
  for (let i = 0; i < 1000; i++) {
    const o = outcome(decide(s, 'echo', request('/'), () => i / 1000));
    counts.set(o, (counts.get(o) ?? 0) + 1);
  }
  assert.deepEqual(Object.fromEntries(counts), { 'echo-v1:8080': 700, 'echo-v2:8080': 300 });
  const zero = meshWith([route('HTTPRoute', 'zero', { parentRefs: [parent('echo')], rules: [{ backendRefs: [be('echo-v1', 80, { weight: 0 })] }] })]);
  const d = decide(zero, 'echo', request('/'));
  assert.equal(outcome(d), 'status 500');
  assert.equal(d.kind === 'reject' ? d.grpcStatus : 0, 14);
});

test('MeshHTTPRouteWeight: spread draws hold 80/20 within two requests over any run, and over every other request', () => {
  const s = meshWith([route('HTTPRoute', 'canary', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [{ backendRefs: [be('echo-v1', 8080, { weight: 80 }), be('echo-v2', 8080, { weight: 20 })] }],
  })]);
  const svc = s.service('mesh/echo') ?? assert.fail('no echo');
  for (const start of [0, 0.1234, 0.5, 0.9999]) {
    const draws = spreadDraws(() => start);
    const picks = Array.from({ length: 1000 }, () => outcome(decideRoute(s.routeTable(svc, 80), request('/'), () => 0.5, draws)));
    for (const n of [10, 50, 100, 333, 500, 1000]) {
      const v2 = picks.slice(0, n).filter((p) => p === 'echo-v2:8080').length;
      assert.ok(Math.abs(v2 - 0.2 * n) <= 2, `start ${start}: ${v2} of the first ${n} to v2`);
      const everyOther = picks.slice(0, n).filter((_, i) => i % 2 === 1);
      const v2Odd = everyOther.filter((p) => p === 'echo-v2:8080').length;
      assert.ok(Math.abs(v2Odd - 0.2 * everyOther.length) <= 2, `start ${start}: ${v2Odd} of every other of the first ${n} to v2`);
    }
    assert.ok(picks.slice(0, 10).some((p) => p === 'echo-v1:8080') && picks.slice(0, 10).some((p) => p === 'echo-v2:8080'), 'interleaved, not in blocks');
  }
});

test('backends that cannot be sent to get their share of 500s (unknown Service, missing port, not a Service)', () => {
  const s = meshWith([route('HTTPRoute', 'bad-backends', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [{ backendRefs: [be('echo-v1', 80), be('nope', 80), be('echo-v2', 9999), { group: 'example.com', kind: 'Thing', name: 'x', weight: 1 }] }],
  })]);
  const seen = [0, 0.3, 0.6, 0.9].map((r) => {
    const d = decide(s, 'echo', request('/'), () => r);
    return d.kind === 'reject' ? d.reason : outcome(d);
  });
  assert.deepEqual(seen, [
    'echo-v1:80', 'backend Service mesh/nope does not exist', 'backend Service mesh/echo-v2 has no port 9999', 'backend kind example.com/Thing is not a Service',
  ]);
  const none = meshWith([route('HTTPRoute', 'no-backends', { parentRefs: [parent('echo')], rules: [{ matches: [{ path: { value: '/x' } }] }] })]);
  assert.equal(outcome(decide(none, 'echo', request('/x'))), 'status 500');
});

test('MeshHTTPRouteRequestHeaderModifier and MeshHTTPRouteBackendRequestHeaderModifier: edits in order, rule then backend', () => {
  const s = meshWith([route('HTTPRoute', 'mods', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [{
      filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Header-Set', value: 'set-overwrites-values' }], add: [{ name: 'X-Header-Add', value: 'add-appends-values' }], remove: ['X-Header-Remove'] } }],
      backendRefs: [be('echo-v1', 8080, { filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Backend', value: 'v1' }] } }] })],
    }],
  })]);
  const f = forward(decide(s, 'echo', request('/')));
  assert.deepEqual(f.requestHeaders, [
    { set: [{ name: 'x-header-set', value: 'set-overwrites-values' }], add: [{ name: 'x-header-add', value: 'add-appends-values' }], remove: ['x-header-remove'] },
    { set: [{ name: 'x-backend', value: 'v1' }], add: [], remove: [] },
  ]);
});

test('MeshFrontend, MeshPorts: routes attach to a Service port (parentRef port, sectionName) and only to it', () => {
  const s = meshWith([
    route('HTTPRoute', 'v1-port-80', { parentRefs: [parent('echo-v1', { port: 80 })], rules: [{ filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'X-Header-Set', value: 'v1' }] } }], backendRefs: [be('echo-v1', 80)] }] }),
    route('HTTPRoute', 'v2-all-ports', { parentRefs: [parent('echo-v2')], rules: [{ filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'X-Header-Set', value: 'v2' }] } }], backendRefs: [be('echo-v2', 80)] }] }),
    route('HTTPRoute', 'echo-by-name', { parentRefs: [parent('echo', { sectionName: 'grpc' })], rules: [{ backendRefs: [be('echo-v3', 7070)] }] }),
  ]);
  const v1 = forward(decide(s, 'echo-v1:80', request('/')));
  assert.deepEqual(v1.responseHeaders, [{ set: [{ name: 'x-header-set', value: 'v1' }], add: [], remove: [] }]);
  const excluded = forward(decide(s, 'echo-v1:8080', request('/')));
  assert.equal(excluded.route, undefined, 'port 8080 has no route: the Service itself, unchanged');
  assert.deepEqual([excluded.backend, excluded.responseHeaders], [{ serviceKey: 'mesh/echo-v1', port: 8080 }, []]);
  for (const port of [80, 8080]) assert.equal(forward(decide(s, `echo-v2:${port}`, request('/'))).responseHeaders.length, 1, `echo-v2:${port}`);
  assert.equal(outcome(decide(s, 'echo:7070', request('/'))), 'echo-v3:7070');
  assert.equal(forward(decide(s, 'echo:80', request('/'))).route, undefined, 'sectionName grpc leaves the http port alone');
});

test('MeshConsumerRoute: a route in the caller namespace wins for that namespace only', () => {
  const s = meshWith([
    route('HTTPRoute', 'producer', { parentRefs: [parent('echo-v1')], rules: [{ backendRefs: [be('echo-v2', 80)] }] }),
    route('HTTPRoute', 'mesh-echo-add-header', {
      parentRefs: [parent('echo-v1', { namespace: 'mesh' })],
      rules: [{ filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'X-Header-Set', value: 'set' }] } }], backendRefs: [be('echo-v1', 80, { namespace: 'mesh' })] }],
    }, CONSUMER_NS),
  ]);
  const consumer = forward(decide(s, 'echo-v1', request('/', { sourceNamespace: CONSUMER_NS })));
  assert.deepEqual([outcome(consumer), consumer.route?.namespace, consumer.responseHeaders.length], ['echo-v1:80', CONSUMER_NS, 1]);
  const producer = forward(decide(s, 'echo-v1', request('/', { sourceNamespace: 'mesh' })));
  assert.deepEqual([outcome(producer), producer.route?.name, producer.responseHeaders.length], ['echo-v2:80', 'producer', 0]);
  assert.equal(outcome(decide(s, 'echo-v1', request('/', { sourceNamespace: undefined }))), 'echo-v2:80', 'an unknown caller gets the producer routes');
  assert.equal(outcome(decide(s, 'echo-v1', request('/', { sourceNamespace: 'elsewhere' }))), 'echo-v2:80');
});

test('MeshHTTPRouteRewritePath: ReplacePrefixMatch and ReplaceFullPath, with header edits, query kept', () => {
  const rw = (value: string, path: object) => ({ matches: [{ path: { type: 'PathPrefix', value } }], filters: [{ type: 'URLRewrite', urlRewrite: { path } }], backendRefs: [be('echo-v1', 80)] });
  const s = meshWith([route('HTTPRoute', 'mesh-rewrite-path', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      rw('/prefix/one', { type: 'ReplacePrefixMatch', replacePrefixMatch: '/one' }),
      rw('/strip-prefix', { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' }),
      rw('/full/one', { type: 'ReplaceFullPath', replaceFullPath: '/one' }),
      { ...rw('/host', { type: 'ReplaceFullPath', replaceFullPath: '/h' }), filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'echo-v1.mesh' } }] },
    ],
  })]);
  const path = (p: string) => forward(decide(s, 'echo', request(p))).rewrite?.path;
  assert.equal(path('/prefix/one/two'), '/one/two');
  assert.equal(path('/strip-prefix/three'), '/three');
  assert.equal(path('/strip-prefix'), '/');
  assert.equal(path('/full/one/two'), '/one');
  assert.equal(path('/prefix/one/two?x=1'), '/one/two?x=1');
  assert.deepEqual(forward(decide(s, 'echo', request('/host/x'))).rewrite, { path: undefined, authority: 'echo-v1.mesh' });
});

test('ReplacePrefixMatch follows the spec table', () => {
  const rows: [string, string, string, string][] = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'], ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'], ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'], ['/foo', '/foo', '/xyz', '/xyz'], ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'], ['/foo/', '/foo', '', '/'], ['/foo', '/foo', '', '/'], ['/foo/', '/foo', '/', '/'], ['/foo', '/foo', '/', '/'],
    ['/anything', '/', '/base', '/base/anything'],
  ];
  for (const [path, prefix, repl, want] of rows) assert.equal(modifyPath(path, { type: 'ReplacePrefixMatch', replacePrefixMatch: repl }, prefix), want, `${path} ${prefix} ${repl}`);
  for (const [prefix, path, want] of [['/abc', '/abc', true], ['/abc', '/abc/', true], ['/abc', '/abc/d', true], ['/abc', '/abcd', false], ['/abc/', '/abc', true], ['/', '/x', true]] as const) {
    assert.equal(prefixMatches(prefix, path), want, `${prefix} ${path}`);
  }
});

const redirect = (value: string, requestRedirect: object) => ({ matches: [{ path: { type: 'PathPrefix', value } }], filters: [{ type: 'RequestRedirect', requestRedirect }] });

test('MeshHTTPRouteRedirectHostAndStatus: hostname and status code; 302 by default, the Service port left out at 80', () => {
  const s = meshWith([route('HTTPRoute', 'mesh-redirect-host-and-status', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [redirect('/hostname-redirect', { hostname: 'example.org' }), redirect('/host-and-status', { statusCode: 301, hostname: 'example.org' })],
  })]);
  assert.equal(outcome(decide(s, 'echo', request('/hostname-redirect'))), 'redirect 302 http://example.org/hostname-redirect');
  assert.equal(outcome(decide(s, 'echo', request('/host-and-status'))), 'redirect 301 http://example.org/host-and-status');
});

test('MeshHTTPRouteRedirectPath: prefix and full-path replacement, with host and status', () => {
  const prefix = { type: 'ReplacePrefixMatch', replacePrefixMatch: '/replacement-prefix' };
  const full = { type: 'ReplaceFullPath', replaceFullPath: '/replacement-full' };
  const s = meshWith([route('HTTPRoute', 'mesh-redirect-path', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      redirect('/original-prefix', { path: prefix }),
      redirect('/full', { path: { type: 'ReplaceFullPath', replaceFullPath: '/full-path-replacement' } }),
      redirect('/path-and-host', { hostname: 'example.org', path: prefix }),
      redirect('/path-and-status', { path: prefix, statusCode: 301 }),
      redirect('/full-path-and-host', { hostname: 'example.org', path: full }),
      redirect('/full-path-and-status', { path: full, statusCode: 301 }),
    ],
  })]);
  const cases: [string, string][] = [
    ['/original-prefix/lemon', 'redirect 302 http://echo/replacement-prefix/lemon'],
    ['/full/path/original', 'redirect 302 http://echo/full-path-replacement'],
    ['/path-and-host', 'redirect 302 http://example.org/replacement-prefix'],
    ['/path-and-status', 'redirect 301 http://echo/replacement-prefix'],
    ['/full-path-and-host', 'redirect 302 http://example.org/replacement-full'],
    ['/full-path-and-status', 'redirect 301 http://echo/replacement-full'],
    ['/original-prefix/lemon?q=1', 'redirect 302 http://echo/replacement-prefix/lemon?q=1'],
  ];
  for (const [path, want] of cases) assert.equal(outcome(decide(s, 'echo', request(path))), want, path);
});

test('MeshHTTPRouteRedirectPort: an explicit port shows; no port means the Service port', () => {
  const s = meshWith([route('HTTPRoute', 'mesh-redirect-port', {
    parentRefs: [parent('echo', { port: 80 }), parent('echo-v1', { port: 8080 })],
    rules: [
      redirect('/port', { port: 8083 }), redirect('/port-and-host', { hostname: 'example.org', port: 8083 }),
      redirect('/port-and-status', { port: 8083, statusCode: 301 }), redirect('/port-and-host-and-status', { port: 8083, hostname: 'example.org', statusCode: 302 }),
      redirect('/none', { hostname: 'example.org' }),
    ],
  })]);
  const cases: [string, string, string][] = [
    ['echo', '/port', 'redirect 302 http://echo:8083/port'],
    ['echo', '/port-and-host', 'redirect 302 http://example.org:8083/port-and-host'],
    ['echo', '/port-and-status', 'redirect 301 http://echo:8083/port-and-status'],
    ['echo', '/port-and-host-and-status', 'redirect 302 http://example.org:8083/port-and-host-and-status'],
    ['echo', '/none', 'redirect 302 http://example.org/none'],
    ['echo-v1:8080', '/none', 'redirect 302 http://example.org:8080/none'],
  ];
  for (const [target, path, want] of cases) assert.equal(outcome(decide(s, target, request(path, { authority: 'echo:80' }))), want, `${target} ${path}`);
});

test('MeshHTTPRouteSchemeRedirect: https takes port 443, left out of Location', () => {
  const s = meshWith([route('HTTPRoute', 'mesh-redirect-scheme', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      redirect('/scheme', { scheme: 'https' }), redirect('/scheme-and-host', { hostname: 'example.org', scheme: 'https' }),
      redirect('/scheme-and-status', { scheme: 'https', statusCode: 301 }), redirect('/scheme-and-port', { scheme: 'https', port: 8443 }),
      redirect('/http-scheme', { scheme: 'http' }),
    ],
  })]);
  const cases: [string, string][] = [
    ['/scheme', 'redirect 302 https://echo/scheme'],
    ['/scheme-and-host', 'redirect 302 https://example.org/scheme-and-host'],
    ['/scheme-and-status', 'redirect 301 https://echo/scheme-and-status'],
    ['/scheme-and-port', 'redirect 302 https://echo:8443/scheme-and-port'],
    ['/http-scheme', 'redirect 302 http://echo/http-scheme'],
  ];
  for (const [path, want] of cases) assert.equal(outcome(decide(s, 'echo', request(path))), want, path);
});

test('MeshHTTPRoute303Redirect, MeshHTTPRoute307Redirect, MeshHTTPRoute308Redirect: the path kept as is', () => {
  for (const code of [303, 307, 308]) {
    const s = meshWith([route('HTTPRoute', `r${code}`, { parentRefs: [parent('echo', { port: 80 })], rules: [redirect('/redirect', { statusCode: code })] })]);
    assert.equal(outcome(decide(s, 'echo', request('/redirect'))), `redirect ${code} http://echo/redirect`);
  }
});

test('RequestMirror: the share is drawn per request; a mirror of an unknown Service is dropped', () => {
  const s = meshWith([route('HTTPRoute', 'mirror', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [{
      filters: [
        { type: 'RequestMirror', requestMirror: { backendRef: be('echo-v2', 80), percent: 50 } },
        { type: 'RequestMirror', requestMirror: { backendRef: be('missing', 80) } },
      ],
      backendRefs: [be('echo-v1', 80)],
    }],
  })]);
  assert.deepEqual(forward(decide(s, 'echo', request('/'), () => 0.2)).mirrors, [{ serviceKey: 'mesh/echo-v2', port: 80 }]);
  assert.deepEqual(forward(decide(s, 'echo', request('/'), () => 0.7)).mirrors, []);
});

test('timeouts: request and backendRequest in milliseconds; 0s means none', () => {
  const s = meshWith([route('HTTPRoute', 'timeouts', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      { matches: [{ path: { value: '/slow' } }], timeouts: { request: '1m30s', backendRequest: '500ms' }, backendRefs: [be('echo-v1', 80)] },
      { timeouts: { request: '0s' }, backendRefs: [be('echo-v1', 80)] },
    ],
  })]);
  const slow = forward(decide(s, 'echo', request('/slow')));
  assert.deepEqual([slow.requestTimeoutMs, slow.backendRequestTimeoutMs], [90_000, 500]);
  const other = forward(decide(s, 'echo', request('/')));
  assert.deepEqual([other.requestTimeoutMs, other.backendRequestTimeoutMs], [undefined, undefined]);
});

test('an ExtensionRef filter weft does not implement fails the request with 500, never skipped', () => {
  const s = meshWith([route('HTTPRoute', 'ext', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'example.com', kind: 'Lua', name: 'script' } }], backendRefs: [be('echo-v1', 80)] }],
  })]);
  const d = decide(s, 'echo', request('/'));
  assert.equal(d.kind === 'reject' ? d.reason : '', 'ExtensionRef filter example.com/Lua script is not implemented by weft');
});

test('ExtensionRef filters to weft.dev FaultInjections (rule, then backend) ride on the forward decision; retry too', () => {
  const fault = (name: string) => ({ type: 'ExtensionRef', extensionRef: { group: 'weft.dev', kind: 'FaultInjection', name } });
  const s = meshWith([route('HTTPRoute', 'ext', {
    parentRefs: [parent('echo', { port: 80 })],
    rules: [
      { matches: [{ path: { value: '/f' } }], filters: [fault('slow')], backendRefs: [be('echo-v1', 80, { filters: [fault('flaky')] })], retry: { attempts: 1, codes: [503] } },
      { backendRefs: [be('echo-v1', 80)] },
    ],
  })]);
  const f = forward(decide(s, 'echo', request('/f')));
  assert.deepEqual(f.faults, ['mesh/slow', 'mesh/flaky']);
  assert.deepEqual(f.retry, { attempts: 1, codes: [503], backoffMs: 25 });
  const plain = forward(decide(s, 'echo', request('/')));
  assert.deepEqual([plain.faults, plain.retry], [undefined, undefined]);
});

const grpcReq = (service: string, method: string, opts = {}) => request(`/${service}/${method}`, { method: 'POST', grpc: true, headers: { 'content-type': 'application/grpc' }, ...opts });

test('MeshGRPCRouteWeight: weighted backends, weight 0 left out', () => {
  const s = meshWith([route('GRPCRoute', 'mesh-grpc-weighted-backends', {
    parentRefs: [parent('echo', { port: 7070 })],
    rules: [{ backendRefs: [be('echo-v1', 7070, { weight: 70 }), be('echo-v2', 7070, { weight: 30 }), be('echo-v3', 7070, { weight: 0 })] }],
  })]);
  const counts = new Map<string, number>();
  for (let i = 0; i < 100; i++) {
    const o = outcome(decide(s, 'echo:7070', grpcReq('grpc.health.v1.Health', 'Check'), () => i / 100));
    counts.set(o, (counts.get(o) ?? 0) + 1);
  }
  assert.deepEqual(Object.fromEntries(counts), { 'echo-v1:7070': 70, 'echo-v2:7070': 30 });
});

test('GRPCRoute: service and method matches, precedence by characters, header matches; non-gRPC requests do not match', () => {
  const s = meshWith([route('GRPCRoute', 'grpc-matching', {
    parentRefs: [parent('echo', { port: 7070 })],
    rules: [
      { matches: [{ method: { service: 'pkg.Echo' } }], backendRefs: [be('echo-v1', 7070)] },
      { matches: [{ method: { service: 'pkg.Echo', method: 'Stream' } }], backendRefs: [be('echo-v2', 7070)] },
      { matches: [{ method: { type: 'RegularExpression', method: 'Get.*' } }], backendRefs: [be('echo-v3', 7070)] },
      { matches: [{ method: { service: 'pkg.Echo' }, headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [be('echo-v2', 7070)] },
    ],
  })]);
  assert.equal(outcome(decide(s, 'echo:7070', grpcReq('pkg.Echo', 'Unary'))), 'echo-v1:7070');
  assert.equal(outcome(decide(s, 'echo:7070', grpcReq('pkg.Echo', 'Stream'))), 'echo-v2:7070', 'service and method beat service alone');
  assert.equal(outcome(decide(s, 'echo:7070', grpcReq('pkg.Echo', 'Unary', { headers: { 'x-canary': 'yes' } }))), 'echo-v2:7070');
  assert.equal(outcome(decide(s, 'echo:7070', grpcReq('other.Svc', 'GetThing'))), 'echo-v3:7070');
  const none = decide(s, 'echo:7070', grpcReq('other.Svc', 'Put'));
  assert.deepEqual([none.kind, none.kind === 'reject' ? none.grpcStatus : 0], ['reject', 12], 'UNIMPLEMENTED when no rule matches');
  assert.equal(outcome(decide(s, 'echo:7070', request('/pkg.Echo/Unary'))), 'status 404', 'a plain HTTP request on a GRPCRoute port');
});

test('MeshGRPCRouteRequestHeaderModifier, and GRPCRoute wins over HTTPRoute on the same port (GEP-1294)', () => {
  const s = meshWith([
    route('GRPCRoute', 'grpc', {
      parentRefs: [parent('echo', { port: 7070 })],
      rules: [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'X-Header-Add', value: 'header-val-1' }] } }], backendRefs: [be('echo-v1', 7070)] }],
    }),
    route('HTTPRoute', 'http', { parentRefs: [parent('echo', { port: 7070 })], rules: [{ backendRefs: [be('echo-v2', 7070)] }] }),
  ]);
  const d = forward(decide(s, 'echo:7070', grpcReq('a.B', 'C')));
  assert.deepEqual([outcome(d), d.route?.kind, d.requestHeaders], ['echo-v1:7070', 'GRPCRoute', [{ set: [], add: [{ name: 'x-header-add', value: 'header-val-1' }], remove: [] }]]);
});

test('a Service with no route attached forwards to itself, for every caller', () => {
  const s = meshWith([]);
  const d = forward(decide(s, 'echo', request('/anything?x=1', { method: 'DELETE' })));
  assert.deepEqual(d, {
    kind: 'forward', route: undefined, backend: { serviceKey: 'mesh/echo', port: 80 }, requestHeaders: [], responseHeaders: [], rewrite: undefined,
    mirrors: [], requestTimeoutMs: undefined, backendRequestTimeoutMs: undefined,
  });
});

test('decideAtVip: the call the HTTP layer makes for a request to a Service VIP and port', () => {
  const s = meshWith([route('HTTPRoute', 'v', { parentRefs: [parent('echo', { port: 80 })], rules: [{ backendRefs: [be('echo-v2', 80)] }] })]);
  const at = s.serviceByVip('198.19.1.1', 80) ?? assert.fail();
  assert.equal(outcome(decideAtVip(s, at, request('/'))), 'echo-v2:80');
  const grpcPort = s.serviceByVip('198.19.1.1', 7070) ?? assert.fail();
  assert.equal(forward(decideAtVip(s, grpcPort, request('/'))).route, undefined);
});
