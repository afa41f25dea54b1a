// What one connection, one request, one GiB and one idle connection cost the real proxy
// runtime (ProxyRuntime: listeners, tunnel pool, telemetry with its access log), on loopback,
// each party in its own process. No root, no simulator, no BPF: the original destination is
// chosen by the client's source address. Used to profile and to count instructions while a
// shared machine makes wall-clock benchmarks meaningless:
//
//   node bench/proxy-cost.ts MODE [--path same|cross] [--n N] [--c C] [--mib M] [--kernel]
//     MODE conn   N connections (C at a time): 100 bytes up, 100 down, close
//          rr     C keep-alive connections, N requests in all: 1 KiB up, 1 KiB down
//          bulk   C streams of M MiB each, uploaded through the path
//          idle   N connections held open (the server sends one byte), then RSS and heap read
//          http   C keep-alive HTTP/1.1 connections, N GETs in all, 1 KiB responses, through
//                 the L7 path (the Service port is named http): one request in flight per connection
//          h2     C h2c connections, N GETs in all, 1 KiB responses, through the L7 path (the Service
//                 port is named http2): --streams S requests in flight on each connection (default 16)
//   --kernel  same-path connections are kernel-spliced (bpf/splice.bpf.c; root and bpftool)
//   WEFT_COST_PROF=DIR        writes a CPU profile of the measured load per proxy process there
//   WEFT_COST_HEAP=DIR        idle: writes a heap snapshot per proxy process there while the connections are held
//   WEFT_COST_CALLGRIND=DIR   runs the proxies under valgrind --tool=callgrind (instructions)
//   WEFT_COST_NODE_ARGS="..." more node flags for the proxy processes (e.g. --trace-gc)
//
// Prints one JSON line: the mode, the path, the load's own figures, and per proxy process its
// CPU (user, system) and memory (RSS, V8 heap) before and after, so costs are per unit of load.

