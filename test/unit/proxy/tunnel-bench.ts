// Throughput and connection rate of the data path on loopback, each party in its own process
// as in production:
//   node test/unit/proxy/tunnel-bench.ts [MiB=512] [streams=1] [connections=2000]
// Paths: raw (client -> pod), direct (client -> outbound -> pod on the same node), tunnel
// (client -> outbound -> mTLS HTTP/2 -> inbound -> pod). Throughput: the client uploads MiB
// per stream, the pod discards and answers with one byte after the client's FIN; the figure
// is bytes uploaded per second of wall time. Rate: that many 100-byte connections, 50 at a
// time. Not a test (no .test.ts): a benchmark anyone can run.

import { fork, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo } from 'node:net';

import { systemClock } from '../../../src/core/clock.ts';
import { InboundTunnel } from '../../../src/proxy/inbound-tunnel.ts';
import { OutboundListener } from '../../../src/proxy/outbound.ts';
import { TunnelPool } from '../../../src/proxy/tunnel-pool.ts';
import { UpstreamHealth } from '../../../src/proxy/upstream-health.ts';
import { uploadThrough } from '../../../bench/tools/upload.ts';
import { sharedPkiEnv, spiffeId, testCa, testLeaf } from '../../support/certs.ts';
import { TestMesh, allowAll, endpoint, service, testCredentials, workload } from './harness.ts';

const VIP = { address: '198.18.10.1', port: 80 };

function mesh(podNode: string, podPort: number): TestMesh {
  const m = new TestMesh();
  m.addWorkload(workload('client', 'bench', '127.0.1.10', 'a'));
  const pod = m.addWorkload(workload('sink', 'bench', '127.0.2.20', podNode));
  m.nodes.set('a', '127.0.0.1');
  m.nodes.set('b', '127.0.0.2');
  m.addService(service('sink', 'bench', VIP.address, VIP.port, podPort), [endpoint(pod, podPort)]);
  return m;
}

