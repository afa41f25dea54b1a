// Same-node connections held in the kernel (kernel-held.ts) through the real outbound listener,
// the real splice program and the native addon's epoll watch, on loopback: once the pair is
// adopted JavaScript holds no socket of it, and still the bytes arrive exactly both ways and
// are counted, a FIN from either side half-closes the other, a reset from either side resets
// the other, a policy re-check and a drain end it, the half-closed idle timeout fires, and
// whatever way it ends the pair's map entries and descriptors are gone.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';

import { ManualClock } from '../../../src/core/clock.ts';
import { NativeKernelSplicer } from '../../../src/app/kernel-splicer.ts';
import { NATIVE_ADDON_PATH } from '../../../src/core/native-addon.ts';
import { ConnectionRegistry } from '../../../src/proxy/connection-registry.ts';
import type { ByteSource, ConnectionObserver } from '../../../src/proxy/contracts.ts';
import type { KernelSplicer } from '../../../src/proxy/kernel-splice.ts';
import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { OutboundListener } from '../../../src/proxy/outbound.ts';
import { TunnelPool } from '../../../src/proxy/tunnel-pool.ts';
import { UpstreamHealth } from '../../../src/proxy/upstream-health.ts';
import { KernelSpliceProgram } from '../../../src/redirect/index.ts';
import { KERNEL_SPLICE_OBJECT } from '../../../src/redirect/kernel-splice.ts';
import { cannotRun, needsRoot } from '../../support/root.ts';
import { OriginalDestinations, TestMesh, allowAll, dialCaptured, testCredentials, until, workload } from './harness.ts';

const BASE = `/sys/fs/bpf/weft-test-held-${process.pid}`;
const SERVER_IP = '127.0.3.1';

function ready(t: TestContext): boolean {
  if (!needsRoot(t, ['bpftool'])) return false;
  if (!existsSync(KERNEL_SPLICE_OBJECT)) return cannotRun(t, `${KERNEL_SPLICE_OBJECT} is not built; run npm run bootstrap`);
  if (!existsSync(NATIVE_ADDON_PATH)) return cannotRun(t, `${NATIVE_ADDON_PATH} is not built; run npm run bootstrap`);
  return true;
}

interface Recorded {
  bytes?: ByteSource;
  flags?: string;
  detail?: string;
  /** The counts when the record was written. */
  read?: number;
  written?: number;
}

function recorder(): ConnectionObserver & { records: Recorded[] } {
  const records: Recorded[] = [];
  return {
    records,
    open: () => {
      const r: Recorded = {};
      records.push(r);
      return {
        identify: () => undefined,
        countBytes: (s) => {
          r.bytes = s;
        },
        finish: (flags, detail) => {
          assert.equal(r.flags, undefined, 'finish called twice');
          r.flags = flags;
          r.detail = detail;
          r.read = r.bytes?.bytesRead;
          r.written = r.bytes?.bytesWritten;
        },
      };
    },
    handshakeFailed: () => undefined,
  };
}

function payload(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed) % 251;
  return b;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function collect(socket: Socket): Promise<{ bytes: number; sha: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    socket.once('end', () => resolve({ bytes, sha: h.digest('hex') }));
    socket.once('error', reject);
  });
}

function errorCode(s: Socket): Promise<string | undefined> {
  return new Promise((resolve) => {
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code));
    s.once('close', () => resolve(undefined));
    s.resume();
  });
}

/**
 * The client uploads `up` and half-closes; the server answers `down` only after that FIN (the
 * connection is half closed meanwhile). Both arrive exact, and the first record is a clean
 * close that counts both, to the byte.
 */
async function uploadThenAnswer(observer: { records: Recorded[] }, client: Socket, server: Socket, up: Buffer, down: Buffer): Promise<void> {
  const atServer = collect(server);
  const atClient = collect(client);
  server.once('end', () => server.end(down));
  client.end(up);
  assert.deepEqual(await atServer, { bytes: up.length, sha: sha(up) });
  assert.deepEqual(await atClient, { bytes: down.length, sha: sha(down) });
  await until(() => observer.records[0]?.flags !== undefined, 3000, 'the record');
  const r = observer.records[0];
  assert.equal(r?.flags, ResponseFlags.OK);
  assert.equal(r?.read, up.length, 'request bytes');
  assert.equal(r?.written, down.length, 'response bytes');
}

