// The cost of transparent capture: connections per second and first-byte latency of one
// client making N sequential connections (one small request each) to a server pod on the
// same node, captured by the node's agent versus not captured, in the same run.
//
//   node bench/capture.ts [--quick] [--modes ebpf,iptables] [--rounds R] [--connections N] [--out DIR]   (root)
//
// "Without capture" is a second client pod on the same node in a namespace that is not in
// the mesh, talking to the same server pod; "with" is a client pod in a meshed namespace.
// Both pods hang off the same bridge with identical veths, and the agent runs throughout,
// so the only difference is capture (eBPF connect4 or iptables REDIRECT into the agent,
// the agent's accept + original-destination lookup + upstream connect + splice, and its
// access-log line). Stopping the mesh between runs instead would take seconds per switch
// and restart the agent cold each time, so runs could not interleave finely. (Today there
// is no inbound capture; once there is, the server pod must move out of the mesh for the
// "without" arm to stay capture-free.)
//
// Rounds interleave the two arms, alternating which goes first; each round's client runs
// are fresh processes. Reported: medians over rounds with the spread (min-max). The client
// and server are this file in other roles (--client, --serve), run inside the pods.

import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runInside, stopPids, alive } from '../src/sim/processes.ts';
import { weft } from '../test/support/sim.ts';
import { machineInfo } from './machine.ts';
import { formatNumber, formatSummary, pairedDifferences, summarize, type Summary } from './stats.ts';

const SELF = import.meta.filename;
const SERVER_PORT = 8081;
const REQUEST = 'GET / HTTP/1.1\r\nhost: server\r\n\r\n';

// ---- role: server (in the server pod) ------------------------------------------------------

/** Answers each connection's first bytes with a tiny HTTP response naming the peer, then closes; exits after `seconds`. */
function serve(port: number, seconds: number): void {
  const server = createServer((sock) => {
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    sock.once('data', () => {
      const body = `${sock.remoteAddress ?? '?'}\n`;
      sock.end(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    });
  });
  server.listen(port, '0.0.0.0', () => process.stdout.write('listening\n'));
  setTimeout(() => process.exit(0), seconds * 1000);
}

// ---- role: client (in a client pod) --------------------------------------------------------

interface ClientResult {
  readonly connections: number;
  readonly ok: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly totalMs: number;
  /** Time from connect() to the first response byte, per successful connection. */
  readonly firstByteMs: { readonly p50: number; readonly p90: number; readonly p99: number; readonly mean: number };
  /** The peer addresses the server reported: the agent's (captured) or the client's own (direct). */
  readonly peers: readonly string[];
}

function oneConnection(host: string, port: number, timeoutMs: number): Promise<{ firstByteMs: number; body: string }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let firstByteMs: number | undefined;
    const chunks: Buffer[] = [];
    const sock: Socket = createConnection({ host, port, noDelay: true });
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    sock.on('connect', () => sock.write(REQUEST));
    sock.on('data', (b: Buffer) => {
      firstByteMs ??= performance.now() - start;
      chunks.push(b);
    });
    sock.on('error', reject);
    sock.on('end', () => {
      sock.destroy();
      const text = Buffer.concat(chunks).toString();
      if (firstByteMs === undefined || !text.startsWith('HTTP/1.1 200')) reject(new Error(`bad answer: ${JSON.stringify(text.slice(0, 80))}`));
      else resolve({ firstByteMs, body: text.slice(text.indexOf('\r\n\r\n') + 4).trim() });
    });
  });
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

async function client(host: string, port: number, connections: number, deadlineMs: number): Promise<void> {
  const latencies: number[] = [];
  const peers = new Set<string>();
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  for (let i = 0; i < connections && performance.now() - start < deadlineMs; i++) {
    try {
      const r = await oneConnection(host, port, 5000);
      latencies.push(r.firstByteMs);
      peers.add(r.body);
    } catch (err: unknown) {
      errors++;
      firstError ??= err instanceof Error ? err.message : String(err);
    }
  }
  const totalMs = performance.now() - start;
  const sorted = [...latencies].sort((a, b) => a - b);
  const result: ClientResult = {
    connections: latencies.length + errors, ok: latencies.length, errors, firstError, totalMs,
    firstByteMs: {
      p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99),
      mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length),
    },
    peers: [...peers],
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---- role: orchestrator (root) -------------------------------------------------------------

type Mode = 'ebpf' | 'iptables';
type Arm = 'captured' | 'direct';

interface Options {
  readonly quick: boolean;
  readonly modes: readonly Mode[];
  readonly rounds: number;
  readonly connections: number;
  readonly outDir: string;
}

