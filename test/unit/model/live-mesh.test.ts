// The live model against the batch one: after every change of a random sequence (pods
// moving, relabelled, gone; services, slices, policies, namespaces, nodes changing; bad
// objects; duplicates across files), LiveMesh must hold exactly what parseObjects +
// buildMeshState + nodeResources compute from the same objects, for every node, and its
// history must give, for any node and any remembered generation, exactly what that node
// held then.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveMesh } from '../../../src/model/live-mesh.ts';
import { parseObjects, type ParsedManifests } from '../../../src/model/manifests.ts';
import { buildMeshState, type MeshState } from '../../../src/model/state.ts';
import { nodeResources, type NodeResource } from '../../../src/model/node-slice.ts';
import type { RawObject } from '../../../src/model/types.ts';

/** mulberry32: a small seeded generator, so a failure names the seed that reproduces it. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NAMESPACES = ['shop', 'legacy', 'weft-system'];
const NODES = ['n1', 'n2', 'n3', 'n4'];
const APPS = ['web', 'db', 'cache'];

function identity(o: RawObject): string {
  const md = o.body.metadata as { namespace?: string; name?: string };
  return `${o.kind}/${md.namespace ?? ''}/${md.name ?? ''}`;
}

class World {
  readonly #r: () => number;
  /** Named ports draw from their own stream, so the rest of each seed's sequence stays as it was. */
  readonly #ports: () => number;
  /** identity (file#doc) -> raw object */
  readonly objects = new Map<string, RawObject>();
  readonly #files = ['a.yaml', 'b.yaml'];
  #doc = 0;

  constructor(r: () => number, ports: () => number) {
    this.#r = r;
    this.#ports = ports;
  }

  #portChance(p: number): boolean {
    return this.#ports() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.#r() * xs.length)];
  }

  chance(p: number): boolean {
    return this.#r() < p;
  }

  int(n: number): number {
    return Math.floor(this.#r() * n);
  }

  /** A random object; some invalid, some sharing a name with others (duplicates), some sharing IPs. */
  object(): { kind: string; body: Record<string, unknown> } {
    const ns = this.pick(NAMESPACES);
    const labels = (): Record<string, string> => {
      const l: Record<string, string> = { app: this.pick(APPS) };
      if (this.chance(0.5)) l.tier = this.pick(['a', 'b']);
      if (this.chance(0.15)) l['weft.dev/mesh'] = this.pick(['enabled', 'disabled']);
      return l;
    };
    switch (this.int(9)) {
      case 8: {
        const kind = this.pick(['DestinationPolicy', 'RateLimitPolicy', 'FaultInjection']);
        const target = { kind: 'Service', name: `svc-${this.int(4)}` };
        const spec = kind === 'DestinationPolicy' ? { targetRef: target, trafficPolicy: { connectionPool: { tcp: { maxConnections: 1 + this.int(9) } } } }
          : kind === 'RateLimitPolicy' ? { ...(this.chance(0.5) ? { targetRef: target } : { selector: { matchLabels: labels() } }), total: { requestsPerSecond: 1 + this.int(9) } }
            : { abort: { httpStatus: 503, percentage: this.int(101) } };
        return { kind, body: { apiVersion: 'weft.dev/v1alpha1', kind, metadata: { name: `tp-${this.int(2)}`, namespace: ns }, spec } };
      }
      case 7: return {
        kind: 'HTTPRoute',
        body: {
          apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: `route-${this.int(2)}`, namespace: ns },
          spec: { parentRefs: [{ group: '', kind: 'Service', name: `svc-${this.int(4)}`, ...(this.chance(0.5) ? { namespace: this.pick(NAMESPACES) } : {}), port: 80 }], rules: [{ ...(this.chance(0.5) ? { filters: [{ type: 'ExtensionRef', extensionRef: { group: 'weft.dev', kind: 'FaultInjection', name: `tp-${this.int(2)}` } }] } : {}), backendRefs: [{ name: `svc-${this.int(4)}`, port: 80 }] }] },
        },
      };
      case 0: return {
        kind: 'Namespace',
        body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: this.chance(0.6) ? { 'weft.dev/mesh': 'enabled' } : {} } },
      };
      case 1: return {
        kind: 'Node',
        body: { apiVersion: 'v1', kind: 'Node', metadata: { name: this.pick(NODES) }, status: { addresses: [{ type: 'InternalIP', address: `198.18.0.${10 + this.int(4)}` }] } },
      };
      case 2: {
        const name = `svc-${this.int(4)}`;
        const selector = this.chance(0.8) ? { app: this.pick(APPS), ...(this.chance(0.3) ? { tier: this.pick(['a', 'b']) } : {}) } : {};
        // Sometimes a named target port, which each pod resolves (or lacks) on its own.
        const http = { name: 'http', port: 80, targetPort: this.#portChance(0.3) ? 'web' : 8080 };
        const ports = this.chance(0.5) ? [http] : [http, { name: 'admin', port: 81, targetPort: 9090 }];
        return {
          kind: 'Service',
          body: { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { clusterIP: `198.19.0.${1 + this.int(6)}`, selector, ports: this.chance(0.05) ? [] : ports } },
        };
      }
      case 3: {
        const endpoints = Array.from({ length: this.int(4) }, () => ({
          addresses: [`198.18.${1 + this.int(2)}.${10 + this.int(6)}`],
          conditions: { ready: this.chance(0.8) },
          ...(this.chance(0.6) ? { nodeName: this.pick(NODES) } : {}),
          ...(this.chance(0.5) ? { targetRef: { kind: 'Pod', name: `pod-${this.int(8)}`, namespace: ns } } : {}),
        }));
        return {
          kind: 'EndpointSlice',
          body: {
            apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
            metadata: { name: `slice-${this.int(3)}`, namespace: ns, labels: { 'kubernetes.io/service-name': `svc-${this.int(4)}` } },
            addressType: 'IPv4', ports: [{ name: this.pick(['http', 'admin']), port: 7000 + this.int(3), protocol: 'TCP' }], endpoints,
          },
        };
      }
      case 4: {
        const action = this.pick(['ALLOW', 'DENY']);
        return {
          kind: 'AuthorizationPolicy',
          body: {
            apiVersion: 'weft.dev/v1alpha1', kind: 'AuthorizationPolicy',
            metadata: { name: `pol-${this.int(3)}`, namespace: ns, annotations: this.chance(0.2) ? { 'weft.dev/dry-run': 'true' } : {} },
            spec: { action, ...(this.chance(0.7) ? { selector: { matchLabels: { app: this.pick(APPS) } } } : {}), rules: [{ from: [{ source: { namespaces: [this.pick(NAMESPACES)] } }] }] },
          },
        };
      }
      default: {
        const node = this.chance(0.9) ? this.pick(NODES) : undefined;
        const ip = this.chance(0.85) ? `198.18.${1 + this.int(2)}.${10 + this.int(6)}` : undefined;
        return {
          kind: 'Pod',
          body: {
            apiVersion: 'v1', kind: 'Pod', metadata: { name: `pod-${this.int(8)}`, namespace: ns, labels: labels() },
            spec: {
              ...(node === undefined ? {} : { nodeName: node }), serviceAccountName: this.pick(['web', 'db']),
              containers: [{ name: 'app', image: 'x', ...(this.#portChance(0.5) ? { ports: [{ name: 'web', containerPort: this.#portChance(0.5) ? 8000 : 8001 }] } : {}) }],
              ...(this.chance(0.05) ? { hostNetwork: true } : {}),
            },
            status: {
              ...(ip === undefined ? {} : { podIP: this.chance(0.03) ? 'not-an-ip' : ip }),
              ...(this.chance(0.05) ? { phase: 'Succeeded' } : { phase: 'Running' }),
            },
          },
        };
      }
    }
  }

  /** One random change: a new object, a changed one (at its position), or one gone. */
  change(): { upserted: RawObject[]; removed: RawObject[] } {
    const ids = [...this.objects.keys()];
    if (ids.length > 0 && this.chance(0.2)) {
      const id = this.pick(ids);
      const gone = this.objects.get(id) as RawObject;
      this.objects.delete(id);
      return { upserted: [], removed: [gone] };
    }
    if (ids.length > 0 && this.chance(0.5)) {
      const id = this.pick(ids);
      const old = this.objects.get(id) as RawObject;
      const o = this.object();
      const raw: RawObject = { kind: o.kind, body: o.body, source: old.source };
      this.objects.set(id, raw);
      // The document at that position now holds this object (maybe another one than before).
      return { upserted: [raw], removed: this.chance(0.5) || identity(raw) !== identity(old) ? [old] : [] };
    }
    const o = this.object();
    const source = { file: this.pick(this.#files), doc: this.#doc++ };
    const raw: RawObject = { kind: o.kind, body: o.body, source };
    this.objects.set(`${source.file}#${source.doc}`, raw);
    return { upserted: [raw], removed: [] };
  }

  /** The objects in source order, as a directory source lists them. */
  ordered(): RawObject[] {
    return [...this.objects.values()].sort((a, b) => (a.source.file !== b.source.file ? (a.source.file < b.source.file ? -1 : 1) : a.source.doc - b.source.doc));
  }
}

function sameState(live: MeshState, batch: MeshState, where: string): void {
  assert.deepEqual(live.workloads, batch.workloads, `${where}: workloads`);
  assert.deepEqual(live.services, batch.services, `${where}: services`);
  assert.deepEqual(live.policies, batch.policies, `${where}: policies`);
  assert.deepEqual(live.routes, batch.routes, `${where}: routes`);
  for (const svc of batch.services) for (const p of svc.ports) {
    const [a, b] = [live.routeTable(svc, p.port), batch.routeTable(svc, p.port)];
    assert.deepEqual([a.producer?.routes, [...a.consumers.keys()]], [b.producer?.routes, [...b.consumers.keys()]], `${where}: routeTable(${svc.key}, ${p.port})`);
  }
  assert.deepEqual(live.nodes(), batch.nodes(), `${where}: nodes()`);
  for (const n of [...NODES, 'elsewhere']) {
    assert.deepEqual(live.workloadsOnNode(n), batch.workloadsOnNode(n), `${where}: workloadsOnNode(${n})`);
    assert.deepEqual(live.node(n), batch.node(n), `${where}: node(${n})`);
    for (const ns of NAMESPACES) for (const sa of ['web', 'db']) {
      assert.equal(live.hasServiceAccountOnNode(n, ns, sa), batch.hasServiceAccountOnNode(n, ns, sa), `${where}: hasServiceAccountOnNode(${n}, ${ns}, ${sa})`);
    }
  }
  for (let a = 1; a <= 2; a++) for (let b = 10; b < 16; b++) {
    const ip = `198.18.${a}.${b}`;
    assert.equal(live.workloadByIp(ip)?.key, batch.workloadByIp(ip)?.key, `${where}: workloadByIp(${ip})`);
  }
  for (let i = 1; i <= 6; i++) for (const port of [80, 81]) {
    const vip = `198.19.0.${i}`;
    assert.deepEqual(live.serviceByVip(vip, port), batch.serviceByVip(vip, port), `${where}: serviceByVip(${vip}:${port})`);
  }
  for (const w of batch.workloads) assert.deepEqual(live.policiesFor(w), batch.policiesFor(w), `${where}: policiesFor(${w.key})`);
}

function versions(m: ReadonlyMap<string, NodeResource>): Map<string, string> {
  return new Map([...m].map(([k, r]) => [k, r.version]));
}

function sortedEntries(m: ReadonlyMap<string, string>): [string, string][] {
  return [...m].sort(([a], [b]) => (a < b ? -1 : 1));
}

for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
  test(`live model equals the batch model after each of 150 random changes (seed ${seed})`, () => {
    const world = new World(rng(seed), rng(seed + 1000));
    const live = new LiveMesh({ historyLimit: 100 });
    /** generation -> node -> key -> version, as the batch model computes it. */
    const held = new Map<number, Map<string, Map<string, string>>>();
    const nodes = [...NODES, 'elsewhere'];
    // As the control plane loads: an object that turned invalid keeps its previous version.
    let previous: ParsedManifests | undefined;
    for (let step = 0; step < 150; step++) {
      const change = world.change();
      live.apply(change);
      const where = `seed ${seed} step ${step}`;
      const batchObjects = parseObjects(world.ordered(), previous === undefined ? {} : { previous });
      previous = batchObjects;
      const batch = buildMeshState(batchObjects);
      sameState(live.state, batch, where);
      assert.deepEqual(
        live.problems().map((p) => `${p.file} ${p.object} ${p.field} ${p.message}`).sort(),
        batchObjects.problems.map((p) => `${p.file} ${p.object} ${p.field} ${p.message}`).sort(),
        `${where}: problems`,
      );
      const now = new Map<string, Map<string, string>>();
      for (const n of nodes) {
        const expected = nodeResources(batch, n);
        const got = live.slices.resources(n);
        assert.deepEqual(sortedEntries(versions(got)), sortedEntries(versions(expected)), `${where}: resources of ${n}`);
        for (const [k, r] of got) assert.deepEqual(r.body, expected.get(k)?.body, `${where}: ${n} ${k} body`);
        now.set(n, versions(got));
      }
      held.set(live.slices.generation, now);
      // The history: what changed since any remembered generation, and what it was then.
      for (const [gen, then] of held) {
        for (const n of nodes) {
          const since = live.slices.changesSince(n, gen);
          if (since === undefined) continue;
          const listed = [...since.keys()];
          assert.deepEqual(listed, [...listed].sort(), `${where}: ${n} changes since generation ${gen} in key order`);
          const was = then.get(n) as Map<string, string>;
          const is = now.get(n) as Map<string, string>;
          for (const k of new Set([...was.keys(), ...is.keys()])) {
            if (since.has(k)) assert.equal(since.get(k)?.version, was.get(k), `${where}: ${n} ${k} at generation ${gen}`);
            else assert.equal(is.get(k), was.get(k), `${where}: ${n} ${k} changed since generation ${gen} but is not listed`);
          }
        }
      }
    }
    assert.ok(live.slices.generation > 50, 'the sequence changed slices often');
    assert.equal(live.slices.changesSince('n1', 0), undefined, 'the oldest generations were forgotten (history limit)');
  });
}

test('a pod relabel touches only its node and the services that select it', () => {
  const live = new LiveMesh();
  const raw = (kind: string, body: Record<string, unknown>, doc: number): RawObject => ({ kind, body, source: { file: 'f.yaml', doc } });
  const pod = (i: number, app: string): RawObject => raw('Pod', {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: `p${i}`, namespace: 'shop', labels: { app } },
    spec: { nodeName: `n${i % 10}`, containers: [{ name: 'c', image: 'x' }] }, status: { podIP: `198.18.${Math.floor(i / 200)}.${1 + (i % 200)}` },
  }, 100 + i);
  const objects: RawObject[] = [raw('Namespace', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } } }, 0)];
  for (let s = 0; s < 50; s++) {
    objects.push(raw('Service', {
      apiVersion: 'v1', kind: 'Service', metadata: { name: `s${s}`, namespace: 'shop' },
      spec: { clusterIP: `198.19.0.${1 + s}`, selector: { app: `a${s}` }, ports: [{ port: 80 }] },
    }, 1 + s));
  }
  for (let i = 0; i < 1000; i++) objects.push(pod(i, `a${i % 50}`));
  live.apply({ upserted: objects, removed: [] });
  const gen = live.slices.generation;
  const update = live.apply({ upserted: [pod(7, 'a8')], removed: [] });
  assert.deepEqual([update.objects, update.workloads, update.services], [1, 1, 2], 'one workload, the two services it left and joined');
  const onItsNode = live.slices.changesSince('n7', gen);
  assert.deepEqual([...(onItsNode?.keys() ?? [])].sort(), ['endpoint/shop/s7/80/198.18.0.8', 'endpoint/shop/s8/80/198.18.0.8', 'workload/shop/p7']);
  const elsewhere = live.slices.changesSince('n3', gen);
  assert.deepEqual([...(elsewhere?.keys() ?? [])].sort(), ['endpoint/shop/s7/80/198.18.0.8', 'endpoint/shop/s8/80/198.18.0.8'], 'peers carry no labels: only its endpoint moves');
  assert.equal(elsewhere?.get('endpoint/shop/s8/80/198.18.0.8'), undefined, 'new in s8');
  assert.equal(live.slices.current('n3', 'endpoint/shop/s7/80/198.18.0.8'), undefined, 'gone from s7');
  assert.equal(live.apply({ upserted: [pod(7, 'a8')], removed: [] }).objects, 0, 'the same object again changes nothing');
});

