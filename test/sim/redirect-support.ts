// A minimal node for the capture tests, built by hand so they do not depend on the
// simulator: netns <id>-node with bridge br0 (198.18.1.1/24), pod netns a/b/c on veths
// into it, each pod in its own cgroup under <cgroup2>/<id>/, and the "agent" (a child
// process running test/sim/redirect-agent.ts) in <cgroup2>/<id>/agent inside the node netns.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { findCgroup2Mount } from '../../src/redirect/probe.ts';
import { PIN_BASE, reclaimPins } from '../../src/redirect/ebpf-pins.ts';
import { removePinDir } from '../../src/redirect/pin-dirs.ts';
import { Bpftool } from '../../src/redirect/bpftool.ts';
import { NATIVE_ADDON_PATH } from '../../src/redirect/original-dst.ts';
import type { CaptureTarget, RedirectMode, RedirectorOptions } from '../../src/redirect/index.ts';

const repo = join(import.meta.dirname, '..', '..');
export const GATEWAY = '198.18.1.1';
export const VIP = '198.19.0.10';
/** A second address of pod b, inside the excluded CIDR below. */
export const B_EXCLUDED_IP = '198.18.1.200';
export const EXCLUDED_CIDR = '198.18.1.192/26';
export const EXCLUDED_PORT = 9090;

export interface Pod {
  readonly name: 'a' | 'b' | 'c';
  readonly netns: string;
  readonly ip: string;
  readonly cgroup: string;
}

export interface Topology {
  readonly id: string;
  readonly nodeNetns: string;
  readonly cgroupRoot: string;
  readonly agentCgroup: string;
  readonly pods: Readonly<Record<Pod['name'], Pod>>;
  readonly children: Set<ChildProcess>;
}

function sh(cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout;
}

/** Compiles the BPF object and the addon when missing (npm test's bootstrap normally has). */
export function ensureBuilt(): void {
  sh('make', ['-s', '-C', join(repo, 'bpf')]);
  if (!existsSync(NATIVE_ADDON_PATH)) {
    sh(join(repo, 'node_modules', '.bin', 'node-gyp'), ['rebuild', '-C', join(repo, 'native'), '--nodedir=/usr', '--silent']);
  }
}