const USAGE = 'node bench/capture.ts [--quick] [--modes ebpf,iptables] [--rounds R] [--connections N] [--out DIR]';

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv], strict: true,
    options: { quick: { type: 'boolean' }, modes: { type: 'string' }, rounds: { type: 'string' }, connections: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const quick = values.quick === true;
  const whole = (v: string | undefined, flag: string, fallback: number, max: number): number => {
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) throw new Error(`${flag} ${JSON.stringify(v)}: must be a whole number from 1 to ${max}\nusage: ${USAGE}`);
    return Number(v);
  };
  const modes = (values.modes ?? 'ebpf,iptables').split(',').map((m) => m.trim());
  for (const m of modes) if (m !== 'ebpf' && m !== 'iptables') throw new Error(`--modes ${JSON.stringify(m)}: ebpf or iptables\nusage: ${USAGE}`);
  return {
    quick,
    modes: modes as Mode[],
    rounds: whole(values.rounds, '--rounds', quick ? 3 : 9, 50),
    connections: whole(values.connections, '--connections', quick ? 200 : 1000, 20_000),
    outDir: values.out ?? join(import.meta.dirname, 'results'),
  };
}

const log = (line: string): void => { process.stderr.write(`capture-bench: ${line}\n`); };

const MANIFESTS = `apiVersion: v1
kind: Namespace
metadata: {name: cap-mesh, labels: {weft.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: cap-plain}
${[['server', 'cap-mesh'], ['client', 'cap-mesh'], ['client', 'cap-plain']].map(([pod, ns]) => `---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ${pod}, namespace: ${ns}}
---
apiVersion: v1
kind: Pod
metadata: {name: ${pod}, namespace: ${ns}, labels: {app: ${pod}}}
spec:
  nodeName: node-1
  serviceAccountName: ${pod}
  containers: [{name: app, image: weft/echo, ports: [{containerPort: 8080}]}]
`).join('')}`;

interface PodInfo {
  readonly name: string;
  readonly namespace: string;
  readonly ip: string;
  readonly netns: string;
  readonly cgroup: string;
}

interface ClusterInfo {
  readonly pods: readonly PodInfo[];
  readonly nodes: readonly { readonly bridgeIp: string }[];
  readonly meshProcesses: Readonly<Record<string, number>>;
}

