// Helpers for the mesh end-to-end tests (test/sim/mesh-*.test.ts): clients started inside pods
// or namespaces (test/sim/mesh-clients.ts) with their JSON output, agent endpoints reached
// from a node's namespace, access-log lines, a pcap reader with a TLS record walker, and
// certificates signed with openssl by any CA's files.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { WEFT, type SimStatus } from '../support/sim.ts';

export const CLIENTS = join(import.meta.dirname, 'mesh-clients.ts');

export type Json = Record<string, unknown>;

/** A running mesh-clients.ts mode and the JSON lines it printed. */
export class JsonProcess {
  readonly child: ChildProcess;
  readonly lines: Json[] = [];
  readonly exited: Promise<number>;
  #stderr = '';
  #waiters: (() => void)[] = [];

  constructor(child: ChildProcess) {
    this.child = child;
    child.stderr?.on('data', (b: Buffer) => { this.#stderr += b.toString(); });
    if (child.stdout !== null) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        try {
          this.lines.push(JSON.parse(line) as Json);
        } catch {
          this.lines.push({ text: line });
        }
        for (const w of this.#waiters.splice(0)) w();
      });
    }
    this.exited = new Promise((resolve) => child.on('close', (code) => {
      resolve(code ?? -1);
      for (const w of this.#waiters.splice(0)) w();
    }));
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The first line matching `match`, waiting up to `timeoutMs`. */
  async waitFor(match: (line: Json) => boolean, timeoutMs: number, what: string): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(match);
      if (hit !== undefined) return hit;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`${what}: the client exited (${this.child.exitCode ?? this.child.signalCode}) without it; stderr: ${this.#stderr.slice(-2000)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: not seen within ${timeoutMs} ms; lines: ${JSON.stringify(this.lines).slice(-2000)}; stderr: ${this.#stderr.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.#waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  /** The mode's final {"result": ...}. */
  async result(timeoutMs: number, what = 'result'): Promise<Json> {
    const line = await this.waitFor((l) => 'result' in l, timeoutMs, what);
    return line.result as Json;
  }

  /** Stops the child we spawned (and, when it printed one, the pid of the mode's own process). */
  stop(): void {
    const pid = this.lines.find((l) => typeof l.pid === 'number')?.pid;
    for (const p of [pid, this.child.pid]) {
      if (typeof p !== 'number') continue;
      try {
        process.kill(p, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
}

/** Starts a mesh-clients.ts mode inside a pod (its cgroup and network namespace). */
export function clientInPod(cluster: string, pod: string, mode: string, options: object): JsonProcess {
  const child = spawn(WEFT, ['sim', 'exec', '--name', cluster, pod, '--', process.execPath, CLIENTS, mode, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new JsonProcess(child);
}

/** Starts a mesh-clients.ts mode in a network namespace (a node's or the underlay), outside any pod. */
export function clientInNetns(netns: string, mode: string, options: object): JsonProcess {
  const child = spawn('nsenter', [`--net=/run/netns/${netns}`, process.execPath, CLIENTS, mode, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new JsonProcess(child);
}

/** Runs a bounded mode to its result. */
export async function runClient(where: { pod: string; cluster: string } | { netns: string }, mode: string, options: object, timeoutMs = 60_000): Promise<Json> {
  const p = 'pod' in where ? clientInPod(where.cluster, where.pod, mode, options) : clientInNetns(where.netns, mode, options);
  try {
    return await p.result(timeoutMs, mode);
  } finally {
    p.stop();
  }
}

/** A command in a network namespace; resolves with its exit code and output. */
export function inNetns(netns: string, command: readonly string[], timeoutMs = 30_000): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=/run/netns/${netns}`, ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
  });
}

export function node(s: SimStatus, name: string): SimStatus['nodes'][number] {
  const n = s.nodes.find((x) => x.name === name);
  if (n === undefined) throw new Error(`no node ${name}`);
  return n;
}

export function pod(s: SimStatus, name: string): SimStatus['pods'][number] {
  const p = s.pods.find((x) => x.name === name);
  if (p === undefined) throw new Error(`no pod ${name}`);
  return p;
}

/** GET from a node's namespace (agent endpoints): status code and body. */
export async function nodeGet(s: SimStatus, nodeName: string, url: string): Promise<{ code: number; body: string }> {
  const r = await inNetns(node(s, nodeName).netns, ['curl', '-s', '-m', '5', '-w', '\n%{http_code}', url]);
  const at = r.stdout.lastIndexOf('\n');
  return { code: Number(r.stdout.slice(at + 1)), body: r.stdout.slice(0, at) };
}

