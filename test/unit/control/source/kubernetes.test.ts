import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { kubeAccess } from '../../../../src/control/source/kube-access.ts';
import { KubernetesSource, WATCHED_KINDS, type KubernetesSourceOptions } from '../../../../src/control/source/kubernetes.ts';
import { SourceErrors } from '../../../../src/control/source/errors.ts';
import { isWeftError } from '../../../../src/core/errors.ts';
import { loadMesh } from '../../../../src/model/load.ts';
import type { RawObject } from '../../../../src/model/types.ts';
import type { ManifestProblem } from '../../../../src/model/manifests.ts';
import { KubeApiServer as FakeApiServer } from '../../../../src/sim/kube-api/server.ts';
import { kubernetesStatusPut, RouteStatusWriter } from '../../../../src/control/route-status.ts';
import { routeStatuses } from '../../../../src/model/route-check.ts';
import { silentLogger } from '../../../../src/control/logger.ts';

const [NS, POD, SVC, SA, SLICE, POLICY, NODE] = WATCHED_KINDS.map((k) => k.path) as [string, string, string, string, string, string, string];
const POLICY_KIND = WATCHED_KINDS[5] ?? assert.fail();

interface Snap { readonly objects: readonly RawObject[]; readonly problems: readonly ManifestProblem[] }

const podBody = (name: string, ip: string, labels: Record<string, string> = { app: 'web' }) => ({
  metadata: { name, namespace: 'shop', labels }, spec: { nodeName: 'n1', serviceAccountName: 'web', containers: [{ name: 'app', image: 'x' }] },
  status: { podIP: ip, phase: 'Running' },
});

// As a kubelet reports it: the mesh reads name, labels and addresses, nothing else.
const nodeBody = (name: string, ip: string, heartbeat = '2025-01-01T00:00:00Z') => ({
  metadata: { name, labels: { 'kubernetes.io/hostname': name }, managedFields: [{ manager: 'kubelet' }] },
  spec: { podCIDR: '198.18.1.0/24' },
  status: {
    addresses: [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }],
    conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: heartbeat }],
    images: [{ names: ['weft/echo:latest'], sizeBytes: 1234 }],
  },
});

function seed(server: FakeApiServer, pods = 5, policies = true): void {
  server.upsert(NS, { metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } } });
  server.upsert(NS, { metadata: { name: 'kube-system' } });
  server.upsert(SA, { metadata: { name: 'web', namespace: 'shop' } });
  for (let i = 0; i < pods; i++) server.upsert(POD, podBody(`web-${i}`, `198.18.1.${10 + i}`));
  server.upsert(SVC, { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '198.19.0.10', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] } });
  server.upsert(SVC, { metadata: { name: 'web-headless', namespace: 'shop' }, spec: { clusterIP: 'None', selector: { app: 'web' }, ports: [{ port: 80 }] } });
  server.upsert(SLICE, {
    metadata: { name: 'web-x', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4',
    ports: [{ port: 8080, protocol: 'TCP' }], endpoints: [{ addresses: ['198.18.1.10'], conditions: { ready: true }, nodeName: 'n1' }],
  });
  server.upsert(NODE, nodeBody('n1', '198.18.0.11'));
  if (policies) server.upsert(POLICY, { metadata: { name: 'allow-web', namespace: 'shop' }, spec: { rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] } });
}

const names = (s: Snap, kind: string) => s.objects.filter((o) => o.kind === kind).map((o) => (o.body.metadata as { name: string }).name);

