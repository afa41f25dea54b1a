// The server's per-stream push book, against a SnapshotView: the first sync, deltas from the
// view's history, one push in flight at a time with everything since coalesced into the
// next, refusals, parts, and agents too far behind the history.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AgentBook, PlanCache, SharedSyncParts, type PushPart, type RejectedVersions } from '../../../src/control/agent-book.ts';
import type { ControlResource } from '../../../src/control/resource.ts';
import { SnapshotView } from '../../../src/control/resource-view.ts';
import { LiveMesh } from '../../../src/model/live-mesh.ts';
import type { RawObject } from '../../../src/model/types.ts';

type Snap = Record<string, string>; // key -> version (for node n1)

const r = (key: string, version: string): ControlResource => {
  const [type, ...name] = key.split('/');
  return Object.freeze({ type: type, name: name.join('/'), version, body: { v: version } });
};

function view(historyLimit = 100): SnapshotView<Snap> {
  return new SnapshotView<Snap>((snap) => Object.entries(snap).map(([k, v]) => r(k, v)), (node, err) => { throw new Error(`${node}: ${String(err)}`); }, historyLimit);
}

const keys = (p: PushPart | 'resync' | undefined) => (p === undefined || p === 'resync'
  ? p
  : { changed: p.changed.map((x) => `${x.type}/${x.name}@${x.version}`), removed: [...p.removed], more: p.more });

function book(initial: Snap = {}, rejected: RejectedVersions = new Map(), maxBytes = 1 << 20): AgentBook<string> {
  return new AgentBook<string>('n1', new Map(Object.entries(initial)), rejected, maxBytes, () => 100);
}

let nonces = 0;
/** Sends the next part and answers it with an ACK. */
function deliver(b: AgentBook<string>, v: SnapshotView<Snap>): ReturnType<typeof keys> {
  const part = b.next(v);
  if (part === undefined || part === 'resync') return keys(part);
  const nonce = `x${++nonces}`;
  b.sent(nonce, part, 'meta');
  assert.ok(b.ack(nonce) !== undefined);
  return keys(part);
}

test('first sync: a fresh agent gets everything; one that reports its versions gets the difference (an empty first response too)', () => {
  const cases: Array<[string, Snap, Snap, { changed: string[]; removed: string[] }]> = [
    ['empty agent', {}, { 'mesh/config': '1', 'svc/a': '1' }, { changed: ['mesh/config@1', 'svc/a@1'], removed: [] }],
    ['in sync', { 'mesh/config': '1', 'svc/a': '1' }, { 'mesh/config': '1', 'svc/a': '1' }, { changed: [], removed: [] }],
    ['one changed', { 'mesh/config': '1', 'svc/a': '1' }, { 'mesh/config': '1', 'svc/a': '2' }, { changed: ['svc/a@2'], removed: [] }],
    ['one gone, one new', { 'svc/a': '1', 'svc/old': '1' }, { 'svc/a': '1', 'svc/new': '1' }, { changed: ['svc/new@1'], removed: ['svc/old'] }],
  ];
  for (const [name, initial, now, expected] of cases) {
    const v = view();
    v.set(now);
    const b = book(initial);
    assert.deepEqual(deliver(b, v), { ...expected, more: false }, name);
    assert.equal(b.next(v), undefined, `${name}: then nothing until the view moves`);
  }
});

test('one push in flight: changes meanwhile go out as one delta with the newest versions after the ACK', () => {
  const v = view();
  v.set({ 'svc/a': '1', 'svc/b': '1' });
  const b = book();
  const first = b.next(v) as PushPart;
  b.sent('n1', first, 'first');
  v.set({ 'svc/a': '2', 'svc/b': '1' });
  v.set({ 'svc/a': '3', 'svc/b': '1', 'svc/c': '1' });
  v.set({ 'svc/a': '4', 'svc/c': '1' });
  assert.equal(b.next(v), undefined, 'busy until the answer');
  assert.equal(b.pendingCount, 1);
  assert.equal(b.ack('n1')?.meta, 'first');
  assert.equal(b.ack('n1'), undefined, 'a nonce is answered once');
  assert.deepEqual(deliver(b, v), { changed: ['svc/a@4', 'svc/c@1'], removed: ['svc/b'], more: false }, 'svc/a 2 and 3 are never sent');
  assert.deepEqual([...b.acked(v)].sort(), [['svc/a', '4'], ['svc/c', '1']]);
  v.set({ 'svc/a': '5', 'svc/c': '1' });
  v.set({ 'svc/a': '4', 'svc/c': '1' });
  assert.equal(b.next(v), undefined, 'changed and back again: nothing to send');
});