/** Entries in a pinned map (bpftool's JSON dump). */
function mapEntries(pin: string): number {
  const out = execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', pin], { encoding: 'utf8' });
  return (JSON.parse(out) as unknown[]).length;
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** The real splicer, whose pairs say the kernel keeps a direction for the proxy (the pairing race, on demand). */
function keepingSplicer(real: NativeKernelSplicer): KernelSplicer {
  return {
    drainInto: (from, to) => real.drainInto(from, to),
    pair: (a, b) => {
      const p = real.pair(a, b);
      return { moved: (s) => p.moved(s), queued: (s) => p.queued(s), passing: () => true, release: () => p.release(),
        adopt: () => {
          throw new Error('the kernel keeps bytes of this pair for JavaScript');
        },
      };
    },
  };
}

async function node(t: TestContext, name: string, halfClosedIdleMs?: number, keeping?: () => void) {
  const program = await KernelSpliceProgram.start(name, { base: BASE });
  const splicer = new NativeKernelSplicer(program.pins);
  const mesh = new TestMesh();
  const client = mesh.addWorkload(workload('client', 'shop', '127.0.1.10', 'a'));
  mesh.addWorkload(workload('web', 'shop', SERVER_IP, 'a'));
  const accepted: Socket[] = [];
  const waiting: Array<(s: Socket) => void> = [];
  const backend = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    const w = waiting.shift();
    if (w !== undefined) w(s);
    else accepted.push(s);
  });
  await new Promise<void>((resolve) => backend.listen(0, SERVER_IP, resolve));
  const backendPort = (backend.address() as AddressInfo).port;
  const nextServer = (): Promise<Socket> => {
    const s = accepted.shift();
    return s !== undefined ? Promise.resolve(s) : new Promise((resolve) => waiting.push(resolve));
  };
  const registry = new ConnectionRegistry();
  const observer = recorder();
  const table = new OriginalDestinations();
  const pool = new TunnelPool({ credentials: testCredentials([client.identity]) });
  const outbound = new OutboundListener({
    originalDestination: table.reader, mesh, authorize: allowAll, tunnels: pool, health: new UpstreamHealth(new ManualClock()), observer, registry,
    ...(keeping === undefined ? { kernel: splicer } : { kernel: keepingSplicer(splicer), kernelPassing: keeping }),
    ...(halfClosedIdleMs === undefined ? {} : { splice: { halfClosedIdleMs } }),
  }, { nodeName: 'a', host: '127.0.0.1', port: 0 });
  const address = await outbound.listen();
  const sockets: Socket[] = [];
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await outbound.destroy();
    pool.destroy();
    await new Promise<void>((resolve) => backend.close(() => resolve()));
    splicer.close();
    program.close();
  });
  /** A client connection through the proxy, once the kernel holds it: both ends. */
  const dial = async (): Promise<{ client: Socket; server: Socket }> => {
    const held = splicer.adopted;
    const c = await dialCaptured(address, client.ip ?? '', { address: SERVER_IP, port: backendPort }, table);
    sockets.push(c);
    const server = await nextServer();
    sockets.push(server);
    if (keeping === undefined) await until(() => splicer.adopted > held, 3000, 'the pair adopted');
    return { client: c, server };
  };
  return { splicer, program, registry, observer, outbound, dial };
}

test('held in the kernel: bytes exact both ways, counted; the client FIN half-closes, the answer follows; all released', async (t) => {
  if (!ready(t)) return;
  const n = await node(t, 'kh-bytes');
  const fdsBefore = openFds();
  const { client, server } = await n.dial();
  assert.equal(n.outbound.connections, 1);
  await uploadThenAnswer(n.observer, client, server, payload(8 * 1024 * 1024 + 5, 1), payload(12 * 1024 * 1024 + 9, 2));
  assert.equal(n.splicer.adopted, 0);
  assert.equal(n.outbound.connections, 0);
  assert.equal(mapEntries(n.program.pins.pairs), 0, 'pair entries forgotten');
  client.destroy();
  server.destroy();
  // One more than before: the splicer's epoll set, opened by its first adopted pair.
  await until(() => openFds() <= fdsBefore + 1, 3000, 'descriptors closed');
});

test('a pair whose kernel keeps a direction for the proxy is not held: splice() moves it, exact, and it is counted', async (t) => {
  if (!ready(t)) return;
  let kept = 0;
  const n = await node(t, 'kh-keeping', undefined, () => {
    kept += 1;
  });
  const { client, server } = await n.dial();
  await uploadThenAnswer(n.observer, client, server, payload(2 * 1024 * 1024 + 3, 4), payload(3 * 1024 * 1024 + 1, 5));
  assert.equal(kept, 1, 'counted once');
  assert.equal(n.splicer.adopted, 0, 'never held outside JavaScript');
});

test('held in the kernel: a FIN from the server half-closes toward the client, which goes on sending', async (t) => {
  if (!ready(t)) return;
  const n = await node(t, 'kh-server-fin');
  const { client, server } = await n.dial();
  const atClient = collect(client);
  const atServer = collect(server);
  server.end('bye');
  assert.deepEqual(await atClient, { bytes: 3, sha: sha(Buffer.from('bye')) });
  assert.equal(n.observer.records[0]?.flags, undefined, 'still open one way');
  const late = payload(3 * 1024 * 1024, 3);
  client.end(late);
  assert.deepEqual(await atServer, { bytes: late.length, sha: sha(late) });
  await until(() => n.observer.records[0]?.flags !== undefined, 3000, 'the record');
  assert.equal(n.observer.records[0]?.flags, ResponseFlags.OK);
  assert.equal(n.observer.records[0]?.read, late.length);
  assert.equal(n.observer.records[0]?.written, 3);
});

