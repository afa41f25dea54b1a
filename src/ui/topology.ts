// The topology graph, a pure function of the mesh state and the traffic rates: workloads and
// services as nodes grouped by namespace, edges with connection and byte rates, request and
// error rates (HTTP, once reported), p99 duration, and each edge's transport security.
// Conventions follow Kiali's: source -> service -> workload, a lock for mutual TLS, colour by
// health (error share: degraded from 0.1 %, failing from 20 %).

import type { MeshService, Workload } from '../model/types.ts';
import { histogramQuantile, sumBy, type MeshRates, type Rate } from './mesh-rates.ts';
import type { Labels } from './samples.ts';

/** What the topology reads of the mesh state (MeshState fits). */
export interface TopologyState {
  readonly workloads: readonly Workload[];
  readonly services: readonly MeshService[];
}

export type Security = 'mutual_tls' | 'none' | 'mixed' | 'unknown';
export type Health = 'healthy' | 'degraded' | 'failing' | 'idle';

export interface TopologyNode {
  /** `namespace:NS`, `workload:NS/NAME`, `service:HOST`, or `unknown`. */
  readonly id: string;
  readonly kind: 'namespace' | 'workload' | 'service' | 'unknown';
  readonly name: string;
  readonly namespace?: string;
  /** The namespace node it is drawn inside. */
  readonly parent?: string;
  readonly enrolled?: boolean;
  readonly node?: string;
  readonly identity?: string;
}

export interface TopologyEdge {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly protocol: 'tcp' | 'http';
  readonly security: Security;
  /** Who reported it: the source agent, or the destination agent (traffic no source agent saw). */
  readonly reporter: 'source' | 'destination';
  readonly connectionsPerSecond: number;
  /** Connections opened since the agents started (direct source only). */
  readonly connections: number | undefined;
  readonly bytesPerSecond: number;
  readonly requestsPerSecond: number;
  /** Share (0..1) of requests answered 5xx, or of connections that ended with a response flag. */
  readonly errorRate: number;
  /** p99 request latency (HTTP) or connection duration (TCP), in ms; undefined without data. */
  readonly p99Ms: number | undefined;
  readonly health: Health;
  /** Plaintext into a workload in the mesh that did not come through a source agent. */
  readonly plaintextIntoEnrolled: boolean;
  /** Plaintext delivered by the source agent to a pod on its own node (never crosses the network). */
  readonly nodeLocal: boolean;
}

export interface Topology {
  readonly nodes: readonly TopologyNode[];
  readonly edges: readonly TopologyEdge[];
}

const UNKNOWN = 'unknown';
const FLOW_LABELS = ['reporter', 'source_workload', 'source_workload_namespace', 'destination_service', 'destination_workload', 'destination_workload_namespace', 'connection_security_policy'] as const;

export function healthOf(errorRate: number, active: boolean): Health {
  if (!active) return 'idle';
  if (errorRate >= 0.2) return 'failing';
  if (errorRate >= 0.001) return 'degraded';
  return 'healthy';
}

function flowKey(l: Labels): string {
  return FLOW_LABELS.map((k) => l[k] ?? '').join('\u0001');
}

/** Rates summed over the series of a flow or an edge. */
interface Counts {
  opened: number;
  /** Connections since the agents started, when the source knows it. */
  total: number | undefined;
  bytes: number;
  closed: number;
  closedWithFlags: number;
  requests: number;
  errors: number;
}

const noCounts = (): Counts => ({ opened: 0, total: undefined, bytes: 0, closed: 0, closedWithFlags: 0, requests: 0, errors: 0 });

function addCounts(into: Counts, from: Counts): void {
  into.opened += from.opened;
  if (from.total !== undefined) into.total = (into.total ?? 0) + from.total;
  into.bytes += from.bytes;
  into.closed += from.closed;
  into.closedWithFlags += from.closedWithFlags;
  into.requests += from.requests;
  into.errors += from.errors;
}

interface Flow extends Counts {
  readonly labels: Labels;
  durationBuckets: { le: number; rate: number }[];
  requestBuckets: { le: number; rate: number }[];
}

/** Traffic the graph shows: what source agents saw, plus plaintext only a destination agent saw. */
function shown(l: Labels): boolean {
  return l.reporter === 'source' || (l.reporter === 'destination' && l.connection_security_policy === 'none');
}

