// Gateway API routes (GAMMA) end to end on a 2-node simulated mesh, with curl in the pods:
// one subtest per mesh conformance feature (named as the Gateway API suite names them),
// the routes from directory manifests, the source agent's HTTP layer carrying them out.
// Pods answer with their name and echo the request they saw (x-weft-path,
// x-weft-request-headers), so a rewrite or a header edit is checked where it lands, and list the
// requests they answered (GET /weft/seen), so a mirrored copy is seen where it lands.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName, type SimStatus } from '../support/sim.ts';
import { eventually, pod } from './mesh-support.ts';

const NS = 'shop';
const GUEST = 'guest';
const VIP = { web: '198.19.0.20', v1: '198.19.0.21', v2: '198.19.0.22', strict: '198.19.0.23' } as const;

function manifests(): object[] {
  const ns = (name: string) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'weft.dev/mesh': 'enabled' } } });
  const workload = (name: string, namespace: string, node: number, labels: Record<string, string>) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels },
    spec: { nodeName: `node-${node}`, containers: [{ name: 'app', image: 'weft/echo', ports: [{ containerPort: 8080 }] }] },
  });
  const svc = (name: string, vip: string, selector: Record<string, string>) => ({
    apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: NS },
    spec: { clusterIP: vip, selector, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  });
  const be = (name: string, extra: object = {}) => ({ name, port: 80, ...extra });
  const prefix = (value: string) => ({ path: { type: 'PathPrefix', value } });
  const redirect = (value: string, requestRedirect: object) => ({ matches: [prefix(value)], filters: [{ type: 'RequestRedirect', requestRedirect }] });
  const mirrorTo = (service: string, share: object = {}) => ({ type: 'RequestMirror', requestMirror: { backendRef: { name: service, port: 80 }, ...share } });
  const headerFilter = (type: 'RequestHeaderModifier' | 'ResponseHeaderModifier', mod: object) => ({ type, [type === 'RequestHeaderModifier' ? 'requestHeaderModifier' : 'responseHeaderModifier']: mod });
  return [
    ns(NS), ns(GUEST),
    workload('web-v1-a', NS, 1, { app: 'web', version: 'v1' }), workload('web-v1-b', NS, 2, { app: 'web', version: 'v1' }),
    workload('web-v2-a', NS, 2, { app: 'web', version: 'v2' }),
    workload('client', NS, 1, { app: 'client' }), workload('guest', GUEST, 1, { app: 'guest' }),
    svc('web', VIP.web, { app: 'web' }), svc('web-v1', VIP.v1, { app: 'web', version: 'v1' }), svc('web-v2', VIP.v2, { app: 'web', version: 'v2' }),
    svc('strict', VIP.strict, { app: 'web' }),
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: NS },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
        rules: [
          { backendRefs: [be('web-v1', { weight: 80 }), be('web-v2', { weight: 20 })] },
          { matches: [{ path: { type: 'Exact', value: '/exact' } }], backendRefs: [be('web-v2')] },
          { matches: [{ headers: [{ name: 'env', value: 'canary' }] }], backendRefs: [be('web-v2')] },
          { matches: [{ queryParams: [{ name: 'pin', value: 'v1' }] }], backendRefs: [be('web-v1')] },
          { matches: [{ ...prefix('/api'), method: 'POST' }], backendRefs: [be('web-v2')] },
          {
            matches: [prefix('/headers')],
            filters: [
              headerFilter('RequestHeaderModifier', { set: [{ name: 'X-Header-Set', value: 'set-overwrites-values' }], add: [{ name: 'X-Header-Add', value: 'add-appends-values' }], remove: ['X-Header-Remove'] }),
              headerFilter('ResponseHeaderModifier', { set: [{ name: 'X-Response-Set', value: 'set' }], remove: ['x-weft-pod'] }),
            ],
            backendRefs: [be('web-v1')],
          },
          { matches: [prefix('/prefix/one')], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/one' } } }], backendRefs: [be('web-v1')] },
          { matches: [prefix('/full')], filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'rewritten.example', path: { type: 'ReplaceFullPath', replaceFullPath: '/replaced' } } }], backendRefs: [be('web-v1')] },
          { matches: [prefix('/mirror')], filters: [mirrorTo('web-v2')], backendRefs: [be('web-v1')] },
          { matches: [prefix('/half-mirror')], filters: [mirrorTo('web-v2', { percent: 50 })], backendRefs: [be('web-v1')] },
          redirect('/host-and-status', { hostname: 'example.org', statusCode: 301 }),
          redirect('/original-prefix', { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/replacement-prefix' } }),
          redirect('/port', { port: 8083 }),
          redirect('/scheme', { scheme: 'https' }),
        ],
      },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'strict', namespace: NS },
      spec: { parentRefs: [{ group: '', kind: 'Service', name: 'strict' }], rules: [{ matches: [{ path: { type: 'Exact', value: '/only' } }], backendRefs: [be('web-v2')] }] },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'guest-view', namespace: GUEST },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'web-v1', namespace: NS }],
        rules: [{ filters: [headerFilter('ResponseHeaderModifier', { set: [{ name: 'X-Header-Set', value: 'set' }] })], backendRefs: [be('web-v1', { namespace: NS })] }],
      },
    },
  ];
}

