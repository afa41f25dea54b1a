// The same-node kernel splice against the real kernel, on loopback: the program loaded and
// pinned by bpftool, sockets paired through the native addon, bytes moved by the kernel and
// checked end to end (sha256), counts read back exactly, FINs passed on after the last byte,
// resets and aborts passed on, pins removed on close and reclaimed after a crash, and the
// named fallback when the kernel (here: the object) is missing.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

import { NATIVE_ADDON_PATH } from '../../../src/core/native-addon.ts';
import { isWeftError } from '../../../src/core/errors.ts';
import { NativeKernelSplicer } from '../../../src/app/kernel-splicer.ts';
import { handOverToKernel, kernelByteSource, splice, tryKernelPair, type KernelPair, type SpliceResult } from '../../../src/proxy/index.ts';
import { KernelSpliceProgram, RedirectErrors } from '../../../src/redirect/index.ts';
import { Bpftool } from '../../../src/redirect/bpftool.ts';
import { KERNEL_SPLICE_OBJECT } from '../../../src/redirect/kernel-splice.ts';
import { cannotRun, needsRoot } from '../../support/root.ts';
import { until } from '../proxy/harness.ts';

const BASE = `/sys/fs/bpf/weft-test-splice-${process.pid}`;

function ready(t: TestContext): boolean {
  if (!needsRoot(t, ['bpftool'])) return false;
  if (!existsSync(KERNEL_SPLICE_OBJECT)) return cannotRun(t, `${KERNEL_SPLICE_OBJECT} is not built; run npm run bootstrap`);
  if (!existsSync(NATIVE_ADDON_PATH)) return cannotRun(t, `${NATIVE_ADDON_PATH} is not built; run npm run bootstrap`);
  return true;
}

async function listening(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function payload(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed) % 251;
  return b;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** What reached one end: its bytes' hash and count, once it saw the FIN. */
function collect(socket: Socket): Promise<{ bytes: number; sha: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    socket.on('end', () => resolve({ bytes, sha: h.digest('hex') }));
    socket.on('error', reject);
  });
}

interface Proxied {
  readonly client: Socket;
  readonly server: Socket;
  readonly pair: KernelPair;
  readonly proxyClient: Socket;
  readonly proxyUpstream: Socket;
  readonly result: Promise<SpliceResult>;
}

/** A client connected to a paused front listener, and a way for the "proxy" to dial the backend. */
interface Rig {
  readonly client: Socket;
  readonly accepted: Promise<Socket>;
  readonly dialUpstream: () => Promise<{ proxyUpstream: Socket; server: Socket }>;
}

async function rig(t: TestContext): Promise<Rig> {
  const backend = createServer({ allowHalfOpen: true });
  const serverSide = new Promise<Socket>((resolve) => backend.once('connection', resolve));
  const backendPort = await listening(backend);
  const front = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  const frontPort = await listening(front);
  const accepted = new Promise<Socket>((resolve) => front.once('connection', resolve));
  const client = connect({ port: frontPort, host: '127.0.0.1', allowHalfOpen: true });
  t.after(() => {
    client.destroy();
    backend.close();
    front.close();
  });
  const dialUpstream = async (): Promise<{ proxyUpstream: Socket; server: Socket }> => {
    const proxyUpstream = connect({ port: backendPort, host: '127.0.0.1', allowHalfOpen: true });
    await new Promise((resolve) => proxyUpstream.once('connect', resolve));
    const server = await serverSide;
    t.after(() => server.destroy());
    return { proxyUpstream, server };
  };
  return { client, accepted, dialUpstream };
}

/** client -> [proxyClient | kernel pair | proxyUpstream] -> server, on loopback. */
async function proxied(t: TestContext, splicer: NativeKernelSplicer, signal?: AbortSignal): Promise<Proxied> {
  const { client, accepted, dialUpstream } = await rig(t);
  const proxyClient = await accepted;
  const { proxyUpstream, server } = await dialUpstream();
  const pair = tryKernelPair(splicer, proxyClient, proxyUpstream);
  if (typeof pair === 'string') assert.fail(`not paired: ${pair}`);
  const kernel = pair;
  proxyClient.resume();
  const result = splice(proxyClient, proxyUpstream, signal, { kernel }).finally(() => kernel.release());
  return { client, server, pair: kernel, proxyClient, proxyUpstream, result };
}