function flows(rates: MeshRates): Flow[] {
  const byKey = new Map<string, Flow>();
  const flow = (l: Labels): Flow | undefined => {
    if (!shown(l)) return undefined;
    const key = flowKey(l);
    let f = byKey.get(key);
    if (f === undefined) {
      f = { labels: Object.fromEntries(FLOW_LABELS.map((k) => [k, l[k] ?? UNKNOWN])), ...noCounts(), durationBuckets: [], requestBuckets: [] };
      byKey.set(key, f);
    }
    return f;
  };
  for (const r of sumBy(rates.opened, FLOW_LABELS)) {
    const f = flow(r.labels);
    if (f === undefined) continue;
    f.opened += r.rate;
    if (r.total !== undefined) f.total = (f.total ?? 0) + r.total;
  }
  for (const r of sumBy(rates.bytes, FLOW_LABELS)) {
    const f = flow(r.labels);
    if (f !== undefined) f.bytes += r.rate;
  }
  for (const r of rates.closed) {
    const f = flow(r.labels);
    if (f === undefined) continue;
    f.closed += r.rate;
    if ((r.labels.response_flags ?? '-') !== '-') f.closedWithFlags += r.rate;
  }
  for (const r of rates.requests) {
    const f = flow(r.labels);
    if (f === undefined) continue;
    f.requests += r.rate;
    if (/^5/.test(r.labels.response_code ?? '')) f.errors += r.rate;
  }
  addBuckets(rates.durationBuckets, byKey, (f) => f.durationBuckets, 1000);
  addBuckets(rates.requestDurationBuckets, byKey, (f) => f.requestBuckets, 1);
  return [...byKey.values()];
}

/** Duration buckets carry no security label: they go to every flow of the same workloads. */
function addBuckets(rates: readonly Rate[], byKey: ReadonlyMap<string, Flow>, into: (f: Flow) => { le: number; rate: number }[], toMs: number): void {
  const pairKey = (l: Labels): string => ['reporter', 'source_workload', 'source_workload_namespace', 'destination_service', 'destination_workload', 'destination_workload_namespace'].map((k) => l[k] ?? UNKNOWN).join('\u0001');
  const buckets = new Map<string, Map<number, number>>();
  for (const r of rates) {
    const le = r.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(r.labels.le);
    if (Number.isNaN(le)) continue;
    const key = pairKey(r.labels);
    let m = buckets.get(key);
    if (m === undefined) buckets.set(key, (m = new Map<number, number>()));
    m.set(le * toMs, (m.get(le * toMs) ?? 0) + r.rate);
  }
  for (const f of byKey.values()) {
    const m = buckets.get(pairKey(f.labels));
    if (m !== undefined) into(f).push(...[...m].map(([le, rate]) => ({ le, rate })));
  }
}

function workloadId(ns: string | undefined, name: string | undefined): string {
  return ns === undefined || name === undefined || ns === UNKNOWN || name === UNKNOWN ? UNKNOWN : `workload:${ns}/${name}`;
}

interface EdgeSum extends Counts {
  from: string;
  to: string;
  reporter: 'source' | 'destination';
  securities: Set<string>;
  buckets: { le: number; rate: number }[];
  http: boolean;
  plaintextIntoEnrolled: boolean;
  nodeLocal: boolean;
}