async function harness(t: TestContext, opts: { seedPods?: number; serverKinds?: typeof WATCHED_KINDS; source?: Partial<KubernetesSourceOptions>; prepare?: (s: FakeApiServer) => void } = {}) {
  const served = opts.serverKinds ?? WATCHED_KINDS;
  const server = new FakeApiServer(served);
  t.after(() => server.close());
  seed(server, opts.seedPods, served.includes(POLICY_KIND));
  opts.prepare?.(server);
  const url = await server.listen();
  const kc = kubeAccess({ server: url, token: server.token });
  const snaps: Snap[] = [];
  const waiters: { pred: (s: Snap) => boolean; resolve: (s: Snap) => void }[] = [];
  const source = new KubernetesSource({ access: kc, debounceMs: 10, pageSize: 2, backoff: { initialMs: 20, maxMs: 100 }, syncTimeoutMs: 5000, ...opts.source });
  t.after(() => source.close());
  const started = source.start((objects, problems) => {
    const s = { objects, problems };
    snaps.push(s);
    for (const w of [...waiters]) if (w.pred(s)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(s); }
  });
  const next = (pred: (s: Snap) => boolean, what: string): Promise<Snap> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no snapshot with ${what} within 5 s`)), 5000);
    waiters.push({ pred, resolve: (s) => { clearTimeout(timer); resolve(s); } });
  });
  return { server, source, snaps, next, started, kc };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('lists every kind page by page, then start resolves with one complete snapshot the model accepts', async (t) => {
  const h = await harness(t);
  await h.started;
  assert.equal(h.snaps.length, 1);
  const s = h.snaps[0] ?? assert.fail();
  assert.deepEqual(names(s, 'Pod'), ['web-0', 'web-1', 'web-2', 'web-3', 'web-4']);
  assert.deepEqual(names(s, 'Namespace'), ['kube-system', 'shop']);
  assert.deepEqual(names(s, 'Service'), ['web'], 'the headless service is left out');
  assert.deepEqual(names(s, 'AuthorizationPolicy'), ['allow-web']);
  assert.deepEqual(names(s, 'Node'), ['n1']);
  assert.equal(h.server.lists(NODE), 1);
  assert.deepEqual(s.problems, []);
  // Five pods in pages of two: three list requests, following continue tokens.
  assert.equal(h.server.lists(POD), 3);
  assert.ok(h.server.requests.some((r) => r.path === POD && r.query.continue !== undefined));
  // Every watch resumes from the list's resourceVersion and asks for bookmarks.
  for (const w of h.server.watchesOf(POD)) assert.equal(w.query.allowWatchBookmarks, 'true');
  const loaded = loadMesh(s.objects);
  assert.deepEqual(loaded.problems, []);
  assert.equal(loaded.state.serviceByVip('198.19.0.10', 80)?.service.endpointSource, 'EndpointSlice');
  assert.equal(loaded.state.workloadByIp('198.18.1.12')?.enrolled, true);
  assert.equal(loaded.state.policies.length, 1);
  assert.equal(loaded.state.nodeAddress('n1'), '198.18.0.11');
  assert.equal(loaded.state.nodeAddress(loaded.state.workloadByIp('198.18.1.12')?.node ?? ''), '198.18.0.11');
});

test('Nodes: snapshots carry only name, labels and addresses; status heartbeats make no snapshot, an address change does', async (t) => {
  const h = await harness(t);
  await h.started;
  const node = h.snaps[0]?.objects.find((o) => o.kind === 'Node') ?? assert.fail();
  assert.deepEqual(node.body, {
    apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1', labels: { 'kubernetes.io/hostname': 'n1' } },
    status: { addresses: [{ type: 'InternalIP', address: '198.18.0.11' }, { type: 'Hostname', address: 'n1' }] },
  });
  await until(() => h.server.openWatches === WATCHED_KINDS.length, 'all watches open');
  const before = h.snaps.length;
  h.server.upsert(NODE, nodeBody('n1', '198.18.0.11', '2025-01-01T00:05:00Z'));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(h.snaps.length, before, 'a heartbeat is not a change to the mesh');
  h.server.upsert(NODE, nodeBody('n1', '198.18.0.21', '2025-01-01T00:10:00Z'));
  const moved = await h.next((s) => loadMesh(s.objects).state.nodeAddress('n1') === '198.18.0.21', 'n1 at its new address');
  assert.equal(h.snaps.length, before + 1);
  h.server.upsert(NODE, nodeBody('n2', '198.18.0.12'));
  await h.next((s) => names(s, 'Node').join() === 'n1,n2', 'n2 added');
  h.server.remove(NODE, '', 'n1');
  const gone = await h.next((s) => names(s, 'Node').join() === 'n2', 'n1 deleted');
  assert.equal(loadMesh(gone.objects).state.nodeAddress('n1'), undefined);
  assert.deepEqual(loadMesh(moved.objects).problems, []);
  // Back at the old address after deletion: seen as new, not as an unchanged update.
  h.server.upsert(NODE, nodeBody('n1', '198.18.0.21'));
  await h.next((s) => names(s, 'Node').join() === 'n1,n2', 'n1 back');
});

test('watch events (add, modify, delete) become new snapshots', async (t) => {
  const h = await harness(t);
  await h.started;
  h.server.upsert(POD, podBody('web-9', '198.18.1.99'));
  await h.next((s) => names(s, 'Pod').includes('web-9'), 'web-9 added');
  h.server.upsert(SVC, { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '198.19.0.10', selector: { app: 'web' }, ports: [{ port: 81 }] } });
  const mod = await h.next((s) => JSON.stringify(s.objects.find((o) => o.kind === 'Service')?.body).includes('"port":81'), 'service modified');
  assert.equal(names(mod, 'Service').length, 1);
  h.server.remove(NS, '', 'kube-system');
  await h.next((s) => names(s, 'Namespace').join() === 'shop', 'namespace deleted');
  assert.equal(h.server.lists(POD), 3, 'no relist while the watch is healthy');
});

test('a bookmark moves the resourceVersion a reconnecting watch resumes from, without a relist', async (t) => {
  const h = await harness(t);
  await h.started;
  await until(() => h.server.openWatches === WATCHED_KINDS.length, 'all watches open');
  // Changes to other kinds move the global resourceVersion; pods see them only through the bookmark.
  h.server.upsert(NS, { metadata: { name: 'later' } });
  await h.next((s) => names(s, 'Namespace').includes('later'), 'namespace later');
  const bookmarked = String(h.server.resourceVersion);
  const before = h.snaps.length;
  h.server.bookmark();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.snaps.length, before, 'a bookmark is not a change');
  h.server.endWatches();
  await until(() => h.server.watchesOf(POD).length >= 2, 'the pod watch to reconnect');
  assert.equal(h.server.watchesOf(POD).at(-1)?.query.resourceVersion, bookmarked);
  assert.equal(h.server.lists(POD), 3);
});

for (const mode of ['ERROR event', 'HTTP status'] as const) {
  test(`410 Gone (${mode}) makes the informer relist, and changes missed meanwhile arrive, deletions included`, async (t) => {
    const h = await harness(t);
    await h.started;
    await until(() => h.server.openWatches === WATCHED_KINDS.length, 'all watches open');
    h.server.goneAsHttpStatus = mode === 'HTTP status';
    h.server.live = false; // the stream stalls: these changes are never pushed
    h.server.remove(POD, 'shop', 'web-0');
    h.server.upsert(POD, podBody('web-new', '198.18.1.50'));
    h.server.compact();
    h.server.live = true;
    const lists = h.server.lists(POD);
    h.server.endWatches();
    const s = await h.next((x) => names(x, 'Pod').includes('web-new') && !names(x, 'Pod').includes('web-0'), 'relisted pods');
    assert.deepEqual(names(s, 'Pod'), ['web-1', 'web-2', 'web-3', 'web-4', 'web-new']);
    assert.ok(h.server.lists(POD) > lists, 'relisted');
  });
}

test('failed lists are retried with backoff; start waits for a complete first list', async (t) => {
  const h = await harness(t, { prepare: (s) => s.fail(POD, 500, 3) });
  await h.started;
  assert.deepEqual(names(h.snaps[0] ?? assert.fail(), 'Pod').length, 5);
  assert.equal(h.server.requests.filter((r) => r.path === POD && !r.watch && r.query.continue === undefined).length, 4, '3 failures, then success');
});

test('a broken watch is restarted and catches up', async (t) => {
  const h = await harness(t);
  await h.started;
  await until(() => h.server.openWatches === WATCHED_KINDS.length, 'all watches open');
  h.server.fail(POD, 500, 2); // the next two watch attempts fail outright
  h.server.endWatches();
  h.server.upsert(POD, podBody('web-late', '198.18.1.60'));
  await h.next((s) => names(s, 'Pod').includes('web-late'), 'web-late after restart');
});

test('a kind the API does not serve (CRD not installed) is a problem, not a hang, and is picked up once served', async (t) => {
  const kinds = WATCHED_KINDS.filter((k) => k.kind !== 'AuthorizationPolicy');
  const h = await harness(t, { serverKinds: kinds });
  await h.started;
  const first = h.snaps[0] ?? assert.fail();
  assert.equal(first.problems.length, 1);
  assert.match(first.problems[0]?.message ?? '', /HTTP 404.*AuthorizationPolicy CustomResourceDefinition/);
  assert.equal(names(first, 'Pod').length, 5, 'other kinds still arrive');
  h.server.serve(POLICY_KIND);
  h.server.upsert(POLICY, { metadata: { name: 'later', namespace: 'shop' }, spec: {} });
  const s = await h.next((x) => x.problems.length === 0 && names(x, 'AuthorizationPolicy').includes('later'), 'policy once the CRD exists');
  assert.deepEqual(names(s, 'AuthorizationPolicy'), ['later']);
});

test('start gives up after syncTimeoutMs when a kind never lists', async (t) => {
  const h = await harness(t, { prepare: (s) => s.fail(SVC, 503, 1_000_000), source: { syncTimeoutMs: 300 } });
  await assert.rejects(h.started, (e: unknown) => isWeftError(e, SourceErrors.SYNC_TIMEOUT) && /Service/.test(e.message));
  await until(() => h.server.openWatches === 0, 'watches closed after the failed start');
});

test('close ends every watch, is idempotent, and no snapshot follows it', async (t) => {
  const h = await harness(t);
  await h.started;
  await until(() => h.server.openWatches === WATCHED_KINDS.length, 'all watches open');
  await h.source.close();
  await h.source.close();
  await until(() => h.server.openWatches === 0, 'watches closed');
  const count = h.snaps.length;
  const requests = h.server.requests.length;
  h.server.upsert(POD, podBody('after', '198.18.1.70'));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(h.snaps.length, count);
  assert.equal(h.server.requests.length, requests, 'no reconnect after close');
  await assert.rejects(h.source.start(() => {}), (e: unknown) => isWeftError(e, SourceErrors.BAD_STATE));
});

const ROUTE_PATH = WATCHED_KINDS.find((k) => k.kind === 'HTTPRoute')?.path ?? assert.fail();
const GRPC_ROUTE_PATH = WATCHED_KINDS.find((k) => k.kind === 'GRPCRoute')?.path ?? assert.fail();
const OTHER_CONTROLLER = { parentRef: { name: 'public-gw' }, controllerName: 'example.com/gateway', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: '', lastTransitionTime: '2024-01-01T00:00:00Z' }] };

function httpRoute(name: string, backend: string, status: object = {}): Record<string, unknown> {
  return {
    metadata: { name, namespace: 'shop', generation: 3 },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }, { name: 'public-gw' }], rules: [{ backendRefs: [{ name: backend, port: 80 }] }] },
    status,
  };
}

test('HTTPRoutes and GRPCRoutes are watched; their status is written back through the status subresource, other controllers kept', async (t) => {
  const h = await harness(t, {
    prepare: (s) => {
      s.upsert(ROUTE_PATH, httpRoute('canary', 'web', { parents: [OTHER_CONTROLLER] }));
      s.upsert(ROUTE_PATH, httpRoute('broken', 'nope'));
      s.upsert(GRPC_ROUTE_PATH, { metadata: { name: 'rpc', namespace: 'shop' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'ghost' }] } });
    },
  });
  await h.started;
  const first = h.snaps[0] ?? assert.fail();
  assert.deepEqual(names(first, 'HTTPRoute'), ['broken', 'canary']);
  assert.equal(first.objects.find((o) => o.kind === 'HTTPRoute')?.body.status, undefined, 'snapshots leave status out');
  const loaded = loadMesh(first.objects);
  assert.deepEqual(loaded.problems, []);
  assert.equal(loaded.state.routes.length, 3);
  const routes = ['canary', 'broken'];
  const statusOf = (name: string) => (h.server.get(ROUTE_PATH, 'shop', name)?.status ?? {}) as { parents?: Record<string, unknown>[] };
  const writer = new RouteStatusWriter({ objects: h.source, put: kubernetesStatusPut(h.kc), log: silentLogger, retryMs: 20, now: () => new Date('2025-06-01T00:00:00Z') });
  t.after(() => writer.close());
  const before = h.snaps.length;
  writer.update(routeStatuses(loaded.state));
  await writer.settled();
  const canary = statusOf('canary').parents ?? [];
  assert.deepEqual(canary[0], OTHER_CONTROLLER, 'the other controller\'s entry is kept as it was');
  assert.deepEqual(canary[1], {
    parentRef: { group: '', kind: 'Service', namespace: 'shop', name: 'web', port: 80 }, controllerName: 'weft.dev/mesh',
    conditions: [
      { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'attached to shop/web port 80', lastTransitionTime: '2025-06-01T00:00:00.000Z', observedGeneration: 3 },
      { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'every backend is a Service port', lastTransitionTime: '2025-06-01T00:00:00.000Z', observedGeneration: 3 },
    ],
  });
  const broken = statusOf('broken').parents?.[0]?.conditions as Record<string, unknown>[];
  assert.deepEqual(broken.map((c) => `${String(c.type)}=${String(c.status)}/${String(c.reason)}`), ['Accepted=True/Accepted', 'ResolvedRefs=False/BackendNotFound']);
  const rpc = (h.server.get(GRPC_ROUTE_PATH, 'shop', 'rpc')?.status ?? {}) as { parents?: { conditions: { reason: string; message: string }[] }[] };
  assert.deepEqual(rpc.parents?.[0]?.conditions[0], { type: 'Accepted', status: 'False', reason: 'NoMatchingParent', message: 'Service shop/ghost does not exist', lastTransitionTime: '2025-06-01T00:00:00.000Z' });
  const puts = () => h.server.requests.filter((r) => r.method === 'PUT' && r.path.endsWith('/status')).length;
  assert.equal(puts(), 3);
  // The watch brings the written status back; nothing to write again, and no snapshot for it.
  await until(() => routes.every((n) => (h.source.object('HTTPRoute', 'shop', n)?.status as { parents?: unknown[] } | undefined)?.parents?.length !== undefined), 'statuses watched back');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.snaps.length, before, 'a status write makes no snapshot');
  writer.update(routeStatuses(loaded.state));
  await writer.settled();
  assert.equal(puts(), 3, 'unchanged status is not written again');

  // Someone else writes meanwhile: our stale copy conflicts (409), the retry starts from the fresh one.
  const stale = h.source.object('HTTPRoute', 'shop', 'broken') ?? assert.fail();
  h.server.upsert(ROUTE_PATH, { ...httpRoute('broken', 'web'), status: { parents: [OTHER_CONTROLLER] } });
  const fixed = await h.next((s) => loadMesh(s.objects).state.routes.find((r) => r.name === 'broken')?.rules[0]?.backendRefs[0]?.name === 'web', 'broken fixed');
  let served = 0;
  const conflicted = new RouteStatusWriter({
    objects: { object: (kind, ns, name) => (name === 'broken' && served++ === 0 ? stale : h.source.object(kind, ns, name)) },
    put: kubernetesStatusPut(h.kc), log: silentLogger, retryMs: 20,
  });
  t.after(() => conflicted.close());
  conflicted.update(routeStatuses(loadMesh(fixed.objects).state));
  await until(() => (statusOf('broken').parents ?? []).some((p) => p.controllerName === 'weft.dev/mesh'
    && (p.conditions as { type: string; status: string }[]).every((c) => c.status === 'True')), 'broken resolved after the conflict');
  assert.ok(h.server.requests.some((r) => r.path.endsWith('/httproutes/broken/status') && r.status === 409), 'the stale write was refused');
  assert.deepEqual(statusOf('broken').parents?.[0], OTHER_CONTROLLER);
});

test('a cluster without the Gateway API CRDs: routes count as none, with no problem reported', async (t) => {
  const h = await harness(t, { serverKinds: WATCHED_KINDS.filter((k) => k.kind !== 'HTTPRoute' && k.kind !== 'GRPCRoute') });
  await h.started;
  assert.deepEqual(h.snaps[0]?.problems, []);
  assert.deepEqual(names(h.snaps[0] ?? assert.fail(), 'HTTPRoute'), []);
});
