// What closing connections on a policy change (live re-check, issue 9 point 4) costs the real
// proxy runtime, against closing the same number of plain sockets, in the same run. On
// loopback, each party in its own process, no root: N connections are held open through two
// agents (agent-a's outbound listener, the mTLS tunnel, agent-b's inbound tunnel, a sink that
// echoes), half from workload `keep`, half from `drop`; then agent-b gets a config with an
// AuthorizationPolicy that DENIES `drop` and resets that half, and agent-a, whose config does
// not carry the policy (the control plane sends a node the policies of its own pods), closes
// each as its stream is cancelled: the sim test's shape (test/sim/policy-recheck.test.ts), one
// direction. Rows, per 1,000 connections closed:
//
//   recheck   the policy change: each agent's CPU until its last denied connection is recorded,
//             and the wall time until the client has seen every reset
//   peer-rst  the same count of the kept half reset by their clients (the agents' close path
//             with no policy work: the record, access log, RST_STREAM, socket close)
//   floor     a plain Node server resetting the same count of plain loopback sockets (one
//             socket each, no TLS, no HTTP/2, no records): what a close costs Node itself
//
//   node bench/recheck-cost.ts [--n N] [--c C] [--rounds R]
//   WEFT_COST_PROF=DIR   writes a CPU profile of each agent's re-check (last round) there
//
// Prints one JSON line; ratios are against the floor measured in the same run. Each row is the
// best of R rounds (a fresh set of connections each), as a shared machine only adds time.

import { fork, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { pino } from 'pino';
import { Registry } from 'prom-client';

import { ProxyRuntime } from '../src/app/proxy-runtime.ts';
import { BatchedLog } from '../src/telemetry/index.ts';
import { systemClock } from '../src/core/clock.ts';
import { DEFAULT_PORTS } from '../src/config/agent.ts';
import type { MeshContent } from '../src/model/resolve.ts';
import type { AuthorizationPolicyObject, Workload } from '../src/model/types.ts';
import { sharedPkiEnv, spiffeId, testCa, testLeaf } from '../test/support/certs.ts';

const NODE_A = '127.0.0.1';
const NODE_B = '127.0.0.2';
const CLIENT = { keep: '127.0.1.30', drop: '127.0.1.31' } as const;
const SINK = '127.0.3.30';
const FLOOR = '127.0.3.31';
const VIP = '198.18.201.1';
const PORTS = { ...DEFAULT_PORTS, outbound: 26001, inboundPlain: 26006, tunnel: 26008 };
const SINK_PORT = 18101;
const FLOOR_PORT = 18102;

function workload(name: string, ip: string, node: string): Workload {
  return {
    key: `cost/${name}`, name, namespace: 'cost', serviceAccount: name, node, ip, labels: { app: name }, enrolled: true,
    identity: spiffeId('cost', name),
  };
}

const DENY_DROP: AuthorizationPolicyObject = {
  name: 'no-drop', namespace: 'cost', selector: { app: 'sink' }, action: 'DENY', dryRun: false,
  rules: [{ from: [{ principals: [spiffeId('cost', 'drop')] }], to: [] }],
};

function meshContent(deny: boolean): MeshContent {
  const sink = workload('sink', SINK, 'b');
  const ports = [{ name: 'tcp-hold', port: SINK_PORT, targetPort: SINK_PORT, protocol: 'TCP' as const }];
  return {
    trustDomain: 'cluster.local',
    workloads: [workload('keep', CLIENT.keep, 'a'), workload('drop', CLIENT.drop, 'a'), sink],
    services: [{
      key: 'cost/sink', name: 'sink', namespace: 'cost', vip: VIP, ports, endpointSource: 'selector' as const,
      endpoints: [{ port: SINK_PORT, endpoints: [{ ip: SINK, port: SINK_PORT, node: 'b', workload: sink.key, weight: 1 }] }],
    }],
    policies: deny ? [DENY_DROP] : [],
    nodes: [{ name: 'a', address: NODE_A }, { name: 'b', address: NODE_B }],
  };
}

function credentialSet(identities: string[]) {
  return {
    trustBundlePem: testCa().cert, crlPem: undefined,
    certificates: identities.map((id) => {
      const leaf = testLeaf(id);
      return { identity: id, serial: id, keyPem: leaf.key, certPem: leaf.cert, chainPem: [] };
    }),
  };
}

const cpuMs = (since: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
};

/** Waits (polling every 2 ms) until `done` holds; resolves the CPU and wall ms since the start. */
async function settled(done: () => boolean, cpu0: NodeJS.CpuUsage, t0: number): Promise<{ cpuMs: number; ms: number }> {
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 2));
  return { cpuMs: cpuMs(cpu0), ms: performance.now() - t0 };
}