test('NACK: refused versions are kept by the agent and not resent; a newer version is, and the refusal is forgotten', () => {
  const rejected: RejectedVersions = new Map();
  const v = view();
  v.set({ 'svc/a': '1', 'svc/b': '1', 'svc/gone': '1' });
  const b = book({}, rejected);
  deliver(b, v);
  v.set({ 'svc/a': '2', 'svc/b': '2' });
  const part = b.next(v) as PushPart;
  assert.deepEqual(keys(part), { changed: ['svc/a@2', 'svc/b@2'], removed: ['svc/gone'], more: false });
  b.sent('n2', part, 'm');
  const outcome = b.nack('n2', [{ key: 'svc/a', message: 'bad vip' }], '1 refused');
  assert.deepEqual(outcome?.rejected, [{ key: 'svc/a', version: '2', message: 'bad vip' }]);
  assert.equal(outcome?.resync, false);
  assert.deepEqual([...b.acked(v)].sort(), [['svc/a', '1'], ['svc/b', '2']], 'the agent kept svc/a 1');
  v.set({ 'svc/a': '2', 'svc/b': '2', 'svc/c': '1' });
  assert.deepEqual(deliver(b, v), { changed: ['svc/c@1'], removed: [], more: false }, 'not svc/a 2 again');
  v.set({ 'svc/a': '3', 'svc/b': '2', 'svc/c': '1' });
  assert.deepEqual(deliver(b, v), { changed: ['svc/a@3'], removed: [], more: false });
  assert.equal(rejected.size, 0);
});

test('a refused resource that disappears is removed from the agent and forgotten', () => {
  const rejected: RejectedVersions = new Map();
  const v = view();
  v.set({ 'svc/a': '1' });
  const b = book({}, rejected);
  deliver(b, v);
  v.set({ 'svc/a': '2' });
  const part = b.next(v) as PushPart;
  b.sent('n2', part, 'm');
  b.nack('n2', [{ key: 'svc/a', message: 'no' }], 'no');
  v.set({});
  assert.deepEqual(deliver(b, v), { changed: [], removed: ['svc/a'], more: false });
  assert.equal(rejected.size, 0);
});

test('a NACK naming no resource refuses the whole part: its versions stay refused and the stream must resync', () => {
  const rejected: RejectedVersions = new Map();
  const v = view();
  v.set({ 'svc/a': '1', 'svc/old': '1' });
  const b = book({}, rejected);
  deliver(b, v);
  v.set({ 'svc/a': '2' });
  b.sent('n2', b.next(v) as PushPart, 'm');
  const outcome = b.nack('n2', [], 'could not decode');
  assert.equal(outcome?.resync, true);
  assert.deepEqual(rejected.get('svc/a'), { key: 'svc/a', version: '2', message: 'could not decode', kept: '1' });
  // Resubscribing with what it holds: the removal goes out again, the refused version does not.
  const again = book({ 'svc/a': '1', 'svc/old': '1' }, rejected);
  assert.deepEqual(deliver(again, v), { changed: [], removed: ['svc/old'], more: false });
});

test('a big first sync goes in parts of at most maxBytes, removals in the last, and the agent holds its start generation', () => {
  const v = view();
  const snap: Snap = {};
  for (let i = 0; i < 10; i++) snap[`svc/s${i}`] = '1';
  v.set(snap);
  const b = book({ 'svc/old': 'x' }, new Map(), 350); // 100 bytes per resource: 4 per part (the 4th crosses 350)
  const parts = [deliver(b, v), deliver(b, v), deliver(b, v)];
  assert.deepEqual(parts.map((p) => p !== undefined && p !== 'resync' && [p.changed.length, p.removed, p.more]), [[4, [], true], [4, [], true], [2, ['svc/old'], false]]);
  assert.equal(b.synced, true);
  assert.equal(b.next(v), undefined);
});

test('a change made while a first sync is read in parts is sent again afterwards, whatever the agent got', () => {
  const v = view();
  v.set({ 'svc/a': '1', 'svc/b': '1', 'svc/c': '1' });
  const b = book({}, new Map(), 150); // two resources per part
  assert.deepEqual(deliver(b, v), { changed: ['svc/a@1', 'svc/b@1'], removed: [], more: true });
  v.set({ 'svc/a': '2', 'svc/b': '1', 'svc/c': '2' });
  assert.deepEqual(deliver(b, v), { changed: ['svc/c@2'], removed: [], more: false }, 'the rest is read as it is now');
  v.set({ 'svc/a': '2', 'svc/b': '1', 'svc/c': '1' }); // c back to 1: the agent holds 2
  assert.deepEqual(deliver(b, v), { changed: ['svc/a@2', 'svc/c@1'], removed: [], more: false });
});

