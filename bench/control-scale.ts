// Control-plane scale benchmark: the control plane (runControlPlane, Kubernetes source)
// against a local Kubernetes API server holding the cluster, and 1,000 agents speaking the
// real protocol from a few processes (lightweight agents: token bootstrap, mTLS stream, an
// ACK per response, no config kept; plus a few full ControlClients that decode and index
// every config as an agent does, timed). Each shape (by default 5,000 pods / 500 services,
// then 50,000 pods / 5,000 services, 1,000 nodes each) runs in the same invocation, so the
// growth is a ratio within one run. After every agent's first sync: churn of 100 pod label
// changes a second for 60 s, each moving one pod to another service.
//
//   node bench/control-scale.ts [--quick] [--agents N] [--hosts N] [--full N] [--pods 5000,50000]
//        [--services 500,5000] [--rate 100] [--seconds 60] [--out FILE] [--profile DIR]
//
// --profile DIR writes a CPU profile of the control plane during each shape's churn
// (DIR/control-churn-<pods>.cpuprofile; open it in Chrome's DevTools).
//
// Measures per shape: control-plane CPU per change (CPU during the churn and until every
// agent holds every change, over the changes), change -> every agent p50/p99 (from the
// write to the API server to the last agent receiving the service that lists the pod),
// bytes per change (gRPC messages to every agent), control-plane RSS and live heap after a
// full GC (start, after the first sync of every agent, after the churn), agent-side apply
// time (full agents: decode + MeshState per update), first sync of every agent.
// Writes bench/results/control-scale-<date>[-quick].json and .md and prints the markdown.

import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { churnPod, NAMESPACE, PATHS, podBody, podIp, seedCluster, nodeName, type ClusterShape } from './control-scale/cluster.ts';
import type { ControlChildArgs, ControlChildMessage, ControlChildRequest } from './control-scale/control-child.ts';
import type { Arrival, HostMessage, HostReport, HostRequest, NodeToken } from './control-scale/messages.ts';
import { markdown, type ShapeResult, type RunResult } from './control-scale/report.ts';

interface Options {
  readonly quick: boolean;
  readonly agents: number;
  readonly hosts: number;
  readonly full: number;
  readonly shapes: readonly { readonly pods: number; readonly services: number }[];
  readonly rate: number;
  readonly seconds: number;
  readonly concurrency: number;
  /** Where to write a CPU profile of the control plane during each shape's churn, if anywhere. */
  readonly profile: string | undefined;
}

const now = (): number => performance.timeOrigin + performance.now();

interface ProcSample { readonly rssMb: number; readonly hwmMb: number; readonly cpuMs: number }

function sampleProcess(pid: number): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024, cpuMs: (Number(fields[11]) + Number(fields[12])) * 10 };
}

function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.min(s.length - 1, Math.floor(q * s.length))]);
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

function onceMessage<T>(child: ChildProcess, match: (m: T) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const on = (m: unknown): void => {
      if (!match(m as T)) return;
      child.off('message', on);
      child.off('exit', exit);
      resolve(m as T);
    };
    const exit = (code: number | null): void => reject(new Error(`child ${child.pid} exited (${code}) while waiting`));
    child.on('message', on);
    child.once('exit', exit);
  });
}

async function heapOf(child: ChildProcess): Promise<Extract<ControlChildMessage, { type: 'heap' }>> {
  const answer = onceMessage<ControlChildMessage>(child, (m) => m.type === 'heap');
  child.send('heap');
  return within(answer as Promise<Extract<ControlChildMessage, { type: 'heap' }>>, 60_000, 'heap sample');
}

async function stop(child: ChildProcess, message: unknown): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.send(message as string);
  try {
    await within(exited, 15_000, 'child stop');
  } catch {
    child.kill('SIGKILL');
    await exited;
  }
}

/** The environment bin/weft gives `weft control`: malloc's mmap threshold fixed and two arenas, the compile cache on. */
function controlEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env, GLIBC_TUNABLES: process.env.GLIBC_TUNABLES ?? 'glibc.malloc.mmap_threshold=131072:glibc.malloc.arena_max=2',
    NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(import.meta.dirname, '..', 'node_modules', '.cache', 'node-compile'),
  };
}

/** Fills the compile cache with the control plane's modules, so every shape's control plane starts as a `weft control` does after the first run. */
async function warmCompileCache(): Promise<void> {
  const child = fork(join(import.meta.dirname, 'control-scale', 'control-child.ts'), ['--warm'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: controlEnv() });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`warming the compile cache: the control child exited with ${code}`);
}