type Reply = Record<string, number>;

// ---- roles (child processes) ----

async function runAgent(node: 'a' | 'b'): Promise<(m: string[]) => Promise<Reply>> {
  const address = node === 'a' ? NODE_A : NODE_B;
  const destination = pino.destination({ dest: process.env.WEFT_COST_LOG === undefined ? '/dev/null' : 2, sync: false });
  const logger = pino({ level: 'info' }, new BatchedLog(destination));
  const runtime = new ProxyRuntime(
    { node, captureAddress: address, tunnelAddress: address, ports: PORTS, clusterDomain: 'cluster.local', cluster: 'Kubernetes' },
    { logger, registry: new Registry(), clock: systemClock, originalDestination: () => ({ address: VIP, port: SINK_PORT }) },
  );
  await runtime.setMesh(meshContent(false));
  runtime.setCredentials(credentialSet(node === 'a' ? [spiffeId('cost', 'keep'), spiffeId('cost', 'drop')] : [spiffeId('cost', 'sink')]));
  await runtime.listen();
  const session = new Session();
  return async ([what, arg]): Promise<Reply> => {
    if (what === 'open') return { open: runtime.connections.size };
    // 'recheck LEFT': the DENY policy; 'expect LEFT': wait for peers to reset theirs. Both
    // answer once only LEFT connections are open, with this process's CPU since the start.
    const left = Number(arg);
    const prof = process.env.WEFT_COST_PROF;
    if (prof !== undefined && what === 'recheck') {
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 250 });
      await session.post('Profiler.start');
    }
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let closed = 0;
    // The control plane sends a node only the policies that select its own pods (node-slice.ts):
    // agent-b judges and resets, agent-a's connections end when their streams are cancelled.
    if (what === 'recheck') closed = (await runtime.setMesh(meshContent(node === 'b'))).closed;
    const r = await settled(() => runtime.connections.size <= left, cpu0, t0);
    if (prof !== undefined && what === 'recheck') {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(join(prof, `recheck-agent-${node}.cpuprofile`), JSON.stringify(profile));
      session.disconnect();
    }
    if (what === 'recheck') await runtime.setMesh(meshContent(false));
    return { ...r, closed };
  };
}

async function runSink(): Promise<(m: string[]) => Promise<Reply>> {
  await new Promise<void>((resolve) => {
    createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => s.destroy());
      s.on('data', (b: Buffer) => s.write(b));
      s.on('end', () => s.end());
    }).listen({ port: SINK_PORT, host: SINK, backlog: 4096 }, resolve);
  });
  return () => Promise.resolve({});
}

/** The floor: a plain server that resets, on request, the connections it holds (as many per turn as the registry does). */
async function runFloor(): Promise<(m: string[]) => Promise<Reply>> {
  const held = new Set<Socket>();
  await new Promise<void>((resolve) => {
    createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      held.add(s);
      s.once('close', () => held.delete(s));
      s.on('data', (b: Buffer) => s.write(b));
    }).listen({ port: FLOOR_PORT, host: FLOOR, backlog: 4096 }, resolve);
  });
  return async () => {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const all = [...held];
    for (let i = 0; i < all.length; i += 256) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      for (const s of all.slice(i, i + 256)) s.resetAndDestroy();
    }
    const r = await settled(() => held.size === 0, cpu0, t0);
    return { ...r, closed: all.length };
  };
}

