// Routes as agents receive them: every field survives JSON and passes the agent's check;
// malformed bodies are refused with the field named.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { routeResourceIssues } from '../../../src/model/route-codec.ts';
import { meshWith, parent, route } from './route-fixture.ts';

const be = (name: string, port: number, extra: object = {}) => ({ name, port, ...extra });

test('a route using every field decodes on the agent with no issue', () => {
  const s = meshWith([
    route('HTTPRoute', 'all', {
      parentRefs: [parent('echo', { port: 80 }), parent('echo-v1', { sectionName: 'http' }), { name: 'gw' }],
      hostnames: ['echo.example'],
      rules: [
        {
          name: 'main',
          matches: [{ path: { type: 'PathPrefix', value: '/a' }, headers: [{ name: 'X', value: '1' }, { name: 'y', type: 'RegularExpression', value: 'v[0-9]' }], queryParams: [{ name: 'q', value: '2' }], method: 'GET' }],
          filters: [
            { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'a', value: '1' }], add: [{ name: 'b', value: '2' }], remove: ['c'] } },
            { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'd', value: '1' }] } },
            { type: 'URLRewrite', urlRewrite: { hostname: 'x.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } },
            { type: 'RequestMirror', requestMirror: { backendRef: be('echo-v2', 80), fraction: { numerator: 1, denominator: 3 } } },
            { type: 'ExtensionRef', extensionRef: { group: 'weft.dev', kind: 'FaultInjection', name: 'f' } },
          ],
          backendRefs: [be('echo-v1', 80, { weight: 3, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'e', value: '1' }] } }] }), be('echo-v2', 80, { weight: 0 })],
          timeouts: { request: '10s', backendRequest: '2s' },
        },
        { matches: [{ path: { type: 'Exact', value: '/r' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', hostname: 'h.example', port: 8443, statusCode: 308, path: { type: 'ReplaceFullPath', replaceFullPath: '/z' } } }] },
      ],
    }, 'mesh', { creationTimestamp: '2025-01-01T00:00:00Z', generation: 4 }),
    route('GRPCRoute', 'rpc', {
      parentRefs: [parent('echo', { port: 7070 })],
      rules: [
        { matches: [{ method: { service: 'a.B', method: 'C' }, headers: [{ name: 'k', value: 'v' }] }, { method: { type: 'RegularExpression', service: 'a\\..*' } }], backendRefs: [be('echo-v1', 7070)] },
        { backendRefs: [be('echo-v2', 7070)] },
      ],
    }, 'mesh', { annotations: { 'retry.linkerd.io/grpc': 'unavailable', 'retry.linkerd.io/limit': '2' } }),
  ]);
  const rpc = s.routes.find((r) => r.name === 'rpc');
  assert.ok(rpc?.kind === 'GRPCRoute' && rpc.rules[0]?.retry?.grpcCodes?.[0] === 14, 'the annotations\' retry is carried');
  assert.equal(s.routes.length, 2);
  for (const r of s.routes) assert.deepEqual(routeResourceIssues(JSON.parse(JSON.stringify(r)), 'body'), [], r.name);
});

test('malformed route bodies are refused, naming the field', () => {
  const s = meshWith([route('HTTPRoute', 'r', { parentRefs: [parent('echo')], rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/a.*' } }], backendRefs: [be('echo-v1', 80)] }] })]);
  interface Body { kind: string; rules: { matches: { path: { value: string } }[]; backendRefs: { weight: number }[]; filters: unknown[]; retry?: unknown }[] }
  const good = JSON.parse(JSON.stringify(s.routes[0])) as Body;
  const rule = (b: Body) => b.rules[0] ?? assert.fail();
  const cases: [string, (b: Body) => void, RegExp][] = [
    ['kind', (b) => { b.kind = 'TCPRoute'; }, /kind must be HTTPRoute or GRPCRoute/],
    ['regex', (b) => { (rule(b).matches[0] ?? assert.fail()).path.value = '(('; }, /RE2/],
    ['weight', (b) => { (rule(b).backendRefs[0] ?? assert.fail()).weight = -1; }, /weight must be an integer/],
    ['filter body', (b) => { rule(b).filters = [{ type: 'URLRewrite' }]; }, /urlRewrite is required/],
    ['unknown filter', (b) => { rule(b).filters = [{ type: 'CORS', cors: {} }]; }, /unknown type "CORS"/],
    ['extra field', (b) => { (rule(b) as Record<string, unknown>).sessionPersistence = {}; }, /sessionPersistence is not a known field/],
    ['retry without attempts', (b) => { rule(b).retry = { codes: [503], backoffMs: 25 }; }, /attempts is required/],
    ['retry code out of range', (b) => { rule(b).retry = { attempts: 1, codes: [200], backoffMs: 25 }; }, /codes\[0\] must be an integer/],
  ];
  for (const [name, mutate, message] of cases) {
    const body = structuredClone(good);
    mutate(body);
    const issues = routeResourceIssues(body, 'body');
    assert.ok(issues.some((i) => message.test(`${i.field} ${i.message}`)), `${name}: ${JSON.stringify(issues)}`);
  }
});
