// The Kubernetes source in changes mode (what the control plane uses at scale), against the
// local API server: the first delivery holds every object, then each change carries only
// the objects that changed; Pods are cut down to what the mesh reads; a watch that ends
// resumes from its resourceVersion without a relist; a 410 relists and what was missed
// (deletions included) arrives; and the live model fed by the changes equals the batch model.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { kubeAccess } from '../../../../src/control/source/kube-access.ts';
import { KubernetesSource, WATCHED_KINDS } from '../../../../src/control/source/kubernetes.ts';
import type { SourceChange } from '../../../../src/control/source/contract.ts';
import { KubeApiServer } from '../../../../src/sim/kube-api/server.ts';
import { LiveMesh } from '../../../../src/model/live-mesh.ts';
import { loadMesh } from '../../../../src/model/load.ts';
import { nodeResources } from '../../../../src/model/node-slice.ts';
import type { RawObject } from '../../../../src/model/types.ts';

const path = (kind: string): string => (WATCHED_KINDS.find((k) => k.kind === kind) ?? assert.fail(kind)).path;
const [NS, POD, SVC] = [path('Namespace'), path('Pod'), path('Service')];

// A Pod as the API gives it: much the mesh never reads.
const podBody = (name: string, ip: string, app = 'web') => ({
  metadata: { name, namespace: 'shop', labels: { app }, uid: `uid-${name}`, managedFields: [{ manager: 'kubelet', fieldsV1: { 'f:status': {} } }], annotations: { big: 'x'.repeat(500) } },
  spec: { nodeName: 'n1', serviceAccountName: 'web', containers: [{ name: 'app', image: 'x', env: [{ name: 'A', value: 'b' }], ports: [{ containerPort: 8080 }] }], volumes: [{ name: 'v', emptyDir: {} }] },
  status: { podIP: ip, phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }], containerStatuses: [{ name: 'app', ready: true, restartCount: 0 }] },
});

const identity = (o: RawObject): string => {
  const md = o.body.metadata as { namespace?: string; name?: string };
  return `${o.kind}/${md.namespace ?? ''}/${md.name ?? ''}`;
};