// ---- the load generator (parent) ----

interface Child {
  readonly name: string;
  readonly child: ChildProcess;
  ask(what: string): Promise<Reply>;
}

function spawnRole(name: string): Promise<Child> {
  const child = fork(import.meta.filename, ['--role', name], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...sharedPkiEnv() } });
  const ask = (what: string): Promise<Reply> => new Promise((resolve) => {
    child.once('message', (r: Reply) => resolve(r));
    child.send(what);
  });
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve({ name, child, ask }));
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
}

interface Held {
  readonly socket: Socket;
  /** Resolves the error code it closed with ('' for a clean close). */
  readonly closed: Promise<string>;
  closedAt: number;
}

/** Opens `n` connections from `from` to host:port, `c` at a time, each echoed once before it counts as open. */
async function openMany(n: number, c: number, from: string, host: string, port: number): Promise<Held[]> {
  const held: Held[] = [];
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    const s = connect({ host, port, localAddress: from, allowHalfOpen: true, noDelay: true });
    let code = '';
    s.once('error', (err: NodeJS.ErrnoException) => {
      code = err.code ?? 'error';
      reject(err);
    });
    const h: Held = {
      socket: s, closedAt: 0, closed: new Promise((done) => s.once('close', () => {
        h.closedAt = performance.now();
        done(code);
      })),
    };
    s.once('data', () => {
      s.removeAllListeners('error');
      s.on('error', (err: NodeJS.ErrnoException) => { code = err.code ?? 'error'; });
      held.push(h);
      resolve();
    });
    s.once('connect', () => s.write('ping'));
  });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      next += 1;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
  return held;
}

async function lastClose(held: readonly Held[], t0: number): Promise<{ ms: number; codes: Record<string, number> }> {
  const codes: Record<string, number> = {};
  for (const code of await Promise.all(held.map((h) => h.closed))) codes[code || 'clean'] = (codes[code || 'clean'] ?? 0) + 1;
  return { ms: Math.max(...held.map((h) => h.closedAt)) - t0, codes };
}

const per1k = (x: number, n: number): number => Math.round((x * 1000 * 10) / n) / 10;