test('an agent further behind than the history kept must resync', () => {
  const v = view(3);
  v.set({ 'svc/a': '1' });
  const b = book();
  deliver(b, v);
  const part = b.next(v);
  assert.equal(part, undefined);
  for (let i = 2; i < 8; i++) v.set({ 'svc/a': String(i) });
  assert.equal(b.next(v), 'resync');
});

/** A LiveMesh of namespace `shop`: services s0..s{services-1} (selecting app a0..), pods p0..p{pods-1} on n{i % 4}, app a{i % services}. */
function shop(services: number, pods: number) {
  const live = new LiveMesh({ kubernetesSchema: false });
  const raw = (kind: string, body: Record<string, unknown>, doc: number): RawObject => ({ kind, body, source: { file: 'f.yaml', doc } });
  const pod = (i: number, app: string, node = `n${i % 4}`): RawObject => raw('Pod', {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: `p${i}`, namespace: 'shop', labels: { app } },
    spec: { nodeName: node, containers: [{ name: 'c', image: 'x' }] }, status: { podIP: `198.18.0.${10 + i}` },
  }, 10 + i);
  const objects = [raw('Namespace', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } } }, 0)];
  for (let s = 0; s < services; s++) {
    objects.push(raw('Service', { apiVersion: 'v1', kind: 'Service', metadata: { name: `s${s}`, namespace: 'shop' }, spec: { clusterIP: `198.19.0.${1 + s}`, selector: { app: `a${s}` }, ports: [{ port: 80 }] } }, 1 + s));
  }
  for (let i = 0; i < pods; i++) objects.push(pod(i, `a${i % services}`));
  return { live, raw, pod, objects };
}

test('agents given the same changes share one plan and its parts; one that refused something plans its own', () => {
  const { live, pod, objects } = shop(2, 8);
  live.apply({ upserted: objects, removed: [] });
  const plans = new PlanCache();
  const rejected = new Map<string, RejectedVersions>(['n1', 'n2', 'n3'].map((n) => [n, new Map()]));
  const books = ['n1', 'n2', 'n3'].map((n) => new AgentBook<string>(n, new Map(), rejected.get(n) as RejectedVersions, 1 << 20, () => 100, plans));
  for (const b of books) {
    const first = b.next(live.slices) as PushPart;
    b.sent(`${b.node}-1`, first, 'first');
    b.ack(`${b.node}-1`);
  }
  // n3 refused the version of s0's endpoint on n0 it was sent: it keeps the one before.
  rejected.get('n3')?.set('endpoint/shop/s0/80/198.18.0.10', { key: 'endpoint/shop/s0/80/198.18.0.10', version: 'refused', message: 'no', kept: 'older' });
  // Pod 0 (on n0) moves from s0 to s1: the same changes for n1, n2 and n3 (none of their own pods).
  live.apply({ upserted: [pod(0, 'a1')], removed: [] });
  const [p1, p2, p3] = books.map((b) => b.next(live.slices) as PushPart);
  assert.equal(p1, p2, 'n1 and n2 are sent the very same part (one plan, one encoding)');
  assert.deepEqual(p1.changed.map((x) => `${x.type}/${x.name}`), ['endpoint/shop/s1/80/198.18.0.10']);
  assert.deepEqual(p1.removed, ['endpoint/shop/s0/80/198.18.0.10']);
  assert.notEqual(p3, p1, 'n3 has a refusal of its own: its plan is its own');
  assert.deepEqual([p3.changed.map((x) => x.name), p3.removed], [['shop/s1/80/198.18.0.10'], ['endpoint/shop/s0/80/198.18.0.10']], 'the same content: it drops the version it kept');
  assert.equal(rejected.get('n3')?.size, 0, 'the refusal is forgotten once its resource goes');
});