import { fork, type ChildProcess } from 'node:child_process';
import { connect as h2connect, createServer as createH2Server, type ClientHttp2Session } from 'node:http2';
import { connect, createServer, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { pino } from 'pino';
import { Registry } from 'prom-client';

import { NativeKernelSplicer } from '../src/app/kernel-splicer.ts';
import { ProxyRuntime } from '../src/app/proxy-runtime.ts';
import { KernelSpliceProgram, type KernelSplicePins } from '../src/redirect/index.ts';
import { BatchedLog } from '../src/telemetry/index.ts';
import { systemClock } from '../src/core/clock.ts';
import { DEFAULT_PORTS } from '../src/config/agent.ts';
import type { MeshContent } from '../src/model/resolve.ts';
import type { Workload } from '../src/model/types.ts';
import { sharedPkiEnv, spiffeId, testCa, testLeaf } from '../test/support/certs.ts';
import { uploadThrough } from './tools/upload.ts';

const NODE_A = '127.0.0.1';
const NODE_B = '127.0.0.2';
const CLIENT = { same: '127.0.1.10', cross: '127.0.1.11' } as const;
const SINK = { a: '127.0.2.20', b: '127.0.3.20' } as const;
const VIP = { same: '198.18.200.1', cross: '198.18.200.2' } as const;
const PORTS = { ...DEFAULT_PORTS, outbound: 25001, inboundPlain: 25006, tunnel: 25008 };
const SINK_PORT = { conn: 18001, rr: 18002, bulk: 18003, idle: 18004, http: 18005, h2: 18006 } as const;

type Path = keyof typeof CLIENT;
type Mode = keyof typeof SINK_PORT;

function workload(name: string, ip: string, node: string): Workload {
  return {
    key: `cost/${name}`, name, namespace: 'cost', serviceAccount: name, node, ip, labels: { app: name }, enrolled: true,
    identity: spiffeId('cost', name),
  };
}

function meshContent(): MeshContent {
  const sinkA = workload('sink-a', SINK.a, 'a');
  const sinkB = workload('sink-b', SINK.b, 'b');
  const ports = Object.values(SINK_PORT).map((p) => ({ name: p === SINK_PORT.http ? 'http' : p === SINK_PORT.h2 ? 'http2' : `tcp-${p}`, port: p, targetPort: p, protocol: 'TCP' as const }));
  const service = (name: string, vip: string, pod: Workload) => ({
    key: `cost/${name}`, name, namespace: 'cost', vip, ports, endpointSource: 'selector' as const,
    endpoints: ports.map((p) => ({ port: p.port, endpoints: [{ ip: pod.ip ?? '', port: p.targetPort, node: pod.node, workload: pod.key, weight: 1 }] })),
  });
  return {
    trustDomain: 'cluster.local',
    workloads: [workload('client-same', CLIENT.same, 'a'), workload('client-cross', CLIENT.cross, 'a'), sinkA, sinkB],
    services: [service('local', VIP.same, sinkA), service('remote', VIP.cross, sinkB)],
    policies: [],
    nodes: [{ name: 'a', address: NODE_A }, { name: 'b', address: NODE_B }],
  };
}

function credentialSet(identities: string[]) {
  const ca = testCa();
  return {
    trustBundlePem: ca.cert, crlPem: undefined,
    certificates: identities.map((id) => {
      const leaf = testLeaf(id);
      return { identity: id, serial: id, keyPem: leaf.key, certPem: leaf.cert, chainPem: [] };
    }),
  };
}

// ---- roles (child processes) ----

async function runAgent(node: 'a' | 'b'): Promise<void> {
  const address = node === 'a' ? NODE_A : NODE_B;
  const destination = pino.destination({ dest: process.env.WEFT_COST_LOG === undefined ? '/dev/null' : 2, sync: false });
  const logger = pino({ level: 'info' }, new BatchedLog(destination));
  const runtime = new ProxyRuntime(
    { node, captureAddress: address, tunnelAddress: address, ports: PORTS, clusterDomain: 'cluster.local', cluster: 'Kubernetes' },
    {
      logger, registry: new Registry(), clock: systemClock,
      ...(process.env.WEFT_COST_KERNEL_PINS === undefined ? {} : { kernel: new NativeKernelSplicer(JSON.parse(process.env.WEFT_COST_KERNEL_PINS) as KernelSplicePins) }),
      originalDestination: (s: Socket) => {
        const ip = (s.remoteAddress ?? '').replace(/^::ffff:/, '');
        const port = SINK_PORT[(process.env.WEFT_COST_MODE ?? 'conn') as Mode];
        return { address: ip === CLIENT.cross ? VIP.cross : VIP.same, port };
      },
    },
  );
  await runtime.setMesh(meshContent());
  runtime.setCredentials(credentialSet(node === 'a'
    ? [spiffeId('cost', 'client-same'), spiffeId('cost', 'client-cross')]
    : [spiffeId('cost', 'sink-b')]));
  await runtime.listen();
}

const HTTP_REPLY = Buffer.concat([
  Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 1024\r\n\r\n', 'latin1'),
  Buffer.alloc(1024, 0x61),
]);

function runSinks(): Promise<void> {
  const listen = (port: number, onSocket: (s: Socket) => void): Promise<void> => Promise.all([SINK.a, SINK.b].map((host) => new Promise<void>((resolve) => {
    createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => s.destroy());
      onSocket(s);
    }).listen({ port, host, backlog: 4096 }, resolve);
  }))).then(() => undefined);
  const reply = Buffer.alloc(1024, 0x61);
  return Promise.all([
    listen(SINK_PORT.conn, (s) => {
      let got = 0;
      s.on('data', (b: Buffer) => {
        got += b.length;
        if (got >= 100) s.end(reply.subarray(0, 100));
      });
    }),
    listen(SINK_PORT.rr, (s) => {
      let got = 0;
      s.on('data', (b: Buffer) => {
        got += b.length;
        while (got >= 1024) {
          got -= 1024;
          s.write(reply);
        }
      });
      s.on('end', () => s.end());
    }),
    listen(SINK_PORT.bulk, (s) => {
      s.resume();
      s.on('end', () => s.end('.'));
    }),
    listen(SINK_PORT.http, (s) => {
      // Answers every request head (GETs, no body) with a fixed 1 KiB response, keep-alive.
      let pending = '';
      s.setNoDelay(true);
      s.on('data', (b: Buffer) => {
        pending += b.toString('latin1');
        let end = pending.indexOf('\r\n\r\n');
        while (end >= 0) {
          pending = pending.slice(end + 4);
          s.write(HTTP_REPLY);
          end = pending.indexOf('\r\n\r\n');
        }
      });
      s.on('end', () => s.end());
    }),
    ...[SINK.a, SINK.b].map((host) => new Promise<void>((resolve) => {
      // h2c with prior knowledge: every stream answered with the same 1 KiB.
      const server = createH2Server({ settings: { maxConcurrentStreams: 1000 } }, (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1024 });
        res.end(reply);
      });
      server.listen({ port: SINK_PORT.h2, host }, resolve);
    })),
    listen(SINK_PORT.idle, (s) => {
      s.write('x');
      s.resume();
      s.on('end', () => s.end());
    }),
  ]).then(() => undefined);
}

