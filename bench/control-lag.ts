// The control plane's push bookkeeping when agents lag, in one process, without sockets:
// 1,000 AgentBooks (one per node, by default) over a LiveMesh of 5,000 pods on 1,000 nodes; 300
// generations of 20 pod moves; each generation a random 15% of the agents answer and are
// given their next part. Measures the CPU of AgentBook.next (SliceIndex.changesSince and the
// plan) and of encoding each distinct part once, as the server does per push. The first
// syncs are not counted.
//
// Also the model's CPU per pod move (LiveMesh.apply), which should not grow with the pods.
//
//   node --expose-gc bench/control-lag.ts [--pods 5000] [--agents 1000] [--answer 0.15]

import { parseArgs } from 'node:util';
import { AgentBook, PlanCache } from '../src/control/agent-book.ts';
import { WireEncoder, type ControlResource } from '../src/control/resource.ts';
import { encodeDeltaTail } from '../src/control/wire-encoding.ts';
import { podFields } from '../src/control/source/kubernetes.ts';
import { LiveMesh } from '../src/model/live-mesh.ts';
import type { RawObject } from '../src/model/types.ts';
import { NAMESPACE, nodeName, podBody } from './control-scale/cluster.ts';

const { values } = parseArgs({ options: { pods: { type: 'string' }, agents: { type: 'string' }, answer: { type: 'string' } } });
const pods = Number(values.pods ?? 5000);
const answer = Number(values.answer ?? 0.15);
const agents = Number(values.agents ?? 1000);
if (!Number.isInteger(pods) || pods < 1000 || !(answer > 0 && answer <= 1) || !Number.isInteger(agents) || agents < 1 || agents > 1000) {
  throw new Error('--pods: an integer >= 1000; --agents: 1..1000; --answer: a share in (0, 1]');
}
const nodes = 1000;
const services = pods / 10;
const shape = { nodes, pods, services };

let doc = 0;
const raw = (kind: string, body: Record<string, unknown>, at = doc++): RawObject => ({ kind, body: { ...body, apiVersion: 'v1', kind }, source: { file: `kubernetes:${kind}`, doc: at } });
const objects: RawObject[] = [raw('Namespace', { metadata: { name: NAMESPACE, labels: { 'weft.dev/mesh': 'enabled' } } })];
for (let k = 0; k < nodes; k++) {
  objects.push(raw('Node', { metadata: { name: nodeName(k) }, status: { addresses: [{ type: 'InternalIP', address: `198.19.${240 + Math.floor(k / 250)}.${1 + (k % 250)}` }] } }));
}
for (let i = 0; i < services; i++) {
  objects.push(raw('Service', {
    metadata: { name: `svc-${i}`, namespace: NAMESPACE },
    spec: { clusterIP: `198.19.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`, selector: { app: `svc-${i}` }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
  }));
}
const apps = Array.from({ length: pods }, (_, j) => j % services);
// Each pod keeps its document position, so a move is an update of the same object.
const pod = (j: number): RawObject => raw('Pod', podFields(podBody(j, shape, apps[j])), 1_000_000 + j);
for (let j = 0; j < pods; j++) objects.push(pod(j));

const live = new LiveMesh({ kubernetesSchema: false });
live.apply({ upserted: objects, removed: [] });
const encoder = new WireEncoder();
const plans = new PlanCache();
const books = Array.from({ length: agents }, (_, k) => new AgentBook<undefined>(nodeName(k), new Map(), new Map(), 512 * 1024, (r: ControlResource) => encoder.size(r), plans));
const tails = new WeakMap<object, Buffer>();
let nonce = 0;
/** Gives the book its next part (encoded once per distinct part) and answers it: 0 nothing, 1 the last part, 2 more follow. */
const deliver = (b: AgentBook<undefined>): number => {
  const part = b.next(live.slices);
  if (part === undefined || part === 'resync') return 0;
  if (!tails.has(part)) tails.set(part, encodeDeltaTail({ resources: part.changed.map((r) => encoder.encode(r)), removed: part.removed, more: part.more }));
  b.sent(`n${++nonce}`, part, undefined);
  b.ack(`n${nonce}`);
  return part.more ? 2 : 1;
};
for (const b of books) while (deliver(b) === 2);

let seed = 12345;
const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
let cpuMs = 0;
let modelMs = 0;
let pushes = 0;
for (let g = 0; g < 300; g++) {
  const moved: RawObject[] = [];
  for (let c = 0; c < 20; c++) {
    const j = Math.floor(random() * pods);
    apps[j] = ((apps[j]) + 1) % services;
    moved.push(pod(j));
  }
  const m0 = process.cpuUsage();
  live.apply({ upserted: moved, removed: [] });
  const m = process.cpuUsage(m0);
  modelMs += (m.user + m.system) / 1000;
  const t0 = process.cpuUsage();
  AgentBook.observe(books, live.slices); // as the server does when the view moves
  for (const b of books) {
    if (random() >= answer) continue;
    while (deliver(b) === 2) pushes++;
    pushes++;
  }
  const d = process.cpuUsage(t0);
  cpuMs += (d.user + d.system) / 1000;
}
(globalThis as { gc?: () => void }).gc?.();
process.stdout.write(`control-lag: ${pods} pods on ${nodes} nodes, ${agents} agents answering ${answer} of generations: ${cpuMs.toFixed(0)} ms of push bookkeeping for ${pushes} pushes (${((cpuMs * 1000) / pushes).toFixed(0)} us each); the model ${(modelMs / 6000).toFixed(2)} ms per pod move; live heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MB\n`);