async function withProgram(t: TestContext, node: string, body: (splicer: NativeKernelSplicer, program: KernelSpliceProgram) => Promise<void>): Promise<void> {
  const program = await KernelSpliceProgram.start(node, { base: BASE });
  const splicer = new NativeKernelSplicer(program.pins);
  t.after(() => {
    splicer.close();
    program.close();
  });
  await body(splicer, program);
}

test('the kernel moves bytes both ways, exactly counted, and FINs follow the last byte', async (t) => {
  if (!ready(t)) return;
  await withProgram(t, 'ks-bulk', async (splicer) => {
    const p = await proxied(t, splicer);
    const up = payload(24 * 1024 * 1024 + 17, 1);
    const down = payload(40 * 1024 * 1024 + 3, 2);
    const atServer = collect(p.server);
    const atClient = collect(p.client);
    // The server answers only after the client's FIN (a half-closed connection carrying bytes).
    p.server.once('end', () => p.server.end(down));
    p.client.end(up);
    const [s, c, r] = await Promise.all([atServer, atClient, p.result]);
    assert.deepEqual(s, { bytes: up.length, sha: sha(up) });
    assert.deepEqual(c, { bytes: down.length, sha: sha(down) });
    assert.equal(r.outcome, 'closed');
    // None of it went through JavaScript; all of it is counted, from the kernel.
    assert.equal(p.proxyClient.bytesRead, 0);
    assert.equal(p.proxyUpstream.bytesRead, 0);
    const bytes = kernelByteSource(p.proxyClient, p.proxyUpstream, p.pair);
    assert.equal(bytes.bytesRead, up.length);
    assert.equal(bytes.bytesWritten, down.length);
  });
});

test('bytes the client sent before the pair was made are moved too, in order', async (t) => {
  if (!ready(t)) return;
  await withProgram(t, 'ks-early', async (splicer) => {
    const { client, accepted, dialUpstream } = await rig(t);
    const early = payload(3000, 3);
    const late = payload(5 * 1024 * 1024, 4);
    client.write(early);
    const proxyClient = await accepted;
    await new Promise((resolve) => setTimeout(resolve, 50)); // the early bytes wait in the kernel
    const { proxyUpstream, server } = await dialUpstream();
    const pair = tryKernelPair(splicer, proxyClient, proxyUpstream);
    assert.notEqual(typeof pair, 'string');
    proxyClient.resume();
    const result = splice(proxyClient, proxyUpstream, undefined, { kernel: pair as KernelPair });
    const atServer = collect(server);
    client.end(late);
    server.once('end', () => server.end());
    const all = Buffer.concat([early, late]);
    assert.deepEqual(await atServer, { bytes: all.length, sha: sha(all) });
    assert.equal((await result).outcome, 'closed');
    assert.equal(proxyClient.bytesRead, 0);
  });
});

test('a reset on one side resets the other; an abort (a policy change) resets both', async (t) => {
  if (!ready(t)) return;
  await withProgram(t, 'ks-reset', async (splicer) => {
    const p = await proxied(t, splicer);
    const clientError = new Promise<NodeJS.ErrnoException>((resolve) => p.client.once('error', resolve));
    p.client.write('hello');
    await new Promise((resolve) => p.server.once('data', resolve));
    p.server.resetAndDestroy();
    assert.equal((await clientError).code, 'ECONNRESET');
    assert.equal((await p.result).outcome, 'upstream_reset');

    const ac = new AbortController();
    const q = await proxied(t, splicer, ac.signal);
    const errors = Promise.all([q.client, q.server].map((s) => new Promise<NodeJS.ErrnoException>((resolve) => s.once('error', resolve))));
    q.client.write('x');
    await new Promise((resolve) => q.server.once('data', resolve));
    ac.abort();
    assert.deepEqual((await errors).map((e) => e.code), ['ECONNRESET', 'ECONNRESET']);
    assert.equal((await q.result).outcome, 'aborted');
  });
});

