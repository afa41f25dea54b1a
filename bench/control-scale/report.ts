// The scale benchmark's results and their markdown: one column per shape, and the growth
// from the first shape (the baseline) to each other one as a ratio within the run.

import type { ClusterShape } from './cluster.ts';
import type { PushStats } from './push-stats.ts';

export interface ShapeResult {
  readonly shape: ClusterShape;
  readonly agents: number;
  readonly fullAgents: number;
  readonly hosts: number;
  readonly controlStartMs: number;
  readonly controlStartCpuMs: number;
  readonly firstSync: {
    readonly allMs: number;
    readonly perAgentP50Ms: number;
    readonly perAgentP99Ms: number;
    readonly controlCpuMs: number;
    /** gRPC message bytes to every lightweight agent. */
    readonly bytesAllAgents: number;
    readonly resourcesPerAgent: number;
    /** Full agents: decode + MeshState of the first config. */
    readonly fullAgentApplyMs: readonly number[];
  };
  readonly churn: {
    readonly changes: number;
    readonly rate: number;
    readonly seconds: number;
    readonly driverLateMs: number;
    /** Changes that did not reach every agent within the drain time. */
    readonly incomplete: number;
    readonly controlCpuMsPerChange: number;
    readonly controlIdleCpuMsPerSecond: number;
    /** CPU of the benchmark's own processes over the churn, in cores (CPU time over wall time): the agent hosts together, and the driver with the API server. */
    readonly hostsCores: number;
    readonly driverCores: number;
    readonly allAgentsP50Ms: number;
    readonly allAgentsP99Ms: number;
    readonly allAgentsMaxMs: number;
    readonly firstAgentP50Ms: number;
    /** The full agents (real ControlClients decoding and indexing each config), change -> each holds it. */
    readonly fullAgentsP50Ms: number;
    readonly fullAgentsP99Ms: number;
    /** gRPC message bytes to every lightweight agent, per change. */
    readonly bytesPerChange: number;
    readonly bodyBytesPerChange: number;
    readonly responsesPerAgentPerSecond: number;
    /** 1-minute load average at the start and the end of the churn. */
    readonly loadAverage: readonly [number, number];
    readonly agentApply: { readonly updates: number; readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number } | undefined;
    readonly agentErrors: number;
    readonly firstAgentError: string | undefined;
    /** The control plane's side, measured in its process: publish -> every agent's stream written; per push waits and ACK round trips. */
    readonly pushes: PushStats | undefined;
  };
  readonly memory: {
    readonly startHeapMb: number;
    readonly startRssAfterGcMb: number;
    readonly syncedHeapMb: number;
    readonly syncedRssAfterGcMb: number;
    readonly endHeapMb: number;
    readonly endRssAfterGcMb: number;
    readonly endExternalMb: number;
    readonly peakRssMb: number;
    readonly churnRssMb: readonly number[];
  };
}

export interface RunResult {
  readonly benchmark: 'control-scale';
  readonly date: string;
  readonly mode: 'quick' | 'full';
  readonly machine: { readonly node: string; readonly cpus: number; readonly kernel: string };
  readonly shapes: readonly ShapeResult[];
}

const ms = (v: number): string => (Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) : '-');
const mb = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)} MB` : '-');
const kib = (v: number): string => `${(v / 1024).toFixed(1)} KiB`;
const mib = (v: number): string => `${(v / 2 ** 20).toFixed(1)} MiB`;
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}x` : '-');