async function harness(t: TestContext) {
  const server = new KubeApiServer(WATCHED_KINDS);
  t.after(() => server.close());
  server.upsert(NS, { metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } } });
  for (let i = 0; i < 5; i++) server.upsert(POD, podBody(`web-${i}`, `198.18.1.${10 + i}`));
  server.upsert(SVC, { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '198.19.0.10', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] } });
  server.upsert(SVC, { metadata: { name: 'api', namespace: 'shop' }, spec: { clusterIP: '198.19.0.11', selector: { app: 'api' }, ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] } });
  const url = await server.listen();
  const kc = kubeAccess({ server: url, token: server.token });
  const changes: SourceChange[] = [];
  const held = new Map<string, RawObject>();
  const live = new LiveMesh();
  const waiters: { pred: () => boolean; resolve: () => void }[] = [];
  const source = new KubernetesSource({ access: kc, debounceMs: 10, pageSize: 2, backoff: { initialMs: 20, maxMs: 100 }, syncTimeoutMs: 5000 });
  t.after(() => source.close());
  await source.startChanges((c) => {
    changes.push(c);
    for (const o of c.removed) held.delete(identity(o));
    for (const o of c.upserted) held.set(identity(o), o);
    live.apply(c);
    for (const w of [...waiters]) if (w.pred()) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
  });
  const until = (pred: () => boolean, what: string): Promise<void> => (pred() ? Promise.resolve() : new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no change with ${what} within 5 s`)), 5000);
    waiters.push({ pred, resolve: () => { clearTimeout(timer); resolve(); } });
  }));
  const openWatches = async (): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (server.openWatches < WATCHED_KINDS.length) {
      if (Date.now() > deadline) throw new Error('watches not open');
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { server, changes, held, live, until, openWatches };
}

/** The live model fed by the changes holds what the batch model builds from the same objects. */
function sameAsBatch(h: Awaited<ReturnType<typeof harness>>): void {
  const batch = loadMesh([...h.held.values()]);
  assert.deepEqual(h.live.state.workloads, batch.state.workloads);
  assert.deepEqual(h.live.state.services, batch.state.services);
  for (const n of ['n1', 'n2']) {
    assert.deepEqual([...h.live.slices.resources(n)].map(([k, r]) => [k, r.version]).sort(), [...nodeResources(batch.state, n)].map(([k, r]) => [k, r.version]).sort());
  }
}

test('changes mode: the first delivery is every object (Pods cut down to what the mesh reads), then only what changed', async (t) => {
  const h = await harness(t);
  assert.equal(h.changes.length, 1);
  const first = h.changes[0] ?? assert.fail();
  assert.deepEqual(first.upserted.filter((o) => o.kind === 'Pod').map((o) => (o.body.metadata as { name: string }).name).sort(), ['web-0', 'web-1', 'web-2', 'web-3', 'web-4']);
  assert.deepEqual(first.removed, []);
  const pod = first.upserted.find((o) => o.kind === 'Pod') ?? assert.fail();
  const { resourceVersion, ...md } = pod.body.metadata as Record<string, unknown>;
  assert.ok(typeof resourceVersion === 'string', 'the informer still has the resourceVersion to resume from');
  assert.deepEqual({ ...pod.body, metadata: md }, {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-0', namespace: 'shop', labels: { app: 'web' }, uid: 'uid-web-0' },
    spec: { nodeName: 'n1', serviceAccountName: 'web', containers: [{ name: 'app', image: 'x', ports: [{ containerPort: 8080 }] }] },
    status: { podIP: '198.18.1.10', phase: 'Running' },
  }, 'no managedFields, annotations, env, volumes, conditions or container statuses');
  assert.deepEqual(h.live.problems(), []);
  sameAsBatch(h);

  await h.openWatches();
  h.server.upsert(POD, podBody('web-2', '198.18.1.12', 'api'));
  await h.until(() => h.live.state.endpoints('shop/api', 80).length === 1, 'web-2 moved to api');
  const moved = h.changes.at(-1) ?? assert.fail();
  assert.deepEqual(moved.upserted.map(identity), ['Pod/shop/web-2'], 'only the pod that changed');
  sameAsBatch(h);

  // A status-only update (the kubelet's conditions) changes nothing the mesh reads.
  const generation = h.live.slices.generation;
  const busy = { ...podBody('web-3', '198.18.1.13'), status: { podIP: '198.18.1.13', phase: 'Running', conditions: [{ type: 'Ready', status: 'False' }] } };
  h.server.upsert(POD, busy);
  await h.until(() => h.changes.at(-1)?.upserted.some((o) => identity(o) === 'Pod/shop/web-3') === true, 'the web-3 event');
  assert.equal(h.live.slices.generation, generation, 'no new generation for a status heartbeat');

  h.server.remove(POD, 'shop', 'web-0');
  await h.until(() => h.live.state.workload('shop/web-0') === undefined, 'web-0 gone');
  assert.deepEqual((h.changes.at(-1) ?? assert.fail()).removed.map(identity), ['Pod/shop/web-0']);
  sameAsBatch(h);
});

test('changes mode: a watch that ends resumes from its resourceVersion (no relist); a 410 relists and delivers what was missed', async (t) => {
  const h = await harness(t);
  await h.openWatches();
  const lists = h.server.lists(POD);
  h.server.endWatches();
  h.server.upsert(POD, podBody('web-9', '198.18.1.19'));
  await h.until(() => h.live.state.workload('shop/web-9') !== undefined, 'web-9 after the watch ended');
  assert.equal(h.server.lists(POD), lists, 'resumed from the resourceVersion, without listing again');
  sameAsBatch(h);

  // Changes the source never sees as events (its watch stalled), then the history is gone: 410.
  await h.openWatches();
  h.server.live = false;
  h.server.remove(POD, 'shop', 'web-1');
  h.server.upsert(POD, podBody('web-4', '198.18.1.14', 'api'));
  h.server.compact();
  h.server.live = true;
  h.server.endWatches();
  await h.until(() => h.live.state.workload('shop/web-1') === undefined && h.live.state.endpoints('shop/api', 80).length === 1, 'the missed changes');
  assert.ok(h.server.lists(POD) > lists, 'relisted after 410');
  sameAsBatch(h);
});