test('observe: agents busy over the same generations share one merged change set and one part; each ends holding exactly the view', () => {
  const { live, pod, objects } = shop(3, 12);
  live.apply({ upserted: objects, removed: [] });
  const plans = new PlanCache();
  const nodes = ['n0', 'n1', 'n2', 'n3'];
  const books = nodes.map((n) => new AgentBook<string>(n, new Map(), new Map(), 1 << 20, () => 100, plans));
  // What each agent holds, applying every part it is sent.
  const held = new Map(nodes.map((n) => [n, new Map<string, string>()]));
  let seq = 0;
  const send = (b: AgentBook<string>): { part: PushPart; nonce: string } | undefined => {
    const part = b.next(live.slices);
    if (part === undefined || part === 'resync') return undefined;
    const nonce = `${b.node}-${++seq}`;
    b.sent(nonce, part, 'm');
    const mine = held.get(b.node) as Map<string, string>;
    for (const r of part.changed) mine.set(`${r.type}/${r.name}`, r.version);
    for (const k of part.removed) mine.delete(k);
    return { part, nonce };
  };
  for (const b of books) b.ack((send(b) as { nonce: string }).nonce);
  const step = (moved: RawObject[]): void => {
    live.apply({ upserted: moved, removed: [] });
    AgentBook.observe(books, live.slices);
    const p0 = send(books[0]); // n0 answers at once, every step
    if (p0 !== undefined) books[0]?.ack(p0.nonce);
  };
  // n1 and n2 are pushed at one generation and stay busy; n3 at the next. Pods 4 and 8 are on n0, pod 3 on n3.
  step([pod(4, 'a2')]);
  const busy = [books[1], books[2]].map((b) => ({ b: b, nonce: (send(b) as { nonce: string }).nonce }));
  step([pod(8, 'a0')]);
  busy.push({ b: books[3], nonce: (send(books[3]) as { nonce: string }).nonce });
  step([pod(4, 'a0'), pod(8, 'a1')]);
  step([pod(3, 'a1')]);
  step([pod(4, 'a1')]);
  for (const { b, nonce } of busy) b.ack(nonce);
  const [p1, p2, p3] = [1, 2, 3].map((i) => send(books[i]) as { part: PushPart; nonce: string });
  assert.equal(p1.part, p2.part, 'n1 and n2 hold the same generation and saw the same changes: one merged set, one plan, one part');
  assert.notEqual(p3.part, p1.part, 'n3 was pushed later, and its own pod moved');
  assert.ok(p3.part.changed.some((r) => r.type === 'workload' && r.name === 'shop/p3'), 'n3 gets its own workload anew');
  for (const [i, p] of [p1, p2, p3].entries()) books[i + 1]?.ack(p.nonce);
  for (const b of books) assert.equal(b.next(live.slices), undefined, `${b.node} is current`);
  for (const n of nodes) {
    const want = new Map([...live.slices.resources(n)].map(([k, r]) => [k, r.version]));
    assert.deepEqual(new Map([...(held.get(n) as Map<string, string>)].sort()), new Map([...want].sort()), `${n} holds exactly the view`);
  }
});

test('a book that catches up by itself, between observes, leaves the change set it shared as it was', () => {
  const v = view();
  v.set({ 'svc/a': '1', 'svc/b': '1' });
  const books = ['x', 'y'].map(() => new AgentBook<string>('n1', new Map(), new Map(), 1 << 20, () => 100, new PlanCache()));
  for (const b of books) {
    b.sent('f', b.next(v) as PushPart, 'm');
    b.ack('f');
  }
  v.set({ 'svc/a': '2', 'svc/b': '1' });
  AgentBook.observe(books, v);
  v.set({ 'svc/a': '2', 'svc/b': '2' });
  AgentBook.observe(books, v);
  v.set({ 'svc/a': '2', 'svc/b': '2', 'svc/c': '1' });
  assert.deepEqual(keys(books[0]?.next(v)), { changed: ['svc/a@2', 'svc/b@2', 'svc/c@1'], removed: [], more: false }, 'x catches up alone');
  v.set({ 'svc/a': '1', 'svc/b': '2', 'svc/c': '1' });
  AgentBook.observe(books, v);
  assert.deepEqual(keys(books[1]?.next(v)), { changed: ['svc/b@2', 'svc/c@1'], removed: [], more: false }, 'y: svc/a is back to what it holds');
});