test('a named target port follows each pod: a pod renumbering or dropping its named port moves or removes its endpoint', () => {
  const live = new LiveMesh();
  const raw = (kind: string, body: Record<string, unknown>, doc: number): RawObject => ({ kind, body, source: { file: 'f.yaml', doc } });
  const pod = (i: number, ports: readonly object[]): RawObject => raw('Pod', {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: `p${i}`, namespace: 'shop', labels: { app: 'web' } },
    spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'x', ports }] }, status: { podIP: `198.18.1.${10 + i}` },
  }, 10 + i);
  live.apply({
    upserted: [
      raw('Namespace', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } } }, 0),
      raw('Service', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '198.19.0.1', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'web' }] } }, 1),
      pod(1, [{ name: 'web', containerPort: 8000 }]),
      pod(2, [{ name: 'web', containerPort: 9000 }]),
    ],
    removed: [],
  });
  const endpoints = (): string[] => live.state.endpoints('shop/web', 80).map((e) => `${e.ip}:${e.port}`);
  assert.deepEqual(endpoints(), ['198.18.1.11:8000', '198.18.1.12:9000'], 'each pod its own port');
  live.apply({ upserted: [pod(1, [{ name: 'web', containerPort: 8001 }])], removed: [] });
  assert.deepEqual(endpoints(), ['198.18.1.11:8001', '198.18.1.12:9000'], 'renumbered');
  live.apply({ upserted: [pod(2, [{ containerPort: 9000 }])], removed: [] });
  assert.deepEqual(endpoints(), ['198.18.1.11:8001'], 'a pod without the name is no endpoint');
});