test('bytes already read into JavaScript keep the connection in user space (buffered)', async (t) => {
  if (!ready(t)) return;
  await withProgram(t, 'ks-buffered', async (splicer) => {
    const front = createServer({ allowHalfOpen: true });
    const port = await listening(front);
    t.after(() => front.close());
    const accepted = new Promise<Socket>((resolve) => front.once('connection', resolve));
    const client = connect({ port, host: '127.0.0.1' });
    t.after(() => client.destroy());
    client.write('already here');
    const a = await accepted;
    await new Promise((resolve) => a.once('readable', resolve));
    const b = connect({ port, host: '127.0.0.1' });
    t.after(() => {
      a.destroy();
      b.destroy();
    });
    await new Promise((resolve) => b.once('connect', resolve));
    assert.equal(tryKernelPair(splicer, a, b), 'buffered');
  });
});

test('bytes the sniff read into JavaScript are written out first, then the kernel takes over, in order', async (t) => {
  if (!ready(t)) return;
  await withProgram(t, 'ks-handover', async (splicer) => {
    const { client, accepted, dialUpstream } = await rig(t);
    const first = payload(700, 5);
    client.write(first);
    const proxyClient = await accepted;
    // What the protocol sniff does: read the first bytes, put them back.
    const seen = await new Promise<Buffer>((resolve) => proxyClient.once('readable', () => resolve(proxyClient.read() as Buffer)));
    proxyClient.unshift(seen);
    const { proxyUpstream, server } = await dialUpstream();
    const { result: pair, bytes } = await handOverToKernel(splicer, proxyClient, proxyUpstream);
    if (typeof pair === 'string') assert.fail(`not paired: ${pair}`);
    proxyClient.resume();
    const result = splice(proxyClient, proxyUpstream, undefined, { kernel: pair }).finally(() => pair.release());
    const atServer = collect(server);
    const rest = payload(6 * 1024 * 1024, 6);
    client.end(rest);
    server.once('end', () => server.end());
    const all = Buffer.concat([first, rest]);
    assert.deepEqual(await atServer, { bytes: all.length, sha: sha(all) });
    assert.equal((await result).outcome, 'closed');
    assert.equal(bytes.bytesRead, all.length, 'what JavaScript wrote plus what the kernel moved');
    assert.equal(pair.moved(proxyClient), all.length - proxyClient.bytesRead, 'the rest went through the kernel');
  });
});

// The bug this guards against: JavaScript had read part of a segment still at the head of a
// socket's kernel queue (Node reads 64 KiB at a time; loopback segments are about that big),
// and the kernel, once paired, forwarded that segment whole: the server got those bytes twice.
test('bytes JavaScript read before the pair, from either side, are not repeated by the kernel', async (t) => {
  if (!ready(t)) return;
  await withProgram(t, 'ks-partial', async (splicer) => {
    for (let i = 0; i < 5; i++) {
      const { client, accepted, dialUpstream } = await rig(t);
      const upFirst = payload(300 * 1024 + i, 7);
      const downFirst = payload(200 * 1024 + i, 8);
      client.write(upFirst);
      const proxyClient = await accepted;
      const { proxyUpstream, server } = await dialUpstream();
      server.write(downFirst);
      // Both sides read into JavaScript and put back, as the sniff does (Node reads whole 64 KiB chunks).
      for (const side of [proxyClient, proxyUpstream]) {
        const seen = await new Promise<Buffer>((resolve) => side.once('readable', () => resolve(side.read() as Buffer)));
        side.pause();
        side.unshift(seen);
      }
      assert.ok(proxyClient.bytesRead > 0 && proxyUpstream.bytesRead > 0, 'JavaScript read from both sides');
      const { result: pair, bytes } = await handOverToKernel(splicer, proxyClient, proxyUpstream);
      if (typeof pair === 'string') assert.fail(`not paired: ${pair}`);
      proxyClient.resume();
      proxyUpstream.resume();
      const result = splice(proxyClient, proxyUpstream, undefined, { kernel: pair }).finally(() => pair.release());
      const atServer = collect(server);
      const atClient = collect(client);
      const upRest = payload(3 * 1024 * 1024, 9);
      const downRest = payload(2 * 1024 * 1024, 10);
      server.once('end', () => server.end(downRest));
      client.end(upRest);
      const up = Buffer.concat([upFirst, upRest]);
      const down = Buffer.concat([downFirst, downRest]);
      assert.deepEqual(await atServer, { bytes: up.length, sha: sha(up) }, `round ${i}: upload once, in order`);
      assert.deepEqual(await atClient, { bytes: down.length, sha: sha(down) }, `round ${i}: answer once, in order`);
      assert.equal((await result).outcome, 'closed');
      assert.equal(bytes.bytesRead, up.length, 'counted once: JavaScript, the drain and the kernel');
      assert.equal(bytes.bytesWritten, down.length);
    }
  });
});