interface Stats {
  readonly cpu: NodeJS.CpuUsage;
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

function stats(): Stats {
  const m = process.memoryUsage();
  return { cpu: process.cpuUsage(), rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}

// ---- the load generator (parent) ----

interface Child {
  readonly name: string;
  readonly child: ChildProcess;
  /** 'stats', or 'profile-start' / 'profile-stop DIR' (answered with stats too). */
  stats(what?: string): Promise<Stats>;
}

function spawnRole(name: string, mode: Mode): Promise<Child> {
  const grind = process.env.WEFT_COST_CALLGRIND;
  const isProxy = name.startsWith('agent');
  const env = { ...process.env, ...sharedPkiEnv(), WEFT_COST_MODE: mode };
  const options = isProxy && grind !== undefined
    ? {
      execPath: 'valgrind',
      execArgv: ['--tool=callgrind', `--callgrind-out-file=${join(grind, `callgrind.${name}.%p`)}`, '--smc-check=all-non-file', process.execPath, '--expose-gc'],
    }
    : { execArgv: ['--expose-gc', ...(isProxy ? (process.env.WEFT_COST_NODE_ARGS ?? '').split(' ').filter((a) => a !== '') : [])] };
  const child = fork(import.meta.filename, ['--role', name], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env, ...options });
  const ask = (what: string = 'stats'): Promise<Stats> => new Promise((resolve) => {
    child.once('message', (s: Stats) => resolve(s));
    child.send(what);
  });
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve({ name, child, stats: ask }));
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
}

function dial(path: Path, port: number): Socket {
  return connect({ host: NODE_A, port, localAddress: CLIENT[path], allowHalfOpen: true, noDelay: true });
}

function oneConnection(path: Path): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = dial(path, PORTS.outbound);
    let got = 0;
    s.on('error', reject);
    s.on('data', (b: Buffer) => { got += b.length; });
    s.on('end', () => {
      s.end();
      if (got === 100) resolve();
      else reject(new Error(`got ${got} bytes, want 100`));
    });
    s.once('connect', () => s.write(Buffer.alloc(100, 0x62)));
  });
}

async function loadConn(path: Path, n: number, c: number): Promise<Record<string, number>> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      next += 1;
      await oneConnection(path);
    }
  };
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
  return { connections: n };
}

/**
 * C connections, N requests in all, one in flight on each: `request` is sent again each time
 * the connection's reader (one per connection) says a reply came whole.
 */
async function loadRequests(path: Path, n: number, c: number, request: Buffer, reader: () => (b: Buffer) => number): Promise<void> {
  let remaining = n;
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    const s = dial(path, PORTS.outbound);
    const replies = reader();
    s.on('error', reject);
    const send = (): void => {
      if (remaining <= 0) {
        s.end();
        return;
      }
      remaining -= 1;
      s.write(request);
    };
    s.on('data', (b: Buffer) => {
      for (let k = replies(b); k > 0; k--) send();
    });
    s.on('end', () => resolve());
    s.once('connect', send);
  });
  await Promise.all(Array.from({ length: c }, one));
}

async function loadRr(path: Path, n: number, c: number): Promise<Record<string, number>> {
  await loadRequests(path, n, c, Buffer.alloc(1024, 0x63), () => {
    let got = 0;
    return (b) => {
      got += b.length;
      const whole = Math.floor(got / 1024);
      got -= whole * 1024;
      return whole;
    };
  });
  return { requests: n };
}