async function role(name: string, args: string[]): Promise<AddressInfo> {
  if (name === 'sink') {
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.resume();
      s.on('end', () => s.end('.'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.2.20', r));
    return server.address() as AddressInfo;
  }
  const [podNode = 'b', podPort = '0', tunnelPort = '0'] = args;
  const m = mesh(podNode, Number(podPort));
  if (name === 'inbound') {
    const inbound = new InboundTunnel({ mesh: m, credentials: testCredentials(['spiffe://cluster.local/ns/bench/sa/sink']), authorize: allowAll },
      { nodeName: 'b', host: '127.0.0.2', port: 0 });
    return inbound.listen();
  }
  const pool = new TunnelPool({ credentials: testCredentials(['spiffe://cluster.local/ns/bench/sa/client']) });
  const outbound = new OutboundListener({
    originalDestination: () => VIP, mesh: m, authorize: allowAll, tunnels: pool, health: new UpstreamHealth(systemClock),
  }, { nodeName: 'a', host: '127.0.0.1', port: 0, tunnelPort: Number(tunnelPort) });
  return outbound.listen();
}

interface Role {
  readonly child: ChildProcess;
  readonly address: AddressInfo;
  /** CPU seconds the process has used so far: [user, system]. */
  cpu(): Promise<[number, number]>;
}

function spawnRole(name: string, args: string[]): Promise<Role> {
  const child = fork(import.meta.filename, ['--role', name, ...args], {
    stdio: 'inherit', env: { ...process.env, ...sharedPkiEnv() },
    // WEFT_BENCH_PROFILE=dir writes a CPU profile per proxy process there.
    execArgv: process.env.WEFT_BENCH_PROFILE === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${process.env.WEFT_BENCH_PROFILE}`],
  });
  const cpu = (): Promise<[number, number]> => new Promise((resolve) => {
    child.once('message', (u: NodeJS.CpuUsage) => resolve([u.user / 1e6, u.system / 1e6]));
    child.send('cpu');
  });
  return new Promise((resolve, reject) => {
    child.once('message', (address: AddressInfo) => resolve({ child, address, cpu }));
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
}

/** Runs `work` and reports wall time and the CPU the proxies spent on it. */
async function timed(proxies: readonly Role[], work: () => Promise<void>): Promise<{ secs: number; cpu: number; user: number; each: number[] }> {
  const before = await Promise.all(proxies.map((p) => p.cpu()));
  const t0 = performance.now();
  await work();
  const secs = (performance.now() - t0) / 1000;
  const after = await Promise.all(proxies.map((p) => p.cpu()));
  let user = 0;
  let system = 0;
  const each: number[] = [];
  after.forEach(([u, s], i) => {
    const du = u - (before[i]?.[0] ?? 0);
    const ds = s - (before[i]?.[1] ?? 0);
    user += du;
    system += ds;
    each.push(du + ds);
  });
  return { secs, cpu: user + system, user, each };
}

/** Uploads exactly `bytes` from the client's address, half-closes, and resolves on the pod's answer and FIN. */
function upload(to: AddressInfo, bytes: number): Promise<void> {
  return uploadThrough(connect({ host: to.address, port: to.port, localAddress: '127.0.1.10', allowHalfOpen: true }), bytes);
}

async function measure(label: string, to: AddressInfo, proxies: readonly Role[], mib: number, streams: number): Promise<void> {
  const { secs, cpu, user } = await timed(proxies, () => Promise.all(Array.from({ length: streams }, () => upload(to, mib * 1024 * 1024))).then(() => undefined));
  const total = mib * streams;
  const perGiB = proxies.length === 0 ? '' : `; proxies ${(cpu * 1024 / total).toFixed(2)} CPU-s per GiB, ${(user * 1024 / total).toFixed(2)} of it user`;
  process.stdout.write(`${label.padEnd(7)} ${streams} x ${mib} MiB: ${(total / secs).toFixed(0).padStart(5)} MiB/s (${secs.toFixed(2)} s${perGiB})\n`);
}

async function rate(label: string, to: AddressInfo, proxies: readonly Role[], connections: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < connections) {
      next += 1;
      await upload(to, 100);
    }
  };
  const { secs, cpu, user, each } = await timed(proxies, () => Promise.all(Array.from({ length: 50 }, worker)).then(() => undefined));
  const split = each.length > 1 ? ` (${each.map((c) => ((c * 1e6) / connections).toFixed(0)).join(' + ')})` : '';
  const per = proxies.length === 0 ? '' : `; proxies ${((cpu * 1e6) / connections).toFixed(0)}${split} CPU-us per connection, ${((user * 1e6) / connections).toFixed(0)} of it user`;
  process.stdout.write(`${label.padEnd(7)} ${connections} connections: ${(connections / secs).toFixed(0).padStart(5)} conn/s${per}\n`);
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--role');
  if (i >= 0) {
    process.once('SIGINT', () => process.exit(0));
    process.on('message', () => process.send?.(process.cpuUsage()));
    const address = await role(process.argv[i + 1] ?? '', process.argv.slice(i + 2));
    process.send?.(address);
    return;
  }
  const mib = Number(process.argv[2] ?? 512);
  const streams = Number(process.argv[3] ?? 1);
  const connections = Number(process.argv[4] ?? 2000);
  const children: ChildProcess[] = [];
  // Made here once so the children share one CA.
  testCa();
  testLeaf(spiffeId('bench', 'sink'));
  testLeaf(spiffeId('bench', 'client'));
  try {
    const sink = await spawnRole('sink', []);
    children.push(sink.child);
    await measure('raw', sink.address, [], mib, streams);
    await rate('raw', sink.address, [], connections);

    const direct = await spawnRole('outbound', ['a', String(sink.address.port), '0']);
    children.push(direct.child);
    await measure('direct', direct.address, [direct], mib, streams);
    await rate('direct', direct.address, [direct], connections);

    const inbound = await spawnRole('inbound', ['b', String(sink.address.port)]);
    children.push(inbound.child);
    const outbound = await spawnRole('outbound', ['b', String(sink.address.port), String(inbound.address.port)]);
    children.push(outbound.child);
    await measure('tunnel', outbound.address, [outbound, inbound], mib, streams);
    await rate('tunnel', outbound.address, [outbound, inbound], connections);
  } finally {
    // SIGINT lets a profiled child write its profile.
    await Promise.all(children.map((c) => new Promise((r) => {
      c.once('exit', r);
      c.kill('SIGINT');
    })));
  }
}

await main();