async function runShape(o: Options, shape: ClusterShape): Promise<ShapeResult> {
  const label = `${shape.pods} pods`;
  const log = (msg: string): void => void process.stderr.write(`control-scale [${label}]: ${msg}\n`);
  const work = mkdtempSync(join(tmpdir(), 'weft-control-scale-'));
  const children: ChildProcess[] = [];
  const seedStart = performance.now();
  const { server, apps } = seedCluster(shape);
  try {
    const url = await server.listen({ host: '127.0.0.1' });
    log(`API server with ${shape.nodes} nodes, ${shape.services} services, ${shape.pods} pods at ${url} (${(performance.now() - seedStart).toFixed(0)} ms)`);
    const kubeconfig = join(work, 'kubeconfig');
    writeFileSync(kubeconfig, stringify({
      apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'bench', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'admin', user: { token: server.token } }], contexts: [{ name: 'bench', context: { cluster: 'bench', user: 'admin' } }], 'current-context': 'bench',
    }));
    const nodes: NodeToken[] = Array.from({ length: shape.nodes }, (_, k) => ({ node: nodeName(k), token: randomBytes(18).toString('base64url') }));
    const tokensFile = join(work, 'tokens.json');
    writeFileSync(tokensFile, JSON.stringify(Object.fromEntries(nodes.map((n) => [n.token, n.node]))), { mode: 0o600 });
    const caDir = join(work, 'ca');

    // The control plane.
    const started = performance.now();
    const args: ControlChildArgs = { kubeconfig, caDir, tokensFile };
    const control = fork(join(import.meta.dirname, 'control-scale', 'control-child.ts'), [JSON.stringify(args)], {
      // The young generation's cap and malloc's mmap threshold bin/weft gives `weft control`.
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [...process.execArgv, '--expose-gc', '--max-semi-space-size=8'], env: controlEnv(),
    });
    children.push(control);
    const ready = await within(onceMessage<ControlChildMessage>(control, (m) => m.type === 'ready' || m.type === 'failed'), 600_000, 'control plane start');
    if (ready.type !== 'ready') throw new Error(`control plane failed: ${ready.type === 'failed' ? ready.error : ''}`);
    const pid = control.pid as number;
    const startMs = performance.now() - started;
    const startCpu = sampleProcess(pid).cpuMs;
    const heapStart = await heapOf(control);
    log(`control plane ready in ${startMs.toFixed(0)} ms (${startCpu} ms CPU); live heap ${heapStart.heapUsedMb.toFixed(0)} MB, RSS ${heapStart.rssMb.toFixed(0)} MB`);

    // The agents: light ones spread over the hosts; the full ones in a process of their own
    // (each stands for an agent with a node's CPU to itself: they must not hold the light ones up).
    const caPem = readFileSync(join(caDir, 'ca.crt'), 'utf8');
    const full = nodes.slice(0, o.full);
    const light = nodes.slice(o.full);
    const hosts: ChildProcess[] = [];
    /** change -> host -> when that host's agents held it */
    const arrivals = new Map<number, Map<number, Arrival>>();
    const fullHost = o.full > 0 ? o.hosts : -1;
    for (let h = 0; h < o.hosts + (o.full > 0 ? 1 : 0); h++) {
      const child = fork(join(import.meta.dirname, 'control-scale', 'agent-host.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.execArgv });
      children.push(child);
      hosts.push(child);
      child.on('message', (m: HostMessage) => {
        if (m.type === 'arrived') {
          for (const a of m.items) {
            let byHost = arrivals.get(a.id);
            if (byHost === undefined) arrivals.set(a.id, (byHost = new Map<number, Arrival>()));
            byHost.set(h, a);
          }
        }
        if (m.type === 'failed') log(`agent host ${h} failed: ${m.error}`);
      });
      const mine = h === fullHost ? [] : light.filter((_, i) => i % o.hosts === h);
      const request: HostRequest = { type: 'start', address: `127.0.0.1:${ready.port}`, caPem, light: mine, full: h === fullHost ? full : [], concurrency: o.concurrency };
      child.send(request);
    }
    const syncStart = now();
    const syncCpu0 = sampleProcess(pid).cpuMs;
    let lastLog = performance.now();
    const syncedAll = Promise.all(hosts.map((c) => onceMessage<HostMessage>(c, (m) => m.type === 'synced')));
    while (!(await Promise.race([syncedAll.then(() => true), sleep(5_000).then(() => false)]))) {
      if (performance.now() - lastLog > 30_000) {
        const s = sampleProcess(pid);
        log(`first sync running: ${((now() - syncStart) / 1000).toFixed(0)} s, control plane RSS ${s.rssMb.toFixed(0)} MB, load ${loadavg()[0]?.toFixed(1)}`);
        lastLog = performance.now();
      }
      if (now() - syncStart > 1_800_000) throw new Error('the first sync of every agent took over 30 min');
    }
    const syncMs = now() - syncStart;
    const synced = sampleProcess(pid);
    const syncCpuMs = synced.cpuMs - syncCpu0;
    const heapSynced = await heapOf(control);
    log(`every agent (${o.agents}) synced in ${(syncMs / 1000).toFixed(1)} s (${syncCpuMs} ms control-plane CPU); live heap ${heapSynced.heapUsedMb.toFixed(0)} MB (of ${heapSynced.heapTotalMb.toFixed(0)}), external ${heapSynced.externalMb.toFixed(0)} MB, RSS after GC ${heapSynced.rssMb.toFixed(0)} MB`);
    const reportsOf = async (): Promise<HostReport[]> => Promise.all(hosts.map(async (c) => {
      const r = onceMessage<HostMessage>(c, (m) => m.type === 'report');
      c.send({ type: 'report' } satisfies HostRequest);
      const m = await within(r, 60_000, 'host report');
      if (m.type !== 'report') throw new Error('no report');
      return m.report;
    }));
    const syncReports = await reportsOf();

    // The churn.
    await sleep(2_000);
    const idleBefore = sampleProcess(pid);
    await sleep(2_000);
    const idleCpuPerSecond = (sampleProcess(pid).cpuMs - idleBefore.cpuMs) / 2;
    for (const c of hosts) c.send({ type: 'phase', phase: 'churn' } satisfies HostRequest);
    const changes = Math.round(o.rate * o.seconds);
    // The whole sequence up front: each change is announced to the hosts a second before it
    // is written, so a host busy when the change arrives cannot see it before it knows of it.
    const plan = Array.from({ length: changes }, (_, i) => {
      const j = churnPod(i, shape.pods);
      const to = ((apps[j]) + 1) % shape.services;
      apps[j] = to;
      return { j, to, key: `endpoint/${NAMESPACE}/svc-${to}/80/${podIp(j)}` };
    });
    let announced = 0;
    const announce = (upTo: number): void => {
      for (; announced < Math.min(changes, upTo); announced++) {
        const expect: HostRequest = { type: 'expect', id: announced, key: (plan[announced] as { key: string }).key };
        for (const c of hosts) c.send(expect);
      }
    };
    announce(o.rate);
    await sleep(1_000);
    const writtenAt: number[] = [];
    if (o.profile !== undefined) control.send('profile' satisfies ControlChildRequest);
    control.send('push-stats' satisfies ControlChildRequest);
    const churnCpu0 = sampleProcess(pid).cpuMs;
    const hostsCpu = (): number => hosts.reduce((n, c) => n + sampleProcess(c.pid as number).cpuMs, 0);
    const driverCpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
    const hostsCpu0 = hostsCpu();
    const driverCpu0 = driverCpu();
    const load0 = loadavg();
    const t0 = performance.now();
    const rss: number[] = [];
    for (let i = 0; i < changes; i++) {
      const due = t0 + (i * 1000) / o.rate;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      const { j, to } = plan[i] as { j: number; to: number };
      announce(i + o.rate);
      writtenAt[i] = now();
      server.upsert(PATHS.pod, podBody(j, shape, to));
      if (i % Math.max(1, o.rate * 10) === 0) rss.push(sampleProcess(pid).rssMb);
    }
    const churnMs = performance.now() - t0;
    const lag = churnMs - o.seconds * 1000;
    log(`churn done: ${changes} changes in ${(churnMs / 1000).toFixed(1)} s (the driver ran ${lag.toFixed(0)} ms late)`);
    const complete = (i: number): boolean => (arrivals.get(i)?.size ?? 0) === hosts.length;
    const drainDeadline = performance.now() + 120_000;
    while (performance.now() < drainDeadline) {
      let missing = 0;
      for (let i = 0; i < changes; i++) if (!complete(i)) missing++;
      if (missing === 0) break;
      await sleep(100);
    }
    const churnEnd = sampleProcess(pid);
    const churnWallMs = performance.now() - t0;
    const hostsCores = (hostsCpu() - hostsCpu0) / churnWallMs;
    const driverCores = (driverCpu() - driverCpu0) / churnWallMs;
    const load1 = loadavg();
    if (o.profile !== undefined) {
      const file = join(o.profile, `control-churn-${shape.pods}.cpuprofile`);
      const written = onceMessage<ControlChildMessage>(control, (m) => m.type === 'profiled');
      control.send({ type: 'profile-stop', file } satisfies ControlChildRequest);
      await within(written, 60_000, 'CPU profile');
      log(`CPU profile of the churn: ${file}`);
    }
    const pushStats = onceMessage<ControlChildMessage>(control, (m) => m.type === 'push-stats');
    control.send('push-stats-stop' satisfies ControlChildRequest);
    const pushes = await within(pushStats, 60_000, 'push stats');
    const churnCpuMs = churnEnd.cpuMs - churnCpu0;
    for (const c of hosts) c.send({ type: 'phase', phase: 'idle' } satisfies HostRequest);
    const reports = await reportsOf();
    const heapEnd = await heapOf(control);

    const allAgents: number[] = [];
    const firstAgent: number[] = [];
    const fullAgents: number[] = [];
    let incomplete = 0;
    for (let i = 0; i < changes; i++) {
      const byHost = arrivals.get(i) ?? new Map<number, Arrival>();
      const at = writtenAt[i];
      const lights = [...byHost].filter(([h]) => h !== fullHost).map(([, a]) => a);
      const fulls = byHost.get(fullHost);
      if (fulls !== undefined) fullAgents.push(fulls.last - at);
      if (lights.length < o.hosts || (fullHost >= 0 && fulls === undefined)) incomplete++;
      if (lights.length < o.hosts) continue;
      allAgents.push(Math.max(...lights.map((x) => x.last)) - at);
      firstAgent.push(Math.min(...lights.map((x) => x.first)) - at);
    }
    if (incomplete > 0) {
      const sample = reports.map((r, h) => `host ${h} (${r.agents} agents): ${r.unfinished.slice(0, 3).map((u) => `#${u.id} ${u.count}`).join(', ')}`);
      log(`${incomplete} changes did not reach every agent; e.g. ${sample.join('; ')}`);
    }
    const fullReport = reports.find((r) => r.full !== undefined)?.full;
    const syncTimes = syncReports.flatMap((r) => r.syncedAt.map((t) => t - syncStart));
    const result: ShapeResult = {
      shape, agents: o.agents, fullAgents: o.full, hosts: o.hosts,
      controlStartMs: startMs, controlStartCpuMs: startCpu,
      firstSync: {
        allMs: syncMs, perAgentP50Ms: quantile(syncTimes, 0.5), perAgentP99Ms: quantile(syncTimes, 0.99), controlCpuMs: syncCpuMs,
        bytesAllAgents: syncReports.reduce((n, r) => n + r.syncBytes, 0), resourcesPerAgent: Math.round(syncReports.reduce((n, r) => n + r.syncResources, 0) / Math.max(1, o.agents - o.full)),
        fullAgentApplyMs: fullReport?.firstApplyMs ?? [],
      },
      churn: {
        changes, rate: o.rate, seconds: o.seconds, driverLateMs: lag, incomplete,
        controlCpuMsPerChange: churnCpuMs / changes, controlIdleCpuMsPerSecond: idleCpuPerSecond, hostsCores, driverCores,
        allAgentsP50Ms: quantile(allAgents, 0.5), allAgentsP99Ms: quantile(allAgents, 0.99), allAgentsMaxMs: quantile(allAgents, 1),
        firstAgentP50Ms: quantile(firstAgent, 0.5),
        fullAgentsP50Ms: quantile(fullAgents, 0.5), fullAgentsP99Ms: quantile(fullAgents, 0.99),
        bytesPerChange: reports.reduce((n, r) => n + r.churnBytes, 0) / changes,
        bodyBytesPerChange: reports.reduce((n, r) => n + r.churnBodyBytes, 0) / changes,
        responsesPerAgentPerSecond: reports.reduce((n, r) => n + r.churnResponses, 0) / Math.max(1, o.agents - o.full) / (churnMs / 1000),
        loadAverage: [load0[0] ?? NaN, load1[0] ?? NaN],
        agentApply: fullReport === undefined ? undefined : { updates: fullReport.applies, p50Ms: fullReport.applyP50Ms, p99Ms: fullReport.applyP99Ms, maxMs: fullReport.applyMaxMs },
        agentErrors: reports.reduce((n, r) => n + r.errors, 0), firstAgentError: reports.find((r) => r.firstError !== undefined)?.firstError,
        pushes: pushes.type === 'push-stats' ? pushes.stats : undefined,
      },
      memory: {
        startHeapMb: heapStart.heapUsedMb, startRssAfterGcMb: heapStart.rssMb,
        syncedHeapMb: heapSynced.heapUsedMb, syncedRssAfterGcMb: heapSynced.rssMb,
        endHeapMb: heapEnd.heapUsedMb, endRssAfterGcMb: heapEnd.rssMb, endExternalMb: heapEnd.externalMb,
        peakRssMb: churnEnd.hwmMb, churnRssMb: rss,
      },
    };
    const ps = result.churn.pushes;
    log(`CPU per change ${result.churn.controlCpuMsPerChange.toFixed(2)} ms; change -> all agents p50 ${result.churn.allAgentsP50Ms.toFixed(0)} ms, p99 ${result.churn.allAgentsP99Ms.toFixed(0)} ms (${incomplete} incomplete); `
      + `control plane's side, publish -> every agent's stream p50 ${ps?.allWrittenP50Ms.toFixed(0)} ms, p99 ${ps?.allWrittenP99Ms.toFixed(0)} ms; ACK round trip p99 ${ps?.roundTripP99Ms.toFixed(0)} ms; RSS after GC ${heapEnd.rssMb.toFixed(0)} MB`);
    return result;
  } finally {
    for (const c of children.slice(1)) await stop(c, { type: 'stop' } satisfies HostRequest);
    if (children[0] !== undefined) await stop(children[0], 'close');
    await server.close();
    rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' }, agents: { type: 'string' }, hosts: { type: 'string' }, full: { type: 'string' }, pods: { type: 'string' },
      services: { type: 'string' }, rate: { type: 'string' }, seconds: { type: 'string' }, concurrency: { type: 'string' }, out: { type: 'string' },
      profile: { type: 'string' },
    },
  });
  const quick = values.quick === true;
  const int = (v: string | undefined, flag: string, dflt: number, min = 1): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  const list = (v: string | undefined, flag: string, dflt: readonly number[]): number[] => (v === undefined ? [...dflt] : v.split(',').map((x) => int(x, flag, 0)));
  const pods = list(values.pods, 'pods', quick ? [1_000, 10_000] : [5_000, 50_000]);
  const services = list(values.services, 'services', pods.map((p) => p / 10));
  if (services.length !== pods.length) throw new Error('--services needs one value per --pods value');
  const o: Options = {
    quick,
    agents: int(values.agents, 'agents', quick ? 100 : 1_000),
    hosts: int(values.hosts, 'hosts', 2),
    full: int(values.full, 'full', quick ? 2 : 3, 0),
    shapes: pods.map((p, i) => ({ pods: p, services: services[i] })),
    rate: int(values.rate, 'rate', quick ? 50 : 100),
    seconds: int(values.seconds, 'seconds', quick ? 10 : 60),
    concurrency: int(values.concurrency, 'concurrency', 16),
    profile: values.profile,
  };
  if (o.full >= o.agents) throw new Error('--full must be less than --agents');
  if (o.agents > 1_000 * 4) throw new Error('--agents: at most 4,000 (node addresses)');
  if (o.shapes.some((s) => s.pods > 50_000 || s.services > 10_000 || s.services < 2)) throw new Error('--pods at most 50,000 and --services 2..10,000 (address plan)');
  // Every node must host a pod: a node without an enrolled workload gets no services, so its agent never sees a change.
  if (o.shapes.some((s) => s.pods < o.agents)) throw new Error('--pods must be at least --agents (every node hosts a pod)');
  await warmCompileCache();
  const results: ShapeResult[] = [];
  for (const s of o.shapes) results.push(await runShape(o, { nodes: o.agents, pods: s.pods, services: s.services }));
  const run: RunResult = {
    benchmark: 'control-scale', date: new Date().toISOString(), mode: quick ? 'quick' : 'full',
    machine: { node: process.version, cpus: availableParallelism(), kernel: release() }, shapes: results,
  };
  const md = markdown(run);
  process.stdout.write(`\n${md}`);
  const outFile = values.out ?? join(import.meta.dirname, 'results', `control-scale-${run.date.slice(0, 10)}${quick ? '-quick' : ''}.json`);
  mkdirSync(join(outFile, '..'), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(run, null, 2)}\n`);
  writeFileSync(outFile.replace(/\.json$/, '') + '.md', md);
  process.stderr.write(`control-scale: wrote ${outFile}\n`);
}

await main();