async function weftOk(args: readonly string[], timeoutMs = 180_000): Promise<string> {
  const r = await weft(args, { timeoutMs });
  if (r.status !== 0) throw new Error(`weft ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** CPU seconds a process (all its threads) has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, USER_HZ = 100 on Linux
}

interface RunResult extends ClientResult {
  readonly arm: Arm;
  readonly round: number;
  readonly connectionsPerSecond: number;
  /** CPU the agent used during this run, per connection, in microseconds. */
  readonly agentCpuUsPerConnection: number;
}

class Bench {
  readonly #started = new Set<number>();
  readonly #opts: Options;

  constructor(opts: Options) {
    this.#opts = opts;
  }

  /** Runs the client role in a pod and parses its result. */
  async #client(pod: PodInfo, server: PodInfo, connections: number): Promise<ClientResult> {
    const deadlineMs = Math.max(30_000, connections * 50);
    const { child, done } = runInside({ cgroup: pod.cgroup, netns: pod.netns },
      [process.execPath, SELF, '--client', server.ip, String(SERVER_PORT), String(connections), String(deadlineMs)], ['ignore', 'pipe', 'pipe']);
    if (child.pid !== undefined) this.#started.add(child.pid);
    let out = '';
    let err = '';
    child.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr?.on('data', (b: Buffer) => { err += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs + 15_000);
    const code = await done;
    clearTimeout(timer);
    if (child.pid !== undefined) this.#started.delete(child.pid);
    if (code !== 0) throw new Error(`client in ${pod.namespace}/${pod.name} exited ${code}: ${err.trim()}`);
    return JSON.parse(out) as ClientResult;
  }

  async #startServer(server: PodInfo, seconds: number): Promise<void> {
    const { child } = runInside({ cgroup: server.cgroup, netns: server.netns },
      [process.execPath, SELF, '--serve', String(SERVER_PORT), String(seconds)], ['ignore', 'pipe', 'inherit']);
    if (child.pid === undefined) throw new Error('could not start the server');
    this.#started.add(child.pid);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the server did not listen within 15 s')), 15_000);
      child.stdout?.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async stopStarted(): Promise<void> {
    const pids = [...this.#started].filter(alive);
    this.#started.clear();
    await stopPids(pids, 1500);
  }

  async runMode(mode: Mode): Promise<{ runs: RunResult[]; agentWorkers: string }> {
    const { rounds, connections } = this.#opts;
    const name = `cb${randomBytes(3).toString('hex')}`;
    const dir = mkdtempSync(join(tmpdir(), 'weft-capture-bench-'));
    writeFileSync(join(dir, 'pods.yaml'), MANIFESTS);
    try {
      log(`${mode}: weft sim up --name ${name} --nodes 1 --mesh ${mode}`);
      await weftOk(['sim', 'up', '--name', name, '--nodes', '1', '--manifests', dir, '--mesh', mode]);
      const status = JSON.parse(await weftOk(['sim', 'status', '--name', name, '--json'])) as ClusterInfo;
      const pod = (ns: string, n: string): PodInfo => {
        const p = status.pods.find((x) => x.namespace === ns && x.name === n);
        if (p === undefined) throw new Error(`no pod ${ns}/${n} in the cluster`);
        return p;
      };
      const server = pod('cap-mesh', 'server');
      const clients: Record<Arm, PodInfo> = { captured: pod('cap-mesh', 'client'), direct: pod('cap-plain', 'client') };
      const agent = status.meshProcesses['agent/node-1'];
      if (agent === undefined) throw new Error('no agent/node-1 in the cluster status');
      const bridge = status.nodes[0]?.bridgeIp ?? '';
      const agentCmd = readFileSync(`/proc/${agent}/cmdline`, 'utf8').split('\0');
      const workersFlag = agentCmd.indexOf('--workers');
      const agentWorkers = workersFlag >= 0 ? (agentCmd[workersFlag + 1] ?? '?') : 'default';

      // Bounded: the server exits by itself well after the last run.
      const perRunMs = connections * 20 + 5000;
      await this.#startServer(server, Math.ceil((perRunMs * 2 * (rounds + 1)) / 1000) + 120);

      // Which arm is which, checked on every run: the server names the peer it saw.
      const expectPeer: Record<Arm, string> = { captured: bridge, direct: clients.direct.ip };
      const check = (arm: Arm, r: ClientResult): void => {
        if (r.errors > 0) throw new Error(`${mode} ${arm}: ${r.errors}/${r.connections} connections failed, e.g. ${r.firstError ?? '?'}`);
        if (r.peers.length !== 1 || r.peers[0] !== expectPeer[arm]) {
          throw new Error(`${mode} ${arm}: the server saw ${r.peers.join(', ')}, expected ${expectPeer[arm]} (${arm === 'captured' ? 'capture not in effect' : 'captured unexpectedly'})`);
        }
      };
      log(`${mode}: warm-up`);
      for (const arm of ['captured', 'direct'] as const) check(arm, await this.#client(clients[arm], server, Math.max(50, Math.floor(connections / 4))));

      const runs: RunResult[] = [];
      for (let round = 1; round <= rounds; round++) {
        const order: Arm[] = round % 2 === 1 ? ['captured', 'direct'] : ['direct', 'captured'];
        for (const arm of order) {
          const cpuBefore = cpuSeconds(agent);
          const r = await this.#client(clients[arm], server, connections);
          const cpuAfter = cpuSeconds(agent);
          check(arm, r);
          runs.push({
            ...r, arm, round,
            connectionsPerSecond: r.ok / (r.totalMs / 1000),
            agentCpuUsPerConnection: ((cpuAfter - cpuBefore) * 1e6) / r.ok,
          });
          log(`${mode} round ${round}/${rounds} ${arm}: ${formatNumber(r.ok / (r.totalMs / 1000))} conn/s, first byte p50 ${formatNumber(r.firstByteMs.p50)} ms p99 ${formatNumber(r.firstByteMs.p99)} ms`);
        }
      }
      return { runs, agentWorkers };
    } finally {
      await this.stopStarted();
      const r = await weft(['sim', 'down', '--name', name]);
      if (r.status !== 0) log(`sim down ${name} failed: ${r.stderr.trim()}`);
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

interface ArmSummary {
  readonly connectionsPerSecond: Summary | undefined;
  readonly firstByteP50Ms: Summary | undefined;
  readonly firstByteP90Ms: Summary | undefined;
  readonly firstByteP99Ms: Summary | undefined;
  readonly agentCpuUsPerConnection: Summary | undefined;
}

interface ModeSummary {
  readonly captured: ArmSummary;
  readonly direct: ArmSummary;
  /** Median over rounds of (captured - direct) first-byte p50, paired by round. */
  readonly addedFirstByteP50Ms: Summary | undefined;
  /** Median over rounds of captured / direct connections per second, paired by round. */
  readonly connectionRateRatio: Summary | undefined;
}

function summarizeArm(runs: readonly RunResult[]): ArmSummary {
  return {
    connectionsPerSecond: summarize(runs.map((r) => r.connectionsPerSecond)),
    firstByteP50Ms: summarize(runs.map((r) => r.firstByteMs.p50)),
    firstByteP90Ms: summarize(runs.map((r) => r.firstByteMs.p90)),
    firstByteP99Ms: summarize(runs.map((r) => r.firstByteMs.p99)),
    agentCpuUsPerConnection: summarize(runs.map((r) => r.agentCpuUsPerConnection)),
  };
}

function summarizeMode(runs: readonly RunResult[]): ModeSummary {
  const byRound = (arm: Arm) => runs.filter((r) => r.arm === arm).sort((a, b) => a.round - b.round);
  const captured = byRound('captured');
  const direct = byRound('direct');
  const ratios = captured.map((c, i) => c.connectionsPerSecond / (direct[i]?.connectionsPerSecond ?? Number.NaN));
  return {
    captured: summarizeArm(captured),
    direct: summarizeArm(direct),
    addedFirstByteP50Ms: summarize(pairedDifferences(captured.map((r) => r.firstByteMs.p50), direct.map((r) => r.firstByteMs.p50))),
    connectionRateRatio: summarize(ratios),
  };
}

function markdown(opts: Options, summaries: Readonly<Record<string, ModeSummary>>, load: { start: number[]; end: number[] }): string {
  const lines = [
    `### Cost of capture (${opts.quick ? 'quick' : 'full'}: ${opts.rounds} interleaved rounds x ${opts.connections} sequential connections per arm)`,
    '',
    'Same node, same server pod; "captured" = client pod in a meshed namespace, "direct" = client pod in an unmeshed one.',
    'Medians over rounds, (min–max) across rounds. First byte = connect() to the first response byte.',
    '',
    '| mode | arm | conn/s | first byte p50 (ms) | p90 (ms) | p99 (ms) | agent CPU per conn (µs) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [mode, s] of Object.entries(summaries)) {
    for (const arm of ['captured', 'direct'] as const) {
      const a = s[arm];
      lines.push(`| ${mode} | ${arm} | ${formatSummary(a.connectionsPerSecond)} | ${formatSummary(a.firstByteP50Ms)} | ${formatSummary(a.firstByteP90Ms)} | ${formatSummary(a.firstByteP99Ms)} | ${formatSummary(a.agentCpuUsPerConnection)} |`);
    }
    lines.push(`| ${mode} | **cost** | x${formatSummary(s.connectionRateRatio)} | +${formatSummary(s.addedFirstByteP50Ms)} | | | |`);
  }
  lines.push('', `Load average (1/5/15 min) at start ${load.start.join(' / ')}, at end ${load.end.join(' / ')}: the machine is shared with other jobs.`);
  return `${lines.join('\n')}\n`;
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === '--serve') {
    serve(Number(argv[1]), Number(argv[2]));
    return new Promise<number>(() => undefined); // runs until its own deadline
  }
  if (argv[0] === '--client') {
    await client(argv[1] ?? '', Number(argv[2]), Number(argv[3]), Number(argv[4]));
    return 0;
  }
  const opts = parseOptions(argv);
  if (process.getuid?.() !== 0) throw new Error('bench/capture.ts needs root: it builds a simulated cluster (network namespaces, cgroups, eBPF)');
  const startedAt = new Date();
  const loadStart = loadavg().map((x) => Math.round(x * 100) / 100);
  const bench = new Bench(opts);
  const onSignal = (): void => {
    log('interrupted; stopping what was started (sim down follows in the run\'s finally)');
    void bench.stopStarted();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const runs: Record<string, RunResult[]> = {};
  const workers: Record<string, string> = {};
  for (const mode of opts.modes) {
    const r = await bench.runMode(mode);
    runs[mode] = r.runs;
    workers[mode] = r.agentWorkers;
  }
  const summaries = Object.fromEntries(Object.entries(runs).map(([m, rs]) => [m, summarizeMode(rs)]));
  const loadEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  const md = markdown(opts, summaries, { start: loadStart, end: loadEnd });
  process.stdout.write(`\n${md}`);
  mkdirSync(opts.outDir, { recursive: true });
  const stamp = startedAt.toISOString().slice(0, 16).replace(/:/g, '');
  const file = join(opts.outDir, `capture-${stamp}Z${opts.quick ? '-quick' : ''}.json`);
  writeFileSync(file, `${JSON.stringify({
    benchmark: 'capture', date: startedAt.toISOString(), quick: opts.quick, options: opts,
    machine: machineInfo(), loadAverage: { start: loadStart, end: loadEnd },
    setup: {
      nodes: 1, serverPort: SERVER_PORT, request: REQUEST, agentWorkers: workers,
      captured: 'cap-mesh/client (weft.dev/mesh=enabled) -> cap-mesh/server pod IP, same node',
      direct: 'cap-plain/client (namespace not in the mesh) -> the same server pod IP',
    },
    summary: summaries, runs, markdown: md,
  }, null, 2)}\n`);
  log(`wrote ${file}`);
  return 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`capture-bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
