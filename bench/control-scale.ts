// Control-plane scale benchmark: push time and control-plane memory for 10 nodes, 5,000 pods
// and 1,000 services (by default). No pods are built: the control plane (runControlPlane,
// watching a generated manifest directory) runs in a child process on loopback, so its RSS
// and CPU are its own, and 10 real ControlClients in this process bootstrap with tokens,
// subscribe and validate every resource as agents do.
//
//   node bench/control-scale.ts [--quick] [--nodes N] [--pods N] [--services N] [--changes N] [--out FILE]
//
// Measures: control-plane start (load + first snapshot), time to the first full sync of all
// agents, time from one pod label change (a file rewritten by rename) to every agent holding
// it (the change moves the pod between two services, so every node's slice changes), bytes
// of resource bodies pushed, control-plane RSS (idle, after sync, peak), live heap and CPU.
// Writes bench/results/control-scale-<date>[-quick].json and .md (local; the committed
// example is bench/results/sample-control-scale.*) and prints the markdown table.

import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { ControlClient } from '../src/control/client.ts';
import type { ControlResource } from '../src/control/resource.ts';
import { runControlPlane, validateAgentResource } from '../src/app/control.ts';

const TRUST_DOMAIN = 'cluster.local';
const NAMESPACE = 'bench';
const PODS_PER_FILE = 100;
const SERVICES_PER_FILE = 100;
const SERVICE_ACCOUNTS = 50;
const CHANGE_TIMEOUT_MS = 60_000;

interface Shape {
  readonly nodes: number;
  readonly pods: number;
  readonly services: number;
  readonly changes: number;
}

// ---- the child: the control plane alone in its process ------------------------------------------

interface ServeArgs {
  readonly manifests: string;
  readonly caDir: string;
  readonly tokensFile: string;
}

type ChildMessage =
  | { type: 'ready'; port: number; metricsPort: number }
  | { type: 'failed'; error: string }
  | { type: 'heap'; usedMb: number };

async function serve(args: ServeArgs): Promise<void> {
  const send = (m: ChildMessage): void => void process.send?.(m);
  try {
    const cp = await runControlPlane({
      listen: '127.0.0.1:0', metrics: { host: '127.0.0.1', port: 0 },
      source: { kind: 'manifests', dir: args.manifests }, caDir: args.caDir, tokensFile: args.tokensFile,
      trustDomain: TRUST_DOMAIN, serverDnsNames: [], readyFile: undefined, logLevel: 'warn',
    });
    process.on('message', (m) => {
      if (m === 'heap') {
        // The live heap: what a full GC leaves (the child runs with --expose-gc).
        (globalThis as { gc?: () => void }).gc?.();
        send({ type: 'heap', usedMb: process.memoryUsage().heapUsed / (1 << 20) });
      }
      if (m === 'close') void cp.close().finally(() => process.exit(0));
    });
    send({ type: 'ready', port: cp.port, metricsPort: cp.metricsPort });
  } catch (err: unknown) {
    send({ type: 'failed', error: err instanceof Error ? err.stack ?? err.message : String(err) });
    process.exit(1);
  }
}

// ---- manifests ---------------------------------------------------------------------------------

/** 198.18.16.1 upwards, 250 per /24: simulated addresses, never assigned to anything. */
function podIp(j: number): string {
  return `198.18.${16 + Math.floor(j / 250)}.${1 + (j % 250)}`;
}

function serviceVip(i: number): string {
  return `198.19.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
}

function nodeName(k: number): string {
  return `node-${k + 1}`;
}

function podYaml(j: number, shape: Shape, app: number): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: pod-${j}, namespace: ${NAMESPACE}, labels: {app: svc-${app}, version: v1}}
spec:
  nodeName: ${nodeName(j % shape.nodes)}
  serviceAccountName: sa-${j % SERVICE_ACCOUNTS}
  containers: [{name: app, image: bench, ports: [{containerPort: 8080}]}]
status: {phase: Running, podIP: ${podIp(j)}}
`;
}

class Manifests {
  readonly dir: string;
  readonly #shape: Shape;
  /** Each pod's `app` label (the service selecting it). */
  readonly apps: number[];