export async function agentMetrics(s: SimStatus, nodeName: string): Promise<string> {
  const r = await nodeGet(s, nodeName, `http://${node(s, nodeName).ip}:15020/metrics`);
  if (r.code !== 200) throw new Error(`metrics of ${nodeName}: HTTP ${r.code}`);
  return r.body;
}

/** Sum of the samples of `name` whose labels include `labels` (0 when none). */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const brace = line.indexOf('{');
    const close = line.lastIndexOf('}');
    const labelText = brace >= 0 && brace < close ? line.slice(brace + 1, close) : '';
    const have = new Map([...labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

// ---- logs ----

export function agentLog(cluster: string, nodeName: string): string {
  return `/run/weft/sim/${cluster}/logs/agent-${nodeName}.log`;
}

export function fileSize(path: string): number {
  return existsSync(path) ? statSync(path).size : 0;
}

export interface AccessLine {
  readonly pid?: number;
  readonly reporter: 'source' | 'destination';
  readonly src: { workload?: string; namespace?: string; identity?: string; address?: string };
  readonly dst: { workload?: string; namespace?: string; identity?: string; address?: string };
  readonly security: string;
  readonly bytes_sent: number;
  readonly bytes_received: number;
  readonly flags: string;
  readonly detail?: string;
  /** "request" lines (HTTP) only. */
  readonly method?: string;
  readonly path?: string;
  readonly status?: number;
}

/**
 * The access-log lines appended to `path` after byte `from`: one per connection ("msg":
 * "connection") and, for HTTP, one per request ("msg":"request", the same fields plus method,
 * path, status, ...) instead (an HTTP connection's own line is debug-level).
 */
export function accessLines(path: string, from = 0): AccessLine[] {
  const text = readFileSync(path).subarray(from).toString();
  const out: AccessLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"msg":"connection"') && !line.includes('"msg":"request"')) continue;
    try {
      out.push(JSON.parse(line) as AccessLine);
    } catch {
      // a line still being written
    }
  }
  return out;
}

/** Polls until `check` returns a value or `timeoutMs` passes (then returns the last undefined). */
export async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, timeoutMs: number, everyMs = 100): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined || Date.now() > deadline) return v;
    await sleep(everyMs);
  }
}

// ---- certificates ----

function openssl(dir: string, args: readonly string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/**
 * A P-256 leaf signed with the CA files given (e.g. the simulated mesh's own CA under
 * /run/weft/sim/<name>/mesh/ca), with exactly the SANs listed ("URI:spiffe://...", "DNS:x").
 */
export function signLeaf(dir: string, name: string, ca: { cert: string; key: string }, sans: readonly string[]): { certPem: string; keyPem: string } {
  const [key, csr, crt, ext] = [`${name}.key`, `${name}.csr`, `${name}.crt`, `${name}.ext`];
  writeFileSync(join(dir, ext), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth,clientAuth',
    ...(sans.length === 0 ? [] : [`subjectAltName=critical,${sans.join(',')}`]),
    '',
  ].join('\n'));
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  openssl(dir, ['req', '-new', '-key', key, '-subj', `/O=weft test/CN=${name}`, '-out', csr]);
  openssl(dir, ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '1', '-sha256', '-extfile', ext, '-out', crt]);
  return { certPem: readFileSync(join(dir, crt), 'utf8'), keyPem: readFileSync(join(dir, key), 'utf8') };
}