async function loadHttp(path: Path, n: number, c: number): Promise<Record<string, number>> {
  const request = Buffer.from(`GET / HTTP/1.1\r\nhost: ${path === 'same' ? 'local' : 'remote'}.cost.svc.cluster.local:${SINK_PORT.http}\r\n\r\n`, 'latin1');
  let failed = 0;
  await loadRequests(path, n, c, request, () => {
    let buffered = '';
    // A response is whole once its head and its 1,024 body bytes are in.
    return (b) => {
      buffered += b.toString('latin1');
      let whole = 0;
      for (;;) {
        const head = buffered.indexOf('\r\n\r\n');
        if (head < 0 || buffered.length < head + 4 + 1024) return whole;
        if (!buffered.startsWith('HTTP/1.1 200')) failed += 1;
        buffered = buffered.slice(head + 4 + 1024);
        whole += 1;
      }
    };
  });
  return { requests: n, failed };
}

async function loadH2(path: Path, n: number, c: number, streams: number): Promise<Record<string, number>> {
  let remaining = n;
  let failed = 0;
  const authority = `${path === 'same' ? 'local' : 'remote'}.cost.svc.cluster.local:${SINK_PORT.h2}`;
  const one = (session: ClientHttp2Session): Promise<void> => new Promise((resolve) => {
    const next = (): void => {
      if (remaining <= 0) {
        resolve();
        return;
      }
      remaining -= 1;
      const req = session.request({ ':path': '/', ':authority': authority });
      req.on('response', (h) => {
        if (h[':status'] !== 200) failed += 1;
      });
      req.on('error', () => { failed += 1; });
      req.resume();
      req.on('close', next);
      req.end();
    };
    next();
  });
  await Promise.all(Array.from({ length: c }, async () => {
    const session = h2connect(`http://${authority}`, { createConnection: () => dial(path, PORTS.outbound) });
    session.on('error', () => undefined);
    await Promise.all(Array.from({ length: streams }, () => one(session)));
    session.close();
  }));
  return { requests: n, failed };
}

async function loadBulk(path: Path, mib: number, c: number): Promise<Record<string, number>> {
  await Promise.all(Array.from({ length: c }, () => uploadThrough(dial(path, PORTS.outbound), mib * 1024 * 1024)));
  return { gib: (mib * c) / 1024 };
}