test('held in the kernel: a reset from either side resets the other', async (t) => {
  if (!ready(t)) return;
  const n = await node(t, 'kh-reset');
  const a = await n.dial();
  a.client.write('x');
  await new Promise((resolve) => a.server.once('data', resolve));
  const atClient = errorCode(a.client);
  a.server.resetAndDestroy();
  assert.equal(await atClient, 'ECONNRESET');
  await until(() => n.observer.records[0]?.flags !== undefined, 3000, 'the first record');
  assert.equal(n.observer.records[0]?.flags, ResponseFlags.UPSTREAM_RESET);
  assert.equal(n.observer.records[0]?.read, 1);

  const b = await n.dial();
  const atServer = errorCode(b.server);
  b.client.resetAndDestroy();
  assert.equal(await atServer, 'ECONNRESET');
  await until(() => n.observer.records[1]?.flags !== undefined, 3000, 'the second record');
  assert.equal(n.observer.records[1]?.flags, ResponseFlags.DOWNSTREAM_RESET);
  assert.equal(n.splicer.adopted, 0);
  assert.equal(mapEntries(n.program.pins.pairs), 0);
});

test('held in the kernel: a policy re-check and a drain end it (both sides reset, the record says why)', async (t) => {
  if (!ready(t)) return;
  const n = await node(t, 'kh-recheck');
  const a = await n.dial();
  const codes = Promise.all([errorCode(a.client), errorCode(a.server)]);
  const ended = await n.registry.endWhere(() => ({ flags: ResponseFlags.DENIED, detail: 'closed by a policy change: test' }));
  assert.equal(ended, 1);
  assert.deepEqual(await codes, ['ECONNRESET', 'ECONNRESET']);
  await until(() => n.observer.records[0]?.flags !== undefined, 3000, 'the re-check record');
  assert.equal(n.observer.records[0]?.flags, ResponseFlags.DENIED);
  assert.equal(n.observer.records[0]?.detail, 'closed by a policy change: test');

  const b = await n.dial();
  const drained = Promise.all([errorCode(b.client), errorCode(b.server)]);
  await n.outbound.drain(50);
  assert.deepEqual(await drained, ['ECONNRESET', 'ECONNRESET']);
  assert.equal(n.observer.records[1]?.flags, ResponseFlags.DRAINED);
  assert.equal(n.splicer.adopted, 0);
  assert.equal(mapEntries(n.program.pins.pairs), 0);
});

test('held in the kernel: half closed and idle past the timeout, both sides are reset', async (t) => {
  if (!ready(t)) return;
  const n = await node(t, 'kh-idle', 200);
  const { client, server } = await n.dial();
  const atClient = errorCode(client);
  const finAtServer = new Promise((resolve) => server.once('end', resolve));
  const started = performance.now();
  client.end();
  await finAtServer;
  assert.equal(await atClient, 'ECONNRESET');
  assert.ok(performance.now() - started >= 190, 'not before the timeout');
  // The server, done reading, learns of the reset when it writes.
  const atServer = new Promise<string | undefined>((resolve) => server.once('error', (e: NodeJS.ErrnoException) => resolve(e.code)));
  const poke = setInterval(() => server.write('late'), 20);
  t.after(() => clearInterval(poke));
  assert.ok(['ECONNRESET', 'EPIPE'].includes((await atServer) ?? ''));
  clearInterval(poke);
  await until(() => n.observer.records[0]?.flags !== undefined, 3000, 'the record');
  assert.equal(n.observer.records[0]?.flags, ResponseFlags.IDLE_TIMEOUT);
});

test('held in the kernel: 300 pairs at once, each exact, then every entry and descriptor released', async (t) => {
  if (!ready(t)) return;
  const n = await node(t, 'kh-many');
  const warm = await n.dial(); // opens the splicer's epoll set, which stays
  warm.client.destroy();
  warm.server.destroy();
  await until(() => n.splicer.adopted === 0, 3000, 'the warm-up pair closed');
  const fdsBefore = openFds();
  const pairs = [];
  for (let i = 0; i < 300; i++) pairs.push(await n.dial());
  assert.equal(n.splicer.adopted, 300);
  assert.equal(mapEntries(n.program.pins.pairs), 600);
  await Promise.all(pairs.map(async ({ client, server }, i) => {
    const up = payload(1000 + i, i);
    const down = payload(2000 + i, i + 1);
    const atServer = collect(server);
    const atClient = collect(client);
    server.once('end', () => server.end(down));
    client.end(up);
    assert.deepEqual(await atServer, { bytes: up.length, sha: sha(up) });
    assert.deepEqual(await atClient, { bytes: down.length, sha: sha(down) });
  }));
  await until(() => n.observer.records.length === 301 && n.observer.records.every((r) => r.flags !== undefined), 5000, 'every record');
  assert.deepEqual(new Set(n.observer.records.slice(1).map((r) => r.flags)), new Set([ResponseFlags.OK]));
  assert.equal(n.splicer.adopted, 0);
  assert.equal(mapEntries(n.program.pins.pairs), 0);
  for (const { client, server } of pairs) {
    client.destroy();
    server.destroy();
  }
  await until(() => openFds() <= fdsBefore, 3000, 'descriptors closed');
});