test('first syncs share the shared entries\' parts (the same objects for every fresh agent), then each node\'s own; each ends holding exactly the view', () => {
  const { live, raw, pod, objects } = shop(3, 12);
  objects.push(pod(40, 'none', 'n5')); // meshed, hosting no endpoint: it hides its own node address
  for (let k = 0; k < 6; k++) objects.push(raw('Node', { apiVersion: 'v1', kind: 'Node', metadata: { name: `n${k}` }, status: { addresses: [{ type: 'InternalIP', address: `198.19.9.${1 + k}` }] } }, 100 + k));
  live.apply({ upserted: objects, removed: [] });
  const size = (): number => 100;
  const plans = new PlanCache();
  const shared = new SharedSyncParts(350, size);
  const held = new Map<string, Map<string, string>>();
  let seq = 0;
  const sync = (b: AgentBook<string>): PushPart[] => {
    const parts: PushPart[] = [];
    const mine = held.get(b.node) ?? new Map<string, string>();
    held.set(b.node, mine);
    for (;;) {
      const part = b.next(live.slices);
      if (part === undefined || part === 'resync') return parts;
      parts.push(part);
      b.sent(`s${++seq}`, part, 'm');
      for (const r of part.changed) mine.set(`${r.type}/${r.name}`, r.version);
      for (const k of part.removed) mine.delete(k);
      b.ack(`s${seq}`);
    }
  };
  const fresh = (n: string): AgentBook<string> => new AgentBook<string>(n, new Map(), new Map(), 350, size, plans, shared);
  const b1 = fresh('n1');
  const b2 = fresh('n2');
  const b5 = fresh('n5');
  const [s1, s2, s5] = [sync(b1), sync(b2), sync(b5)];
  const common = shared.at(live.slices)?.parts ?? [];
  assert.equal(common.length, Math.ceil(live.slices.sharedEntries().size / 4), 'four resources per shared part');
  assert.ok(common.length > 2 && s1.length > common.length);
  assert.ok(common.every((p, i) => p === s1[i] && p === s2[i] && p === s5[i] && p.more), 'n1, n2 and n5 are sent the very same shared parts first (one encoding)');
  assert.notEqual(s1.at(-1), s2.at(-1), 'each node\'s own entries come last');
  assert.deepEqual(s5.at(-1)?.removed, ['node/n5'], 'n5 drops its own node address, sent in a shared part');
  // A change after the parts were cut: a later agent gets the old parts, then the change in its first delta.
  live.apply({ upserted: [pod(4, 'a2')], removed: [] });
  AgentBook.observe([b1, b2, b5], live.slices);
  const b3 = fresh('n3');
  const s3 = sync(b3);
  assert.equal(s3[0], s1[0], 'the parts cut before the change serve n3 too');
  assert.ok(s3.some((p) => p.trigger === 'change'), 'then what changed since they were cut');
  // One that reports what it holds is read for itself.
  const b0 = new AgentBook<string>('n0', new Map([['mesh/config', 'x']]), new Map(), 350, size, plans, shared);
  assert.notEqual(sync(b0)[0], s1[0]);
  for (const b of [b1, b2, b5]) sync(b);
  for (const n of ['n0', 'n1', 'n2', 'n3', 'n5']) {
    const want = [...live.slices.resources(n)].map(([k, r]): [string, string] => [k, r.version]).sort();
    assert.deepEqual([...(held.get(n) ?? [])].sort(), want, `${n} holds exactly the view`);
  }
});

test('a book with more changes than it keeps reads them from the history for its next push, then keeps them again', () => {
  const v = view();
  const all = (version: (i: number) => string): Snap => Object.fromEntries(Array.from({ length: 1_500 }, (_, i) => [`svc/k${i}`, version(i)]));
  v.set(all(() => '1'));
  const b = book();
  deliver(b, v);
  v.set({ ...all(() => '1'), 'svc/extra': '1' });
  const busy = b.next(v) as PushPart;
  b.sent('busy', busy, 'm');
  v.set(all(() => '2')); // 1,501 keys changed: more than a book keeps
  AgentBook.observe([b], v);
  v.set(all((i) => (i === 0 ? '3' : '2')));
  AgentBook.observe([b], v);
  b.ack('busy');
  const part = deliver(b, v);
  assert.ok(part !== undefined && part !== 'resync', 'a part');
  assert.equal(part.changed.length, 1_500);
  assert.ok(part.changed.includes('svc/k0@3') && part.changed.includes('svc/k1@2'), part.changed.slice(0, 3).join());
  assert.deepEqual(part.removed, ['svc/extra']);
  v.set(all((i) => (i === 0 ? '3' : i === 1 ? '4' : '2')));
  AgentBook.observe([b], v);
  assert.deepEqual(deliver(b, v), { changed: ['svc/k1@4'], removed: [], more: false }, 'kept again');
});