async function loadIdle(path: Path, n: number, c: number, proxies: readonly Child[]): Promise<Record<string, number>> {
  const open: Socket[] = [];
  let next = 0;
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    const s = dial(path, PORTS.outbound);
    s.on('error', reject);
    s.once('data', () => {
      s.pause();
      open.push(s);
      resolve();
    });
  });
  const worker = async (): Promise<void> => {
    while (next < n) {
      next += 1;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
  await new Promise((r) => setTimeout(r, 1000));
  // Read while held; the caller reads "after" once they are closed again.
  const snapshots = process.env.WEFT_COST_HEAP;
  const held = await Promise.all(proxies.map((p) => p.stats(snapshots === undefined ? 'stats' : `heap-snapshot ${snapshots}`)));
  for (const s of open) s.destroy();
  return Object.fromEntries(held.flatMap((h, i) => [[`${proxies[i]?.name}.heldRss`, h.rss], [`${proxies[i]?.name}.heldHeap`, h.heapUsed], [`${proxies[i]?.name}.heldExternal`, h.external]]));
}

async function main(): Promise<void> {
  const roleAt = process.argv.indexOf('--role');
  if (roleAt >= 0) {
    const role = process.argv[roleAt + 1] ?? '';
    process.once('SIGINT', () => process.exit(0));
    const session = new Session();
    process.on('message', (m: string) => {
      void (async () => {
        if (m === 'profile-start') {
          session.connect();
          await session.post('Profiler.enable');
          await session.post('Profiler.setSamplingInterval', { interval: 200 });
          await session.post('Profiler.start');
        } else if (m.startsWith('profile-stop ')) {
          const { profile } = await session.post('Profiler.stop');
          writeFileSync(join(m.slice('profile-stop '.length), `${role}.cpuprofile`), JSON.stringify(profile));
          session.disconnect();
        } else if (m.startsWith('heap-snapshot ')) {
          (globalThis as { gc?: () => void }).gc?.();
          writeHeapSnapshot(join(m.slice('heap-snapshot '.length), `${role}.heapsnapshot`));
        } else {
          (globalThis as { gc?: () => void }).gc?.();
        }
        process.send?.(stats());
      })();
    });
    if (role === 'sinks') await runSinks();
    else await runAgent(role === 'agent-b' ? 'b' : 'a');
    process.send?.('ready');
    return;
  }
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      path: { type: 'string', default: 'same' }, n: { type: 'string' }, c: { type: 'string' }, mib: { type: 'string', default: '256' },
      kernel: { type: 'boolean', default: false }, streams: { type: 'string', default: '16' },
    },
  });
  const mode = (positionals[0] ?? 'conn') as Mode;
  if (!(mode in SINK_PORT)) throw new Error(`mode must be one of ${Object.keys(SINK_PORT).join(', ')}, got ${mode}`);
  const path = values.path as Path;
  if (!(path in CLIENT)) throw new Error(`--path must be same or cross, got ${path}`);
  const n = Number(values.n ?? (mode === 'idle' ? 2000 : mode === 'rr' || mode === 'http' || mode === 'h2' ? 20000 : 2000));
  const c = Number(values.c ?? (mode === 'bulk' ? 1 : mode === 'idle' ? 200 : 50));
  testCa();
  for (const id of ['client-same', 'client-cross', 'sink-b']) testLeaf(spiffeId('cost', id));
  const children: Child[] = [];
  const kernel = values.kernel ? await KernelSpliceProgram.start('weft-cost') : undefined;
  if (kernel !== undefined) process.env.WEFT_COST_KERNEL_PINS = JSON.stringify(kernel.pins);
  try {
    children.push(await spawnRole('sinks', mode));
    const proxies = [await spawnRole('agent-a', mode), ...(path === 'cross' ? [await spawnRole('agent-b', mode)] : [])];
    children.push(...proxies);
    // Warm up: JIT, pools and allocators, so the figures are per unit of steady load. With the
    // mode's own load: the agents send every connection to that mode's sink, and the bulk and
    // request sinks never answer a connection's 100 bytes the way loadConn waits for.
    if (mode === 'conn') await loadConn(path, 200, 20);
    else if (mode === 'rr') await loadRr(path, 2000, Math.min(c, 20));
    else if (mode === 'http') await loadHttp(path, 2000, Math.min(c, 20));
    else if (mode === 'h2') await loadH2(path, 2000, Math.min(c, 4), Number(values.streams));
    else if (mode === 'bulk') await loadBulk(path, 16, 1);
    const prof = process.env.WEFT_COST_PROF;
    if (prof !== undefined) await Promise.all(proxies.map((p) => p.stats('profile-start')));
    const before = await Promise.all(proxies.map((p) => p.stats()));
    const t0 = performance.now();
    const load = mode === 'conn' ? await loadConn(path, n, c)
      : mode === 'rr' ? await loadRr(path, n, c)
        : mode === 'http' ? await loadHttp(path, n, c)
          : mode === 'h2' ? await loadH2(path, n, c, Number(values.streams))
        : mode === 'bulk' ? await loadBulk(path, Number(values.mib), c)
          : await loadIdle(path, n, c, proxies);
    const secs = (performance.now() - t0) / 1000;
    const after = await Promise.all(proxies.map((p) => p.stats()));
    if (prof !== undefined) await Promise.all(proxies.map((p) => p.stats(`profile-stop ${prof}`)));
    const per = proxies.map((p, i) => {
      const b = before[i];
      const a = after[i];
      return {
        name: p.name, userS: (a.cpu.user - b.cpu.user) / 1e6, systemS: (a.cpu.system - b.cpu.system) / 1e6,
        rssBefore: b.rss, rssAfter: a.rss, heapBefore: b.heapUsed, heapAfter: a.heapUsed, heapTotalBefore: b.heapTotal, heapTotalAfter: a.heapTotal, externalAfter: a.external, arrayBuffersAfter: a.arrayBuffers,
      };
    });
    process.stdout.write(`${JSON.stringify({ mode, path, n, c, kernel: kernel !== undefined, secs, load, proxies: per })}\n`);
  } finally {
    await Promise.all(children.map((ch) => new Promise((r) => {
      ch.child.once('exit', r);
      ch.child.kill('SIGINT');
    })));
    kernel?.close();
  }
}

await main();