export async function buildTopology(): Promise<Topology> {
  const id = `weft-rt${randomBytes(3).toString('hex')}`;
  const cgroupRoot = join(findCgroup2Mount(), id);
  const nodeNetns = `${id}-node`;
  const pod = (name: Pod['name'], last: number): Pod => ({ name, netns: `${id}-${name}`, ip: `198.18.1.${last}`, cgroup: join(cgroupRoot, name) });
  const topo: Topology = {
    id,
    nodeNetns,
    cgroupRoot,
    agentCgroup: join(cgroupRoot, 'agent'),
    pods: { a: pod('a', 10), b: pod('b', 11), c: pod('c', 12) },
    children: new Set(),
  };
  try {
    sh('ip', ['netns', 'add', nodeNetns]);
    const inNode = ['-n', nodeNetns];
    sh('ip', [...inNode, 'link', 'set', 'lo', 'up']);
    sh('ip', [...inNode, 'link', 'add', 'br0', 'type', 'bridge']);
    sh('ip', [...inNode, 'addr', 'add', `${GATEWAY}/24`, 'dev', 'br0']);
    sh('ip', [...inNode, 'link', 'set', 'br0', 'up']);
    for (const p of Object.values(topo.pods)) {
      sh('ip', ['netns', 'add', p.netns]);
      sh('ip', [...inNode, 'link', 'add', `veth-${p.name}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', p.netns]);
      sh('ip', [...inNode, 'link', 'set', `veth-${p.name}`, 'master', 'br0', 'up']);
      sh('ip', ['-n', p.netns, 'link', 'set', 'lo', 'up']);
      sh('ip', ['-n', p.netns, 'addr', 'add', `${p.ip}/24`, 'dev', 'eth0']);
      sh('ip', ['-n', p.netns, 'link', 'set', 'eth0', 'up']);
      sh('ip', ['-n', p.netns, 'route', 'add', 'default', 'via', GATEWAY]);
      mkdirSync(p.cgroup, { recursive: true });
    }
    sh('ip', ['-n', topo.pods.b.netns, 'addr', 'add', `${B_EXCLUDED_IP}/24`, 'dev', 'eth0']);
    mkdirSync(topo.agentCgroup, { recursive: true });
    // What a pause container is to a Kubernetes pod: a process holding the pod's cgroup and
    // namespace from the start (eBPF inbound capture finds the namespace through it).
    for (const p of Object.values(topo.pods)) {
      const pause = spawn('sh', inside(p.cgroup, p.netns, ['sleep', '600']), { stdio: 'ignore' });
      topo.children.add(pause);
    }
  } catch (err: unknown) {
    await destroyTopology(topo);
    throw err;
  }
  return topo;
}

/** Kills what the test started, then removes pins, cgroups and namespaces. Safe to call twice. */
export async function destroyTopology(topo: Topology): Promise<void> {
  for (const child of topo.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  const groups = existsSync(topo.cgroupRoot) ? readdirSync(topo.cgroupRoot).map((n) => join(topo.cgroupRoot, n)).filter((p) => existsSync(join(p, 'cgroup.procs'))) : [];
  // Our cgroups hold only processes this test started (curl, servers, agents).
  if (existsSync(topo.cgroupRoot)) {
    writeFileSync(join(topo.cgroupRoot, 'cgroup.kill'), '1');
    // cgroup.procs empties before dying tasks are released; rmdir waits for "populated 0".
    for (let i = 0; i < 200 && /populated 1/.test(readFileSync(join(topo.cgroupRoot, 'cgroup.events'), 'utf8')); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  // Removing a cgroup drops its attachments, but pins would keep the programs loaded.
  if (existsSync(join(PIN_BASE, topo.id))) {
    try {
      await reclaimPins(new Bpftool(), existsSync(topo.cgroupRoot) ? topo.cgroupRoot : findCgroup2Mount(), topo.id);
    } finally {
      removePinDir(join(PIN_BASE, topo.id));
    }
  }
  for (const g of groups) {
    try {
      rmdirSync(g);
    } catch {
      // reported by the test's own assertions
    }
  }
  try {
    rmdirSync(topo.cgroupRoot);
  } catch {
    // missing or busy
  }
  for (const ns of [...Object.values(topo.pods).map((p) => p.netns), topo.nodeNetns]) {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

/** A command line run inside a cgroup and network namespace (cgroup first: nsenter keeps /sys). */
function inside(cgroup: string, netns: string, argv: readonly string[]): string[] {
  return ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec nsenter --net="/run/netns/$0" "$@"', netns, cgroup, ...argv];
}

export interface CurlResult {
  readonly exit: number;
  readonly body: string;
}

/** curl from a pod; exit 0 with the body, or curl's exit code (7: connection refused). */
export function curlFrom(topo: Topology, pod: Pod, url: string): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', inside(pod.cgroup, pod.netns, ['curl', '-sS', '-m', '4', url]), { stdio: ['ignore', 'pipe', 'pipe'] });
    topo.children.add(child);
    let body = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (body += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ exit: code ?? -1, body }));
  });
}

const PEER_NAME = `
const s = require('node:net').connect(Number(process.argv[2]), process.argv[1], () => {
  process.stdout.write(s.remoteAddress + ':' + s.remotePort);
  s.end();
});
s.on('data', () => {}).on('error', (e) => { process.stderr.write(String(e)); process.exitCode = 1; });`;

/** getpeername() of a connection a pod makes, as its application would see it. */
export function peerNameFrom(topo: Topology, pod: Pod, address: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', inside(pod.cgroup, pod.netns, [process.execPath, '-e', PEER_NAME, address, String(port)]), { stdio: ['ignore', 'pipe', 'inherit'] });
    topo.children.add(child);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`peer-name client exited ${code}`))));
  });
}

const MAPPED_CLIENT = `
import json, socket, sys
address, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.settimeout(4)
s.connect(('::ffff:' + address, port))
peer = s.getpeername()
s.sendall(b'GET / HTTP/1.0\\r\\nHost: weft\\r\\n\\r\\n')
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(json.dumps({'peer': '%s:%d' % (peer[0], peer[1]), 'body': data.split(b'\\r\\n\\r\\n', 1)[-1].decode()}))
`;

/**
 * A plain AF_INET6 (dual-stack) socket in a pod dialling `::ffff:<address>`, as gRPC's C
 * core and Java do for an IPv4 destination: what getpeername() says and the reply body.
 */
export function mappedFrom(topo: Topology, pod: Pod, address: string, port: number): Promise<{ peer: string; body: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', inside(pod.cgroup, pod.netns, ['python3', '-c', MAPPED_CLIENT, address, String(port)]), { stdio: ['ignore', 'pipe', 'pipe'] });
    topo.children.add(child);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as { peer: string; body: string }) : reject(new Error(`AF_INET6 client exited ${code}: ${err.trim().split('\n').pop() ?? ''}`))));
  });
}

/** What pod b's server answers: who it saw connecting, on which local address. */
export interface Echo {
  readonly server: string;
  readonly local: string;
  readonly remote: string;
}

export function parseEcho(r: CurlResult): Echo {
  if (r.exit !== 0) throw new Error(`curl failed with exit ${r.exit}`);
  return JSON.parse(r.body) as Echo;
}

const ECHO_SERVER = `
const http = require('node:http');
for (const port of process.argv.slice(1).map(Number)) {
  http.createServer((req, res) => {
    res.end(JSON.stringify({ server: 'b', local: req.socket.localAddress + ':' + req.socket.localPort, remote: req.socket.remoteAddress }));
  }).listen(port, '0.0.0.0', () => process.stdout.write('listening ' + port + '\\n'));
}`;

/** Starts pod b's HTTP echo server on 8080 and the excluded port; resolves once both listen. */
export function startEchoServer(topo: Topology): Promise<void> {
  const b = topo.pods.b;
  const child = spawn('sh', inside(b.cgroup, b.netns, [process.execPath, '-e', ECHO_SERVER, '8080', String(EXCLUDED_PORT)]), { stdio: ['ignore', 'pipe', 'inherit'] });
  topo.children.add(child);
  return new Promise((resolve, reject) => {
    let seen = 0;
    createInterface({ input: child.stdout }).on('line', () => {
      if (++seen === 2) resolve();
    });
    child.on('exit', (code) => reject(new Error(`echo server exited (${code})`)));
  });
}

export interface AgentEvent {
  readonly event: string;
  readonly client?: string;
  readonly original?: { address: string; port: number };
  readonly error?: string;
  /** How long the redirector's start() took, on 'ready'. */
  readonly ms?: number;
}

/** The options every test agent uses, given the topology. */
export function agentOptions(topo: Topology): RedirectorOptions {
  return {
    node: topo.id,
    agentAddress: GATEWAY,
    outboundPort: 15001,
    excludePorts: [EXCLUDED_PORT],
    excludeCidrs: [EXCLUDED_CIDR],
    agentCgroup: topo.agentCgroup,
    // This test's cgroups only: other tests' clusters share the machine's hierarchy.
    nodeCgroupRoot: topo.cgroupRoot,
    podInterface: 'br0',
    inboundSlots: 1,
    inboundPort: 15006,
  };
}

export function target(pod: Pod): CaptureTarget {
  return { podId: `default/${pod.name}`, ip: pod.ip, cgroupPath: pod.cgroup };
}

/** A test agent: capture listener + redirector in the node netns and agent cgroup, driven over stdin. */
export class Agent {
  readonly child: ChildProcess;
  readonly events: AgentEvent[] = [];
  /** [operation, milliseconds] as measured inside the agent (start is 'start'). */
  readonly timings: [string, number][] = [];
  readonly #replies = new Map<number, (r: { ok: boolean; result?: unknown; error?: string }) => void>();
  readonly #exited: Promise<number | null>;
  #next = 1;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.#exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let msg: { reply?: number; ok?: boolean; result?: unknown; error?: string; event?: string; ms?: number; op?: string };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        process.stderr.write(`[agent] ${line}\n`);
        return;
      }
      if (msg.reply !== undefined) {
        if (msg.ms !== undefined && msg.op !== undefined) this.timings.push([msg.op, msg.ms]);
        this.#replies.get(msg.reply)?.({ ok: msg.ok === true, result: msg.result, error: msg.error });
        this.#replies.delete(msg.reply);
      } else if (msg.event !== undefined) {
        this.events.push(msg as AgentEvent);
      }
    });
  }

  /** Spawns the agent and waits until its redirector has started. */
  static async start(topo: Topology, mode: RedirectMode, role: 'agent' | 'reclaim' = 'agent'): Promise<Agent> {
    const config = JSON.stringify({ role, mode, options: agentOptions(topo), vips: { [`${VIP}:80`]: { address: topo.pods.b.ip, port: 8080 } } });
    const child = spawn('sh', inside(topo.agentCgroup, topo.nodeNetns, [process.execPath, join(import.meta.dirname, 'redirect-agent.ts'), config]), { stdio: ['pipe', 'pipe', 'inherit'] });
    topo.children.add(child);
    const agent = new Agent(child);
    const ready = await Promise.race([
      agent.#waitEvent('ready'),
      // The reclaim role exits right after saying ready.
      agent.#exited.then((code) => agent.events.find((e) => e.event === 'ready') ?? { event: 'exit', error: `agent exited with ${code}` }),
    ]);
    if (ready.event !== 'ready') throw new Error(ready.error ?? 'agent did not start');
    if (ready.ms !== undefined) agent.timings.push(['start', ready.ms]);
    return agent;
  }

  async #waitEvent(name: string): Promise<AgentEvent> {
    for (;;) {
      const found = this.events.find((e) => e.event === name || e.event === 'fatal');
      if (found !== undefined) return found.event === 'fatal' ? { event: 'fatal', error: found.error } : found;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async call(op: string, args: object = {}): Promise<unknown> {
    const id = this.#next++;
    const reply = new Promise<{ ok: boolean; result?: unknown; error?: string }>((resolve) => this.#replies.set(id, resolve));
    this.child.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    type Reply = { ok: boolean; result?: unknown; error?: string };
    const r: Reply = await Promise.race([reply, this.#exited.then((code): Reply => ({ ok: false, error: `agent exited with ${code}` }))]);
    if (!r.ok) throw new Error(`agent ${op} failed: ${r.error}`);
    return r.result;
  }

  captured(): AgentEvent[] {
    return this.events.filter((e) => e.event === 'captured' || e.event === 'capture-error');
  }

  inbound(): AgentEvent[] {
    return this.events.filter((e) => e.event === 'inbound');
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.#exited;
  }

  /** Asks the agent to close its redirector and exit. */
  async stop(keepCapture = false): Promise<void> {
    await this.call('close', { keepCapture });
    this.child.stdin!.end();
    await this.#exited;
  }

  exited(): Promise<number | null> {
    return this.#exited;
  }
}

/** Names of weft programs attached anywhere under `cgroup`. */
export function attachedWeftPrograms(cgroup: string): string[] {
  const r = spawnSync('bpftool', ['-j', 'cgroup', 'tree', cgroup], { encoding: 'utf8' });
  const text = r.stdout.trim();
  if (text === '') return [];
  const tree = JSON.parse(text) as { cgroup: string; programs: { name: string }[] }[];
  return tree.flatMap((e) => e.programs.filter((p) => p.name.startsWith('weft_')).map((p) => `${e.cgroup}:${p.name}`));
}

export async function reclaimLeftovers(topo: Topology): Promise<void> {
  await reclaimPins(new Bpftool(), topo.cgroupRoot, topo.id);
}

export function natRules(topo: Topology): string {
  return sh('nsenter', [`--net=/run/netns/${topo.nodeNetns}`, 'iptables-save', '-t', 'nat']);
}

/** "start: 3x median 310 ms (max 420)" lines over every agent's measured operations. */
export function timingSummary(agents: readonly Agent[]): string[] {
  const by = new Map<string, number[]>();
  for (const [op, ms] of agents.flatMap((a) => a.timings)) by.set(op, [...(by.get(op) ?? []), ms]);
  return [...by].map(([op, list]) => {
    const sorted = [...list].sort((x, y) => x - y);
    return `${op}: ${sorted.length}x median ${sorted[Math.floor(sorted.length / 2)]} ms (max ${sorted[sorted.length - 1]})`;
  });
}