/** A self-signed P-256 CA that nobody in the mesh trusts. */
export function makeCa(dir: string, name: string): { cert: string; key: string } {
  const [key, crt] = [join(dir, `${name}.key`), join(dir, `${name}.crt`)];
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  openssl(dir, [
    'req', '-x509', '-new', '-key', key, '-sha256', '-days', '2', '-subj', `/O=weft/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-addext', 'subjectAltName=URI:spiffe://cluster.local',
    '-out', crt,
  ]);
  return { cert: crt, key };
}

// ---- pcap ----

export interface TcpPacket {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly seq: number;
  readonly syn: boolean;
  readonly payload: Buffer;
}

/** The IPv4 TCP packets of a classic pcap file (Ethernet link type), in capture order. */
export function readPcap(path: string): { packets: TcpPacket[]; frames: number; bytes: Buffer } {
  const bytes = readFileSync(path);
  if (bytes.length < 24) throw new Error(`${path}: not a pcap file (${bytes.length} bytes)`);
  const magic = bytes.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && bytes.readUInt32BE(0) !== 0xa1b2c3d4 && bytes.readUInt32BE(0) !== 0xa1b23c4d) throw new Error(`${path}: bad pcap magic ${magic.toString(16)}`);
  const u32 = (at: number): number => (le ? bytes.readUInt32LE(at) : bytes.readUInt32BE(at));
  if (u32(20) !== 1) throw new Error(`${path}: link type ${u32(20)}, expected Ethernet`);
  const packets: TcpPacket[] = [];
  let frames = 0;
  for (let at = 24; at + 16 <= bytes.length;) {
    const caplen = u32(at + 8);
    const frame = bytes.subarray(at + 16, at + 16 + caplen);
    at += 16 + caplen;
    frames++;
    if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800) continue;
    const ip = frame.subarray(14);
    const ihl = (ip[0] & 0x0f) * 4;
    if (ip[9] !== 6) continue;
    const total = ip.readUInt16BE(2);
    const tcp = ip.subarray(ihl, total);
    const off = (tcp[12] >> 4) * 4;
    const addr = (b: Buffer): string => [...b].join('.');
    packets.push({
      src: addr(ip.subarray(12, 16)), dst: addr(ip.subarray(16, 20)), sport: tcp.readUInt16BE(0), dport: tcp.readUInt16BE(2),
      seq: tcp.readUInt32BE(4), syn: (tcp[13] & 0x02) !== 0, payload: Buffer.from(tcp.subarray(off)),
    });
  }
  return { packets, frames, bytes };
}

export interface TlsStream {
  readonly flow: string;
  /** Bytes reassembled from the SYN on, without gaps. */
  readonly bytes: number;
  readonly records: Record<'handshake' | 'application_data' | 'alert' | 'change_cipher_spec', number>;
  readonly applicationBytes: number;
  /** Why the walk stopped early, if it did (a record that is not TLS). */
  readonly notTls?: string;
}

const RECORD_TYPES: Record<number, keyof TlsStream['records']> = { 20: 'change_cipher_spec', 21: 'alert', 22: 'handshake', 23: 'application_data' };

/**
 * Reassembles each direction of each TCP connection whose SYN was captured and walks it as
 * TLS records: every record must carry a TLS content type, version 3.x and a sane length.
 */
export function tlsStreams(packets: readonly TcpPacket[]): TlsStream[] {
  const flows = new Map<string, TcpPacket[]>();
  for (const p of packets) {
    const key = `${p.src}:${p.sport}>${p.dst}:${p.dport}`;
    const list = flows.get(key) ?? [];
    list.push(p);
    flows.set(key, list);
  }
  const out: TlsStream[] = [];
  for (const [flow, list] of flows) {
    const syn = list.find((p) => p.syn);
    if (syn === undefined) continue;
    const isn = syn.seq;
    const segments = new Map<number, Buffer>();
    for (const p of list) {
      if (p.payload.length === 0) continue;
      const rel = (p.seq - isn - 1 + 2 ** 32) % 2 ** 32;
      const had = segments.get(rel);
      if (had === undefined || had.length < p.payload.length) segments.set(rel, p.payload);
    }
    const parts: Buffer[] = [];
    let next = 0;
    for (const rel of [...segments.keys()].sort((a, b) => a - b)) {
      const seg = segments.get(rel) ?? Buffer.alloc(0);
      if (rel > next) break;
      if (rel + seg.length <= next) continue;
      parts.push(seg.subarray(next - rel));
      next = rel + seg.length;
    }
    const stream = Buffer.concat(parts);
    const records = { handshake: 0, application_data: 0, alert: 0, change_cipher_spec: 0 };
    let applicationBytes = 0;
    let notTls: string | undefined;
    let at = 0;
    while (at + 5 <= stream.length) {
      const type = RECORD_TYPES[stream[at]];
      const len = stream.readUInt16BE(at + 3);
      if (type === undefined || stream[at + 1] !== 3 || len > 16384 + 256) {
        notTls = `bytes ${at}..: ${stream.subarray(at, at + 16).toString('hex')}`;
        break;
      }
      records[type]++;
      if (type === 'application_data') applicationBytes += len;
      at += 5 + len;
    }
    out.push({ flow, bytes: stream.length, records, applicationBytes, ...(notTls === undefined ? {} : { notTls }) });
  }
  return out;
}