  constructor(dir: string, shape: Shape) {
    this.dir = dir;
    this.#shape = shape;
    this.apps = Array.from({ length: shape.pods }, (_, j) => j % shape.services);
    mkdirSync(dir, { recursive: true });
    const nodes = Array.from({ length: shape.nodes }, (_, k) => `apiVersion: v1
kind: Node
metadata: {name: ${nodeName(k)}, labels: {kubernetes.io/hostname: ${nodeName(k)}}}
status: {addresses: [{type: InternalIP, address: 127.0.0.${10 + k}}]}
`);
    writeFileSync(join(dir, '00-nodes.yaml'), nodes.join('---\n'));
    const ns = [`apiVersion: v1
kind: Namespace
metadata: {name: ${NAMESPACE}, labels: {weft.dev/mesh: enabled}}
`, ...Array.from({ length: SERVICE_ACCOUNTS }, (_, i) => `apiVersion: v1
kind: ServiceAccount
metadata: {name: sa-${i}, namespace: ${NAMESPACE}}
`)];
    writeFileSync(join(dir, '01-namespace.yaml'), ns.join('---\n'));
    for (let f = 0; f * SERVICES_PER_FILE < shape.services; f++) {
      const docs: string[] = [];
      for (let i = f * SERVICES_PER_FILE; i < Math.min(shape.services, (f + 1) * SERVICES_PER_FILE); i++) {
        docs.push(`apiVersion: v1
kind: Service
metadata: {name: svc-${i}, namespace: ${NAMESPACE}}
spec:
  clusterIP: ${serviceVip(i)}
  selector: {app: svc-${i}}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
`);
      }
      writeFileSync(join(dir, `10-services-${String(f).padStart(3, '0')}.yaml`), docs.join('---\n'));
    }
    for (let f = 0; f * PODS_PER_FILE < shape.pods; f++) writeFileSync(this.#podFile(f), this.#podFileText(f));
  }

  #podFile(f: number): string {
    return join(this.dir, `20-pods-${String(f).padStart(4, '0')}.yaml`);
  }