export function markdown(r: RunResult): string {
  const s = r.shapes;
  const base = s[0];
  const head = `| measure | ${s.map((x) => `${x.shape.pods} pods, ${x.shape.services} services`).join(' | ')} |${s.length > 1 ? ' growth |' : ''}`;
  const rule = `| --- |${s.map(() => ' --- |').join('')}${s.length > 1 ? ' --- |' : ''}`;
  const row = (name: string, f: (x: ShapeResult) => string, v?: (x: ShapeResult) => number): string => {
    const growth = s.length > 1 && v !== undefined && base !== undefined ? ` ${s.slice(1).map((x) => ratio(v(x), v(base))).join(', ')} |` : s.length > 1 ? ' |' : '';
    return `| ${name} | ${s.map(f).join(' | ')} |${growth}`;
  };
  const perObject = s.length > 1 && base !== undefined
    ? s.slice(1).map((x) => {
      const objects = (x.shape.pods + x.shape.services) - (base.shape.pods + base.shape.services);
      return `${(((x.memory.endHeapMb - base.memory.endHeapMb) * 2 ** 20) / objects / 1024).toFixed(2)} KiB of live heap per pod or service (from ${base.shape.pods} to ${x.shape.pods} pods)`;
    })
    : [];
  const first = s[0];
  return [
    `# control-scale (${r.mode}), ${r.date}`,
    '',
    `${first?.agents ?? 0} agents (${first?.fullAgents ?? 0} full ones in a process of their own, the rest lightweight in ${first?.hosts ?? 0} processes), 1 enrolled namespace, pods spread over every node; churn ${first?.churn.rate ?? 0} pod label changes/s for ${first?.churn.seconds ?? 0} s; node ${r.machine.node}, ${r.machine.cpus} CPUs, Linux ${r.machine.kernel}`,
    '',
    head,
    rule,
    row('control-plane CPU per change', (x) => `${ms(x.churn.controlCpuMsPerChange)} ms`, (x) => x.churn.controlCpuMsPerChange),
    row('change -> all lightweight agents: p50 / p99 / max', (x) => `${ms(x.churn.allAgentsP50Ms)} / ${ms(x.churn.allAgentsP99Ms)} / ${ms(x.churn.allAgentsMaxMs)} ms`, (x) => x.churn.allAgentsP99Ms),
    row('change -> first agent, p50', (x) => `${ms(x.churn.firstAgentP50Ms)} ms`),
    row('control plane\'s side: publish -> handed to every agent\'s stream, p50 / p99 / max', (x) => (x.churn.pushes === undefined ? '-' : `${ms(x.churn.pushes.allWrittenP50Ms)} / ${ms(x.churn.pushes.allWrittenP99Ms)} / ${ms(x.churn.pushes.allWrittenMaxMs)} ms (${x.churn.pushes.complete} of ${x.churn.pushes.generations} generations)`), (x) => x.churn.pushes?.allWrittenP99Ms ?? NaN),
    row('per push: published -> written (waits for the agent\'s previous ACK); written -> ACK read, p50 / p99', (x) => (x.churn.pushes === undefined ? '-' : `${ms(x.churn.pushes.waitedP50Ms)} / ${ms(x.churn.pushes.waitedP99Ms)} ms; ${ms(x.churn.pushes.roundTripP50Ms)} / ${ms(x.churn.pushes.roundTripP99Ms)} ms`)),
    row('change -> the full agents (decoded and indexed): p50 / p99', (x) => `${ms(x.churn.fullAgentsP50Ms)} / ${ms(x.churn.fullAgentsP99Ms)} ms`, (x) => x.churn.fullAgentsP99Ms),
    row('changes not at every agent after the drain', (x) => `${x.churn.incomplete} of ${x.churn.changes}`),
    row('bytes per change, all agents (gRPC messages; resource bodies)', (x) => `${kib(x.churn.bytesPerChange)}; ${kib(x.churn.bodyBytesPerChange)}`, (x) => x.churn.bytesPerChange),
    row('pushes per agent per second during the churn', (x) => x.churn.responsesPerAgentPerSecond.toFixed(1)),
    row('control-plane RSS after a full GC: start / all synced / after churn', (x) => `${mb(x.memory.startRssAfterGcMb)} / ${mb(x.memory.syncedRssAfterGcMb)} / ${mb(x.memory.endRssAfterGcMb)}`, (x) => x.memory.endRssAfterGcMb),
    row('control-plane live heap after a full GC: start / synced / after churn', (x) => `${mb(x.memory.startHeapMb)} / ${mb(x.memory.syncedHeapMb)} / ${mb(x.memory.endHeapMb)}`, (x) => x.memory.endHeapMb),
    row('control-plane peak RSS', (x) => mb(x.memory.peakRssMb), (x) => x.memory.peakRssMb),
    row('agent-side apply (full agents: decode + MeshState per update): p50 / p99 / max', (x) => (x.churn.agentApply === undefined ? '-' : `${ms(x.churn.agentApply.p50Ms)} / ${ms(x.churn.agentApply.p99Ms)} / ${ms(x.churn.agentApply.maxMs)} ms (${x.churn.agentApply.updates} updates)`), (x) => x.churn.agentApply?.p50Ms ?? NaN),
    row('agent-side first apply (full agents)', (x) => x.firstSync.fullAgentApplyMs.map(ms).join(', ') + ' ms'),
    row('control plane start (list + load + listen): wall / CPU', (x) => `${ms(x.controlStartMs)} / ${ms(x.controlStartCpuMs)} ms`, (x) => x.controlStartCpuMs),
    row('first sync of every agent: wall / control-plane CPU', (x) => `${(x.firstSync.allMs / 1000).toFixed(1)} s / ${(x.firstSync.controlCpuMs / 1000).toFixed(1)} s`, (x) => x.firstSync.controlCpuMs),
    row('first sync per agent: p50 / p99', (x) => `${(x.firstSync.perAgentP50Ms / 1000).toFixed(1)} / ${(x.firstSync.perAgentP99Ms / 1000).toFixed(1)} s`),
    row('first sync: resources per agent; bytes to all agents', (x) => `${x.firstSync.resourcesPerAgent}; ${mib(x.firstSync.bytesAllAgents)}`, (x) => x.firstSync.bytesAllAgents),
    row('load average (1 min) at churn start / end', (x) => `${x.churn.loadAverage[0].toFixed(1)} / ${x.churn.loadAverage[1].toFixed(1)}`),
    row('the benchmark\'s own CPU during the churn (cores): agent hosts / driver and API server', (x) => `${x.churn.hostsCores.toFixed(2)} / ${x.churn.driverCores.toFixed(2)}`),
    row('control-plane CPU when idle', (x) => `${ms(x.churn.controlIdleCpuMsPerSecond)} ms/s`),
    row('churn driver lateness; agent errors', (x) => `${ms(x.churn.driverLateMs)} ms; ${x.churn.agentErrors}${x.churn.firstAgentError === undefined ? '' : ` (${x.churn.firstAgentError})`}`),
    '',
    ...perObject.map((p) => `- Memory per object: ${p}.`),
    '- CPU per change: the control plane\'s CPU (from /proc) from the first change of the churn until every agent holds every change, over the number of changes; it includes the Kubernetes watch, the model, and pushing to and hearing the ACKs of every agent.',
    '- Change -> all agents: from the write of the relabelled pod to the local API server to the last agent holding the pod\'s endpoint in its new service (lightweight agents: on receipt, before the ACK; full agents: after decoding and indexing the config).',
    '- The control plane\'s side: measured in its own process from its server\'s events (publish = the model moved to a new generation, after the watch and the source\'s debounce); "handed to the stream" is grpc-js\'s write, before TLS and the socket. The gap to change -> all agents is the watch and debounce before the publish, and the socket, the agents\' reading and their ACKs after (one push in flight per agent: a slow ACK delays that agent\'s next push).',
    '- Bytes per change are gRPC message bytes (protobuf, before TLS) to every lightweight agent during the churn, over the number of changes.',
    '- RSS after a full GC: the control plane runs with --expose-gc and is asked to collect twice before each sample.',
    '- The machine is shared: wall-clock times move with the load (see the load average); CPU times are the steadier measure.',
    '',
  ].join('\n');
}