async function main(): Promise<void> {
  const roleAt = process.argv.indexOf('--role');
  if (roleAt >= 0) {
    const role = process.argv[roleAt + 1] ?? '';
    process.once('SIGINT', () => process.exit(0));
    const handle = role === 'sink' ? await runSink() : role === 'floor' ? await runFloor() : await runAgent(role === 'agent-b' ? 'b' : 'a');
    process.on('message', (m: string) => {
      void handle(m.split(' ')).then((r) => process.send?.(r));
    });
    process.send?.('ready');
    return;
  }
  const { values } = parseArgs({ options: { n: { type: 'string', default: '5000' }, c: { type: 'string', default: '100' }, rounds: { type: 'string', default: '3' } } });
  const n = Number(values.n);
  const c = Number(values.c);
  const rounds = Number(values.rounds);
  if (!(n >= 2 && n <= 16_000)) throw new Error(`--n must be 2..16000 (descriptors: the client holds them all), got ${values.n}`);
  testCa();
  for (const id of ['keep', 'drop', 'sink']) testLeaf(spiffeId('cost', id));
  const children: Child[] = [];
  try {
    for (const name of ['sink', 'floor', 'agent-a', 'agent-b']) children.push(await spawnRole(name));
    const [, floor, agentA, agentB] = children as [Child, Child, Child, Child];
    const half = Math.floor(n / 2);
    const rows: Record<string, Record<string, number>[]> = { recheck: [], 'peer-rst': [], floor: [] };
    // Round 0 warms up (JIT, allocators) with a tenth of the load and is not reported.
    for (let round = 0; round <= rounds; round++) {
      const k = round === 0 ? Math.max(1, Math.floor(half / 10)) : half;
      const keep = await openMany(k, c, CLIENT.keep, NODE_A, PORTS.outbound);
      const drop = await openMany(k, c, CLIENT.drop, NODE_A, PORTS.outbound);
      const plain = await openMany(k, c, CLIENT.keep, FLOOR, FLOOR_PORT);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const open = (await agentA.ask('open')).open;
      if (open !== 2 * k) throw new Error(`agent-a holds ${open} connections, want ${2 * k}`);

      let t0 = performance.now();
      const [a, b] = await Promise.all([agentA.ask(`recheck ${k}`), agentB.ask(`recheck ${k}`)]);
      const seen = await lastClose(drop, t0);
      if (seen.codes.ECONNRESET !== k || b.closed !== k) throw new Error(`re-check: want ${k} reset by agent-b and seen by the client, got ${JSON.stringify({ seen, a, b })}`);
      const alive = await Promise.all(keep.slice(0, 50).map((h) => new Promise<boolean>((resolve) => {
        h.socket.once('data', () => resolve(true));
        h.socket.write('ping');
      })));
      if (!alive.every(Boolean) || keep.some((h) => h.closedAt !== 0)) throw new Error('re-check closed a connection it allows');
      const recheck = { clientMs: seen.ms, aClosed: a.closed ?? 0, bClosed: b.closed ?? 0, aCpuMs: a.cpuMs ?? 0, bCpuMs: b.cpuMs ?? 0, aMs: a.ms ?? 0, bMs: b.ms ?? 0 };

      t0 = performance.now();
      const peer = Promise.all([agentA.ask('expect 0'), agentB.ask('expect 0')]);
      for (let i = 0; i < keep.length; i += 256) {
        if (i > 0) await new Promise((resolve) => setImmediate(resolve));
        for (const h of keep.slice(i, i + 256)) h.socket.resetAndDestroy();
      }
      const [pa, pb] = await peer;
      const peerRst = { clientMs: (await lastClose(keep, t0)).ms, aCpuMs: pa.cpuMs ?? 0, bCpuMs: pb.cpuMs ?? 0, aMs: pa.ms ?? 0, bMs: pb.ms ?? 0 };

      t0 = performance.now();
      const f = await floor.ask('reset');
      const fs = await lastClose(plain, t0);
      if (fs.codes.ECONNRESET !== k) throw new Error(`floor: want ${k} reset, got ${JSON.stringify(fs.codes)}`);
      if (round === 0) continue;
      rows.recheck?.push(recheck);
      rows['peer-rst']?.push(peerRst);
      rows.floor?.push({ clientMs: fs.ms, aCpuMs: f.cpuMs ?? 0, bCpuMs: 0, aMs: f.ms ?? 0, bMs: 0 });
    }
    const best = (xs: readonly Record<string, number>[], key: string): number => Math.min(...xs.map((x) => x[key] ?? NaN));
    const floorCpu = best(rows.floor ?? [], 'aCpuMs');
    const floorWall = best(rows.floor ?? [], 'clientMs');
    const table = Object.fromEntries(Object.entries(rows).map(([name, xs]) => {
      const cpuA = best(xs, 'aCpuMs');
      const cpuB = best(xs, 'bCpuMs');
      const wall = best(xs, 'clientMs');
      return [name, {
        wallMsPer1k: per1k(wall, half), agentACpuMsPer1k: per1k(cpuA, half), agentBCpuMsPer1k: per1k(cpuB, half),
        cpuVsFloor: Math.round((10 * Math.max(cpuA, cpuB)) / floorCpu) / 10, wallVsFloor: Math.round((10 * wall) / floorWall) / 10,
      }];
    }));
    process.stdout.write(`${JSON.stringify({ bench: 'recheck-cost', connections: n, closedPerSide: half, rounds, rows: table, raw: rows })}\n`);
  } finally {
    await Promise.all(children.map((ch) => new Promise((r) => {
      ch.child.once('exit', r);
      ch.child.kill('SIGINT');
    })));
  }
}

await main();