interface Reply {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
}

/** Splits `curl -sS -D -` output (one response) into status, headers (lowercased) and body. */
function parseReply(text: string): Reply {
  const end = text.indexOf('\r\n\r\n');
  const head = text.slice(0, end < 0 ? text.length : end).split('\r\n');
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
  const headers = new Map<string, string>();
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status, headers, body: end < 0 ? '' : text.slice(end + 4) };
}

test('Gateway API routes in the mesh: matching, weights, header modifiers, rewrite, redirects, consumer routes', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter'])) return;
  const name = uniqueName('rt');
  const dir = mkdtempSync(join(tmpdir(), 'weft-mesh-routes-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'cluster.yaml'), manifests().map((d) => stringify(d)).join('---\n'));
  const s: SimStatus = await simCluster(t, name, ['--nodes', '2', '--manifests', dir]);

  const curl = async (from: string, url: string, args: readonly string[] = []): Promise<Reply> => {
    const r = await inPod(name, from, ['curl', '-sS', '-m', '5', '-D', '-', '-H', 'x-weft-echo: 1', ...args, url], 30_000);
    assert.equal(r.status, 0, `curl ${url}: ${r.stderr}`);
    return parseReply(r.stdout);
  };
  const backend = (r: Reply): string => r.headers.get('x-weft-pod') ?? /hello from (\S+)/.exec(r.body)?.[1] ?? '?';
  const version = (r: Reply): string => /^web-(v\d)-/.exec(backend(r))?.[1] ?? backend(r);
  // Routes reach the agents with the first config push; wait until one is in effect.
  assert.ok(await eventually(async () => ((await curl('client', `http://${VIP.web}/exact`)).status === 200 && version(await curl('client', `http://${VIP.web}/exact`)) === 'v2' ? true : undefined), 30_000),
    'the HTTPRoute took effect');

  await t.test('MeshHTTPRouteWeight: 80/20 within +-5% over 500 requests on one kept-alive connection', async () => {
    const n = 500;
    const urls = Array.from({ length: n }, () => `http://${VIP.web}/weight`);
    const r = await inPod(name, 'client', ['curl', '-sS', '-m', '60', '-w', 'connects=%{num_connects}\\n', ...urls], 90_000);
    assert.equal(r.status, 0, r.stderr);
    const v1 = [...r.stdout.matchAll(/hello from web-v1-/g)].length;
    const v2 = [...r.stdout.matchAll(/hello from web-v2-/g)].length;
    const connects = [...r.stdout.matchAll(/connects=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    t.diagnostic(`v1 ${v1}, v2 ${v2}, connections opened ${connects}`);
    assert.equal(v1 + v2, n);
    assert.equal(connects, 1, 'every request rode the one kept-alive connection');
    assert.ok(Math.abs(v1 / n - 0.8) <= 0.05, `v1 share ${v1 / n}`);
  });

  await t.test('MeshHTTPRouteMatching: Exact path, header and method matches; the default rule otherwise', async () => {
    assert.equal(version(await curl('client', `http://${VIP.web}/exact`)), 'v2');
    assert.equal(version(await curl('client', `http://${VIP.web}/`, ['-H', 'env: canary'])), 'v2');
    assert.equal(version(await curl('client', `http://${VIP.web}/api/x`, ['-X', 'POST', '-d', 'x'])), 'v2');
    const gets = await Promise.all(Array.from({ length: 5 }, () => curl('client', `http://${VIP.web}/api/x`, ['-H', 'env: stable'])));
    assert.ok(gets.every((g) => g.status === 200));
  });

  await t.test('MeshHTTPRouteQueryParamMatching: ?pin=v1 always reaches v1', async () => {
    for (let i = 0; i < 10; i++) assert.equal(version(await curl('client', `http://${VIP.web}/?pin=v1&x=${i}`)), 'v1');
  });

  await t.test('MeshHTTPRouteRequestHeaderModifier and response header modifiers: set, add, remove on both sides', async () => {
    const r = await curl('client', `http://${VIP.web}/headers`, ['-H', 'X-Header-Set: original', '-H', 'X-Header-Add: first', '-H', 'X-Header-Remove: gone']);
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.headers.get('x-weft-request-headers') ?? '{}') as Record<string, string>;
    assert.equal(seen['x-header-set'], 'set-overwrites-values');
    assert.match(seen['x-header-add'] ?? '', /^first, ?add-appends-values$/);
    assert.equal(seen['x-header-remove'], undefined);
    assert.equal(r.headers.get('x-response-set'), 'set');
    assert.equal(r.headers.get('x-weft-pod'), undefined, 'removed from the response');
  });

  await t.test('MeshHTTPRouteRewritePath: ReplacePrefixMatch and ReplaceFullPath with a hostname, query kept', async () => {
    const a = await curl('client', `http://${VIP.web}/prefix/one/two?q=1`);
    assert.equal(a.headers.get('x-weft-path'), '/one/two?q=1');
    const b = await curl('client', `http://${VIP.web}/full/anything`);
    assert.equal(b.headers.get('x-weft-path'), '/replaced');
    assert.equal((JSON.parse(b.headers.get('x-weft-request-headers') ?? '{}') as Record<string, string>).host, 'rewritten.example');
  });

  await t.test('MeshHTTPRouteRedirectHostAndStatus, MeshHTTPRouteRedirectPath, MeshHTTPRouteRedirectPort, MeshHTTPRouteSchemeRedirect', async () => {
    const cases: [string, number, string][] = [
      ['/host-and-status', 301, 'http://example.org/host-and-status'],
      ['/original-prefix/lemon', 302, `http://${VIP.web}/replacement-prefix/lemon`],
      ['/port', 302, `http://${VIP.web}:8083/port`],
      ['/scheme', 302, `https://${VIP.web}/scheme`],
    ];
    for (const [path, status, location] of cases) {
      const r = await curl('client', `http://${VIP.web}${path}`);
      assert.deepEqual([r.status, r.headers.get('location')], [status, location], path);
    }
  });

  // web-v2's one pod lists the requests it answered: mirrored copies, whose answers nobody reads.
  const mirrored = async (prefixPath: string): Promise<{ method: string; path: string; bytes: number }[]> => {
    const r = await inPod(name, 'client', ['curl', '-sS', '-m', '5', `http://${pod(s, 'web-v2-a').ip}:8080/weft/seen`], 30_000);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { method: string; path: string; bytes: number })
      .filter((x) => x.path.startsWith(prefixPath));
  };

  await t.test('HTTPRouteRequestMirror in the mesh: the mirror Service gets a copy of each request, its body included; the answer is the backend\'s', async () => {
    const get = await curl('client', `http://${VIP.web}/mirror/get`);
    assert.deepEqual([get.status, version(get)], [200, 'v1']);
    const post = await curl('client', `http://${VIP.web}/mirror/post`, ['--data-binary', 'a mirrored body']);
    assert.deepEqual([post.status, version(post), post.body], [200, 'v1', 'a mirrored body'], 'the client gets the backend\'s answer');
    const copies = await eventually(async () => {
      const seen = await mirrored('/mirror/');
      return seen.length >= 2 ? seen : undefined;
    }, 10_000);
    assert.deepEqual(copies?.map((x) => [x.method, x.path, x.bytes]), [['GET', '/mirror/get', 0], ['POST', '/mirror/post', 15]]);
  });

  await t.test('HTTPRouteRequestPercentageMirror in the mesh: percent 50 mirrors about half of 100 requests', async () => {
    const urls = Array.from({ length: 100 }, (_, i) => `http://${VIP.web}/half-mirror/${i}`);
    const r = await inPod(name, 'client', ['curl', '-sS', '-m', '60', ...urls], 90_000);
    assert.equal(r.status, 0, r.stderr);
    assert.equal([...r.stdout.matchAll(/hello from web-v1-/g)].length, 100, 'every request answered by web-v1');
    // Settle: copies go out after each answer.
    let last = -1;
    const copies = await eventually(async () => {
      const n = (await mirrored('/half-mirror/')).length;
      const settled = n === last;
      last = n;
      return settled ? n : undefined;
    }, 10_000, 500);
    t.diagnostic(`${copies} of 100 mirrored`);
    assert.ok(copies !== undefined && copies >= 30 && copies <= 70, `${copies} of 100 mirrored at percent 50`);
  });

  await t.test('no rule matches: 404 from the proxy', async () => {
    assert.equal((await curl('client', `http://${VIP.strict}/only`)).status, 200);
    assert.equal((await curl('client', `http://${VIP.strict}/other`)).status, 404);
  });

  await t.test('MeshConsumerRoute: the guest namespace\'s route applies to its callers only', async () => {
    const guest = await curl('guest', `http://${VIP.v1}/`);
    assert.deepEqual([guest.status, guest.headers.get('x-header-set')], [200, 'set']);
    const producer = await curl('client', `http://${VIP.v1}/`);
    assert.deepEqual([producer.status, producer.headers.get('x-header-set')], [200, undefined]);
  });

  await t.test('MeshFrontend: a request to a pod IP takes no route', async () => {
    const target = pod(s, 'web-v1-b');
    const r = await curl('guest', `http://${target.ip}:8080/`);
    assert.deepEqual([r.status, r.headers.get('x-header-set'), backend(r)], [200, undefined, 'web-v1-b']);
  });
});