// The race this guards against: the two sockets enter the kernel's map one after the other,
// and a segment that reached the first before the second was in was kept for JavaScript
// while the ones after it were redirected, ahead of it (corrupt in user space, a stall once the
// pair was adopted). The same happens when a peer leaves the map, which is how this test
// makes it happen at will: one socket is deleted from the sockhash with bpftool.
test('a segment kept for JavaScript keeps the rest of its direction there, in order; such a pair is not adopted', async (t) => {
  if (!ready(t)) return;
  await withProgram(t, 'ks-passing', async (splicer, program) => {
    const p = await proxied(t, splicer);
    const atServer = collect(p.server);
    const atClient = collect(p.client);
    const upFirst = payload(1024 * 1024, 11);
    const downFirst = payload(1024 * 1024 + 5, 12);
    p.client.write(upFirst);
    p.server.write(downFirst);
    await until(() => p.pair.moved(p.proxyClient) === upFirst.length && p.pair.moved(p.proxyUpstream) === downFirst.length, 5000, 'the first bytes to go through the kernel');
    assert.equal(p.pair.passing(), false, 'nothing kept for JavaScript yet');
    const bpftool = new Bpftool();
    const dump = await bpftool.json(['map', 'dump', 'pinned', program.pins.socks]) as { key: string[] }[];
    assert.equal(dump.length, 2, 'both sockets are in the sockhash');
    await bpftool.json(['map', 'delete', 'pinned', program.pins.socks, 'key', ...(dump[0]?.key ?? [])]);
    const upRest = payload(3 * 1024 * 1024 + 1, 13);
    const downRest = payload(2 * 1024 * 1024 + 7, 14);
    p.client.write(upRest);
    p.server.write(downRest);
    await until(() => p.pair.passing(), 5000, 'the kernel to keep a direction for JavaScript');
    assert.throws(() => p.pair.adopt({ kernelEvent: () => undefined }), /keeps bytes of this pair for JavaScript/);
    p.server.once('end', () => p.server.end());
    p.client.end();
    const up = Buffer.concat([upFirst, upRest]);
    const down = Buffer.concat([downFirst, downRest]);
    assert.deepEqual(await atServer, { bytes: up.length, sha: sha(up) }, 'the upload arrived once, in order');
    assert.deepEqual(await atClient, { bytes: down.length, sha: sha(down) }, 'the answer arrived once, in order');
    assert.equal((await p.result).outcome, 'closed');
    assert.ok(p.proxyClient.bytesRead + p.proxyUpstream.bytesRead > 0, 'JavaScript moved what the kernel kept');
    const bytes = kernelByteSource(p.proxyClient, p.proxyUpstream, p.pair);
    assert.equal(bytes.bytesRead, up.length, 'counted once: the kernel and JavaScript');
    assert.equal(bytes.bytesWritten, down.length);
  });
});

test('pins live under the weft-splice base until close; a crashed agent\'s are reclaimed at start', async (t) => {
  if (!ready(t)) return;
  const first = await KernelSpliceProgram.start('ks-crash', { base: BASE });
  assert.ok(existsSync(first.pins.socks) && existsSync(first.pins.pairs));
  // A crash: nobody closes `first`. The next start for the node replaces its pins.
  const second = await KernelSpliceProgram.start('ks-crash', { base: BASE });
  t.after(() => second.close());
  assert.ok(existsSync(second.pins.socks));
  second.close();
  second.close();
  assert.equal(existsSync(join(BASE, 'ks-crash')), false);
  assert.equal(existsSync(BASE), false);
});

test('without what the kernel splice needs, start names it (WEFT_REDIRECT_KERNEL_SPLICE_UNAVAILABLE)', async (t) => {
  if (!needsRoot(t, ['bpftool'])) return;
  await assert.rejects(KernelSpliceProgram.start('ks-missing', { base: BASE, objectPath: '/nonexistent/splice.bpf.o' }), (err: unknown) =>
    isWeftError(err, RedirectErrors.KERNEL_SPLICE_UNAVAILABLE) && /same-node kernel splice unavailable/.test(err.message) && /\/nonexistent\/splice\.bpf\.o/.test(err.message));
  assert.equal(existsSync(join(BASE, 'ks-missing')), false);
});