  #podFileText(f: number): string {
    const docs: string[] = [];
    for (let j = f * PODS_PER_FILE; j < Math.min(this.#shape.pods, (f + 1) * PODS_PER_FILE); j++) docs.push(podYaml(j, this.#shape, this.apps[j] ?? 0));
    return docs.join('---\n');
  }

  /** Relabels pod `j` to `app` and rewrites its file by rename (as an editor or a ConfigMap would); returns when. */
  relabel(j: number, app: number): number {
    this.apps[j] = app;
    const f = Math.floor(j / PODS_PER_FILE);
    const tmp = join(this.dir, `.tmp-${f}`);
    writeFileSync(tmp, this.#podFileText(f));
    const at = performance.now();
    renameSync(tmp, this.#podFile(f));
    return at;
  }
}

// ---- measurements --------------------------------------------------------------------------------

interface ProcSample {
  readonly rssMb: number;
  readonly hwmMb: number;
  readonly cpuMs: number;
}

function sampleProcess(pid: number): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  // utime and stime are fields 14 and 15; the command name (field 2) may hold spaces, so split after it.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024, cpuMs: ticks * 10 };
}

function summary(values: readonly number[]): { median: number; p90: number; max: number; min: number; n: number } {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
  return { median, p90: at(0.9), max: s.at(-1) ?? NaN, min: s[0] ?? NaN, n: s.length };
}

function bodyBytes(r: ControlResource): number {
  return Buffer.byteLength(JSON.stringify(r.body));
}

/** One agent: a ControlClient plus what the benchmark watches in its config. */
class BenchAgent {
  readonly node: string;
  readonly client: ControlClient;
  syncedAt: number | undefined;
  fullBytes = 0;
  resources = 0;
  /** Resource body bytes of every update after the first sync. */
  changeBytes = 0;
  #held: ReadonlyMap<string, ControlResource> = new Map();
  #waiter: { pred: (r: ReadonlyMap<string, ControlResource>) => boolean; resolve: (at: number) => void } | undefined;

  constructor(node: string, address: string, token: string, caPem: string) {
    this.node = node;
    this.client = new ControlClient({
      address, node, trustDomain: TRUST_DOMAIN, trustBundlePem: caPem, bootstrapToken: () => token,
      validate: validateAgentResource,
      onConfig: (resources) => this.#onConfig(resources),
    });
  }

  #onConfig(resources: ReadonlyMap<string, ControlResource>): void {
    const now = performance.now();
    if (this.syncedAt === undefined) {
      this.syncedAt = now;
      for (const r of resources.values()) this.fullBytes += bodyBytes(r);
      this.resources = resources.size;
    } else {
      for (const [key, r] of resources) if (this.#held.get(key)?.version !== r.version) this.changeBytes += bodyBytes(r);
    }
    this.#held = resources;
    const w = this.#waiter;
    if (w !== undefined && w.pred(resources)) {
      this.#waiter = undefined;
      w.resolve(now);
    }
  }

  /** Resolves with the time this agent holds a config satisfying `pred` (at once if it does). */
  until(pred: (r: ReadonlyMap<string, ControlResource>) => boolean): Promise<number> {
    if (pred(this.#held)) return Promise.resolve(performance.now());
    return new Promise((resolve) => { this.#waiter = { pred, resolve }; });
  }
}

function endpointsOf(r: ReadonlyMap<string, ControlResource>, service: number): readonly string[] {
  const body = r.get(`service/${NAMESPACE}/svc-${service}`)?.body as { endpoints?: { endpoints: { workload?: string }[] }[] } | undefined;
  return body?.endpoints?.flatMap((p) => p.endpoints.map((e) => e.workload ?? '')) ?? [];
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function scrape(port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  return r.text();
}

/** The value of the sample `name` whose labels include `labels` (e.g. `trigger="change"`). */
function metricValue(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(\{[^}]*\})? ([0-9.e+-]+)$/i.exec(line);
    if (m?.[1] === name && (m[2] ?? '').includes(labels)) return Number(m[3]);
  }
  return undefined;
}

interface Results {
  readonly benchmark: 'control-scale';
  readonly date: string;
  readonly mode: 'quick' | 'full';
  readonly machine: { readonly node: string; readonly cpus: number; readonly kernel: string };
  readonly shape: Shape;
  readonly controlStartMs: number;
  /** CPU the control plane used to start (module loading included). */
  readonly controlStartCpuMs: number;
  readonly firstSync: {
    readonly allMs: number;
    readonly perAgentMs: ReturnType<typeof summary>;
    readonly resourcesPerAgent: number;
    readonly bytesPerAgent: number;
    readonly bytesAllAgents: number;
    readonly controlCpuMs: number;
    /** CPU of this process (all agents on one thread) from start to the last first sync. */
    readonly agentsCpuMs: number;
  };
  readonly change: {
    readonly allAgentsMs: ReturnType<typeof summary>;
    readonly firstAgentMs: ReturnType<typeof summary>;
    readonly bytesPerChangeAllAgents: number;
    readonly controlCpuMsPerChange: number;
    readonly serverPushLatencyMeanMs: number | undefined;
  };
  readonly controlMemoryMb: {
    readonly idle: number;
    readonly afterSync: number;
    readonly afterChanges: number;
    readonly peak: number;
    readonly rssEvery20Changes: readonly number[];
    readonly liveHeap: { readonly afterStart: number; readonly afterSync: number; readonly every20Changes: readonly number[] };
  };
  readonly notes: readonly string[];
}

function markdown(r: Results): string {
  const ms = (v: number): string => `${v.toFixed(v < 10 ? 1 : 0)} ms`;
  const mb = (v: number): string => `${v.toFixed(1)} MB`;
  const kb = (v: number): string => (v >= 1 << 20 ? `${(v / (1 << 20)).toFixed(2)} MiB` : `${(v / 1024).toFixed(1)} KiB`);
  const s = (x: ReturnType<typeof summary>): string => `median ${ms(x.median)}, p90 ${ms(x.p90)}, max ${ms(x.max)} (n=${x.n})`;
  return [
    `# control-scale (${r.mode}), ${r.date}`,
    '',
    `${r.shape.nodes} nodes, ${r.shape.pods} pods, ${r.shape.services} services, ${r.shape.changes} changes; node ${r.machine.node}, ${r.machine.cpus} CPUs, Linux ${r.machine.kernel}`,
    '',
    '| measure | value |',
    '| --- | --- |',
    `| control plane start (load + first snapshot + listen): wall / CPU | ${ms(r.controlStartMs)} / ${ms(r.controlStartCpuMs)} |`,
    `| first full sync, all ${r.shape.nodes} agents | ${ms(r.firstSync.allMs)} |`,
    `| first sync per agent | ${s(r.firstSync.perAgentMs)} |`,
    `| resources / body bytes per agent (first sync) | ${r.firstSync.resourcesPerAgent} / ${kb(r.firstSync.bytesPerAgent)} |`,
    `| body bytes pushed for first sync, all agents | ${kb(r.firstSync.bytesAllAgents)} |`,
    `| control-plane CPU for the first sync | ${ms(r.firstSync.controlCpuMs)} |`,
    `| agents' CPU for the first sync (all ${r.shape.nodes}, one thread) | ${ms(r.firstSync.agentsCpuMs)} |`,
    `| one pod label change -> all agents hold it | ${s(r.change.allAgentsMs)} |`,
    `| one pod label change -> first agent holds it | ${s(r.change.firstAgentMs)} |`,
    `| body bytes pushed per change, all agents | ${kb(r.change.bytesPerChangeAllAgents)} |`,
    `| control-plane CPU per change | ${ms(r.change.controlCpuMsPerChange)} |`,
    `| server's push latency for changes (snapshot -> ACK), mean | ${r.change.serverPushLatencyMeanMs === undefined ? 'n/a' : ms(r.change.serverPushLatencyMeanMs)} |`,
    `| control-plane RSS: idle / after sync / after changes / peak | ${mb(r.controlMemoryMb.idle)} / ${mb(r.controlMemoryMb.afterSync)} / ${mb(r.controlMemoryMb.afterChanges)} / ${mb(r.controlMemoryMb.peak)} |`,
    `| control-plane RSS every 20 changes | ${r.controlMemoryMb.rssEvery20Changes.map(mb).join(', ')} |`,
    `| control-plane live heap (after a full GC): start / sync / every 20 changes | ${mb(r.controlMemoryMb.liveHeap.afterStart)} / ${mb(r.controlMemoryMb.liveHeap.afterSync)} / ${r.controlMemoryMb.liveHeap.every20Changes.map(mb).join(', ')} |`,
    '',
    ...r.notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
}

// ---- the run ----------------------------------------------------------------------------------------

async function startChild(args: ServeArgs): Promise<{ child: ChildProcess; port: number; metricsPort: number; startMs: number; output: () => string }> {
  const started = performance.now();
  const child = fork(import.meta.filename, ['--serve', JSON.stringify(args)], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [...process.execArgv, '--expose-gc'],
  });
  let output = '';
  const keep = (b: Buffer): void => { output = (output + b.toString()).slice(-20_000); };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const ready = await withTimeout(new Promise<ChildMessage>((resolve, reject) => {
    child.once('message', (m) => resolve(m as ChildMessage));
    child.once('exit', (code) => reject(new Error(`the control plane exited (${code}) before it was ready:\n${output}`)));
  }), 120_000, 'control plane start');
  if (ready.type === 'failed') throw new Error(`the control plane failed to start: ${ready.error}`);
  if (ready.type !== 'ready') throw new Error(`the control plane sent ${ready.type} before ready`);
  return { child, port: ready.port, metricsPort: ready.metricsPort, startMs: performance.now() - started, output: () => output };
}

/** The child's live heap after a forced full GC. */
async function liveHeapMb(child: ChildProcess): Promise<number> {
  const answer = new Promise<number>((resolve) => {
    const on = (m: unknown): void => {
      const msg = m as ChildMessage;
      if (msg.type !== 'heap') return;
      child.off('message', on);
      resolve(msg.usedMb);
    };
    child.on('message', on);
  });
  child.send('heap');
  return withTimeout(answer, 30_000, 'heap sample');
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.send('close');
  try {
    await withTimeout(exited, 10_000, 'control plane stop');
  } catch {
    child.kill('SIGKILL');
    await exited;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' }, nodes: { type: 'string' }, pods: { type: 'string' }, services: { type: 'string' },
      changes: { type: 'string' }, out: { type: 'string' }, serve: { type: 'string' },
    },
  });
  if (values.serve !== undefined) {
    await serve(JSON.parse(values.serve) as ServeArgs);
    return;
  }
  const quick = values.quick === true;
  const num = (v: string | undefined, flag: string, dflt: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const shape: Shape = {
    nodes: num(values.nodes, 'nodes', 10),
    pods: num(values.pods, 'pods', quick ? 1_000 : 5_000),
    services: num(values.services, 'services', quick ? 200 : 1_000),
    changes: num(values.changes, 'changes', quick ? 20 : 100),
  };
  if (shape.nodes > 200) throw new Error('--nodes: at most 200 (node addresses are 127.0.0.10 upwards)');
  if (shape.services > 10_000 || shape.pods > 50_000) throw new Error('--services at most 10,000 and --pods at most 50,000 (address plan)');
  if (shape.services < 2) throw new Error('--services must be at least 2 (a change moves a pod between two)');

  const work = mkdtempSync(join(tmpdir(), 'weft-control-scale-'));
  let child: ChildProcess | undefined;
  const agents: BenchAgent[] = [];
  try {
    process.stderr.write(`control-scale: ${shape.nodes} nodes, ${shape.pods} pods, ${shape.services} services, ${shape.changes} changes\n`);
    const manifests = new Manifests(join(work, 'manifests'), shape);
    const tokens = new Map<string, string>();
    for (let k = 0; k < shape.nodes; k++) tokens.set(nodeName(k), randomBytes(24).toString('base64url'));
    const tokensFile = join(work, 'tokens.json');
    writeFileSync(tokensFile, JSON.stringify(Object.fromEntries([...tokens].map(([node, token]) => [token, node]))), { mode: 0o600 });
    const caDir = join(work, 'ca');

    const started = await startChild({ manifests: manifests.dir, caDir, tokensFile });
    child = started.child;
    const pid = child.pid;
    if (pid === undefined) throw new Error('the control plane has no pid');
    process.stderr.write(`control-scale: control plane ready in ${started.startMs.toFixed(0)} ms (pid ${pid}, port ${started.port})\n`);
    await sleep(500);
    const idle = sampleProcess(pid);
    const heap: { afterStart: number; afterSync: number; afterChanges: number[] } = { afterStart: await liveHeapMb(child), afterSync: NaN, afterChanges: [] };

    const caPem = readFileSync(join(caDir, 'ca.crt'), 'utf8');
    for (const [node, token] of tokens) agents.push(new BenchAgent(node, `127.0.0.1:${started.port}`, token, caPem));
    const syncStart = performance.now();
    const agentsCpuStart = process.cpuUsage();
    for (const a of agents) a.client.start();
    try {
      await withTimeout(Promise.all(agents.map((a) => a.client.whenSynced())), 120_000, 'first sync of every agent');
    } catch (err: unknown) {
      const errors = new Set(agents.map((a) => a.client.configDump().lastError ?? 'no error'));
      throw new Error(`${err instanceof Error ? err.message : String(err)}; agents report: ${[...errors].join(' | ')}`, { cause: err });
    }
    const syncAll = performance.now() - syncStart;
    const agentsCpu = process.cpuUsage(agentsCpuStart);
    const synced = sampleProcess(pid);
    heap.afterSync = await liveHeapMb(child);
    process.stderr.write(`control-scale: all ${agents.length} agents synced in ${syncAll.toFixed(0)} ms\n`);
    const rssTrend: number[] = [];

    const allMs: number[] = [];
    const firstMs: number[] = [];
    const bytesBefore = agents.reduce((n, a) => n + a.changeBytes, 0);
    await sleep(200);
    const beforeChanges = sampleProcess(pid);
    for (let i = 0; i < shape.changes; i++) {
      // Spread over pods and files; each moves one pod to the next service, so two services
      // change on every node, and the pod's workload on its own node.
      const j = (i * 7919) % shape.pods;
      const to = ((manifests.apps[j] ?? 0) + 1) % shape.services;
      const key = `${NAMESPACE}/pod-${j}`;
      const waits = agents.map((a) => a.until((r) => endpointsOf(r, to).includes(key)));
      const at = manifests.relabel(j, to);
      const times = await withTimeout(Promise.all(waits), CHANGE_TIMEOUT_MS, `change ${i + 1} (pod-${j} -> svc-${to})`);
      allMs.push(Math.max(...times) - at);
      firstMs.push(Math.min(...times) - at);
      if ((i + 1) % 20 === 0 || i + 1 === shape.changes) {
        rssTrend.push(sampleProcess(pid).rssMb);
        heap.afterChanges.push(await liveHeapMb(child));
        process.stderr.write(`control-scale: ${i + 1}/${shape.changes} changes, RSS ${rssTrend.at(-1)?.toFixed(0)} MB, live heap ${heap.afterChanges.at(-1)?.toFixed(0)} MB\n`);
      }
      await sleep(100); // separate changes beyond the source's 50 ms debounce
    }
    const afterChanges = sampleProcess(pid);
    const cpuChanges = afterChanges.cpuMs - beforeChanges.cpuMs;
    const metrics = await scrape(started.metricsPort);
    const latencySum = metricValue(metrics, 'weft_control_push_latency_seconds_sum', 'trigger="change"');
    const latencyCount = metricValue(metrics, 'weft_control_push_latency_seconds_count', 'trigger="change"');

    const results: Results = {
      benchmark: 'control-scale',
      date: new Date().toISOString(),
      mode: quick ? 'quick' : 'full',
      machine: { node: process.version, cpus: (await import('node:os')).availableParallelism(), kernel: (await import('node:os')).release() },
      shape,
      controlStartMs: started.startMs,
      controlStartCpuMs: idle.cpuMs,
      firstSync: {
        allMs: syncAll,
        perAgentMs: summary(agents.map((a) => (a.syncedAt ?? NaN) - syncStart)),
        resourcesPerAgent: Math.round(agents.reduce((n, a) => n + a.resources, 0) / agents.length),
        bytesPerAgent: Math.round(agents.reduce((n, a) => n + a.fullBytes, 0) / agents.length),
        bytesAllAgents: agents.reduce((n, a) => n + a.fullBytes, 0),
        controlCpuMs: synced.cpuMs - idle.cpuMs,
        agentsCpuMs: (agentsCpu.user + agentsCpu.system) / 1000,
      },
      change: {
        allAgentsMs: summary(allMs),
        firstAgentMs: summary(firstMs),
        bytesPerChangeAllAgents: Math.round((agents.reduce((n, a) => n + a.changeBytes, 0) - bytesBefore) / shape.changes),
        controlCpuMsPerChange: cpuChanges / shape.changes,
        serverPushLatencyMeanMs: latencySum !== undefined && latencyCount !== undefined && latencyCount > 0 ? (latencySum / latencyCount) * 1000 : undefined,
      },
      controlMemoryMb: {
        idle: idle.rssMb, afterSync: synced.rssMb, afterChanges: afterChanges.rssMb, peak: afterChanges.hwmMb,
        rssEvery20Changes: rssTrend,
        liveHeap: { afterStart: heap.afterStart, afterSync: heap.afterSync, every20Changes: heap.afterChanges },
      },
      notes: [
        'The control plane runs alone in a child process (runControlPlane, manifest directory source, loopback gRPC with TLS); its RSS and CPU are read from /proc.',
        `The ${shape.nodes} agents are real ControlClients in the benchmark process (bootstrap with a token, mTLS stream, validateAgentResource on every resource): they share one thread, so the first sync of all of them is bounded by their own CPU (see "agents' CPU") as much as by the control plane's; a real agent validates only its own slice.`,
        'Wall-clock times depend on what else runs on the machine; CPU times are the steadier measure.',
        'A change rewrites one file of 100 pods by rename, relabelling one pod so that it moves between two services: every node\'s slice changes (two services) plus the pod\'s own workload on its node. Timed from the rename to the ControlClient applying it (it ACKs just before); this includes the source\'s 50 ms debounce.',
        'Bytes are JSON resource bodies (what the agent decodes), without gRPC/protobuf framing or TLS.',
        "Server push latency: weft_control_push_latency_seconds{trigger=\"change\"} (new snapshot -> ACK, per agent), so without the file watch, debounce and snapshot build.",
      ],
    };
    const md = markdown(results);
    process.stdout.write(`\n${md}`);
    const outFile = values.out ?? join(import.meta.dirname, 'results', `control-scale-${results.date.slice(0, 10)}${quick ? '-quick' : ''}.json`);
    mkdirSync(join(outFile, '..'), { recursive: true });
    writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
    const mdFile = outFile.replace(/\.json$/, '') + '.md';
    writeFileSync(mdFile, md);
    process.stderr.write(`control-scale: wrote ${outFile} and ${mdFile}\n`);
  } finally {
    await Promise.all(agents.map((a) => a.client.close()));
    if (child !== undefined) await stopChild(child);
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