export function topology(state: TopologyState, rates: MeshRates): Topology {
  const nodes = new Map<string, TopologyNode>();
  const namespaceNode = (ns: string): string => {
    const id = `namespace:${ns}`;
    if (!nodes.has(id)) nodes.set(id, { id, kind: 'namespace', name: ns });
    return id;
  };
  const workloads = new Map(state.workloads.map((w) => [`workload:${w.namespace}/${w.name}`, w]));
  for (const w of state.workloads) {
    nodes.set(`workload:${w.namespace}/${w.name}`, {
      id: `workload:${w.namespace}/${w.name}`, kind: 'workload', name: w.name, namespace: w.namespace,
      parent: namespaceNode(w.namespace), enrolled: w.enrolled, ...(w.node === undefined ? {} : { node: w.node }), identity: w.identity,
    });
  }
  for (const s of state.services) {
    const host = `${s.name}.${s.namespace}.svc.cluster.local`;
    nodes.set(`service:${host}`, { id: `service:${host}`, kind: 'service', name: s.name, namespace: s.namespace, parent: namespaceNode(s.namespace) });
  }
  const ensure = (id: string, l: Labels, side: 'source' | 'destination'): void => {
    if (nodes.has(id)) return;
    if (id === UNKNOWN) nodes.set(id, { id, kind: 'unknown', name: 'unknown (outside the mesh)' });
    else if (id.startsWith('service:')) nodes.set(id, { id, kind: 'service', name: id.slice('service:'.length) });
    else {
      const ns = l[`${side}_workload_namespace`] ?? UNKNOWN;
      nodes.set(id, { id, kind: 'workload', name: l[`${side}_workload`] ?? UNKNOWN, namespace: ns, parent: namespaceNode(ns) });
    }
  };

  const sums = new Map<string, EdgeSum>();
  const add = (from: string, to: string, f: Flow, plaintextIntoEnrolled: boolean, nodeLocal: boolean): void => {
    const id = `${from}->${to}`;
    let e = sums.get(id);
    if (e === undefined) {
      e = {
        from, to, reporter: f.labels.reporter === 'destination' ? 'destination' : 'source', securities: new Set(), ...noCounts(),
        buckets: [], http: false, plaintextIntoEnrolled: false, nodeLocal: false,
      };
      sums.set(id, e);
    }
    e.securities.add(f.labels.connection_security_policy ?? UNKNOWN);
    addCounts(e, f);
    e.http ||= f.requests > 0 || f.requestBuckets.length > 0;
    e.buckets.push(...(f.requestBuckets.length > 0 ? f.requestBuckets : f.durationBuckets));
    e.plaintextIntoEnrolled ||= plaintextIntoEnrolled;
    e.nodeLocal ||= nodeLocal;
  };

  for (const f of flows(rates)) {
    const l = f.labels;
    const src = workloadId(l.source_workload_namespace, l.source_workload);
    const dst = workloadId(l.destination_workload_namespace, l.destination_workload);
    ensure(src, l, 'source');
    ensure(dst, l, 'destination');
    const dstWorkload = workloads.get(dst);
    const plaintext = l.connection_security_policy === 'none' && dstWorkload?.enrolled === true;
    const intoEnrolled = plaintext && l.reporter === 'destination';
    const nodeLocal = plaintext && l.reporter === 'source';
    const service = l.destination_service;
    if (service !== undefined && service !== UNKNOWN) {
      const svc = `service:${service}`;
      ensure(svc, l, 'destination');
      add(src, svc, f, intoEnrolled, nodeLocal);
      add(svc, dst, f, intoEnrolled, nodeLocal);
    } else add(src, dst, f, intoEnrolled, nodeLocal);
  }

  const edges: TopologyEdge[] = [...sums.values()].map((e) => {
    const errorRate = e.http ? (e.requests > 0 ? e.errors / e.requests : 0) : (e.closed > 0 ? e.closedWithFlags / e.closed : 0);
    const p99 = histogramQuantile(0.99, mergeBuckets(e.buckets));
    const securities = [...e.securities];
    const security: Security = securities.length === 1 ? (securities[0] === 'mutual_tls' || securities[0] === 'none' ? securities[0] : 'unknown') : 'mixed';
    return Object.freeze({
      id: `${e.from}->${e.to}`, from: e.from, to: e.to, protocol: e.http ? 'http' : 'tcp', security, reporter: e.reporter,
      connectionsPerSecond: e.opened, connections: e.total, bytesPerSecond: e.bytes, requestsPerSecond: e.requests, errorRate,
      p99Ms: p99, health: healthOf(errorRate, e.opened > 0 || e.bytes > 0 || e.requests > 0),
      plaintextIntoEnrolled: e.plaintextIntoEnrolled, nodeLocal: e.nodeLocal,
    } satisfies TopologyEdge);
  });
  edges.sort((a, b) => a.id.localeCompare(b.id));
  return { nodes: [...nodes.values()].sort((a, b) => a.id.localeCompare(b.id)), edges };
}

function mergeBuckets(buckets: readonly { le: number; rate: number }[]): { le: number; rate: number }[] {
  const m = new Map<number, number>();
  for (const b of buckets) m.set(b.le, (m.get(b.le) ?? 0) + b.rate);
  return [...m].map(([le, rate]) => ({ le, rate }));
}
