// The fork after routing, end to end on loopback: HTTP on a port that declares nothing is
// found by sniffing and served request by request; other bytes are spliced untouched; a
// server-first protocol sees its banner with no added delay on a port declared tcp or known
// to be server-first (25, 3306, ...), and only an undeclared, unknown port waits the sniff bound.

import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';

import type { ServicePort } from '../../../src/model/types.ts';
import { endpoint, until } from './harness.ts';
import { l7Mesh, readUntil, type L7Mesh } from './l7-harness.ts';

test('an undeclared port: HTTP is sniffed and balanced per request; other bytes are spliced', async (t) => {
  const n = await l7Mesh(t, { ports: [{ name: undefined, port: 80 }, { name: 'web', port: 81 }] });
  // Port 80 names nothing, so its protocol is sniffed.
  const s = await n.dial(80);
  t.after(() => s.destroy());
  const backends = new Set<string>();
  for (let i = 0; i < 20; i++) {
    s.write(`GET /s/${i} HTTP/1.1\r\nhost: web.shop\r\n\r\n`);
    const answer = await readUntil(s, (x) => new RegExp(`GET /s/${i} 0$`).test(x));
    backends.add(/x-backend: (\S+)/.exec(answer)?.[1] ?? '?');
  }
  assert.ok(backends.size >= 2, `one connection, several endpoints: ${[...backends].join(',')}`);
  await until(() => n.requests.records.filter((r) => r.outcome !== undefined).length === 20, 3000, 'request records');

  // Not HTTP (a TLS-looking first byte): spliced to one endpoint, whose HTTP server answers 400.
  const raw = await n.dial(80);
  t.after(() => raw.destroy());
  raw.write('\x16\x03\x01 not http\r\n\r\n');
  const answer = await readUntil(raw, (x) => x.includes('\r\n\r\n'));
  assert.match(answer, /^HTTP\/1\.1 400 Bad Request/, 'the server itself saw the bytes');
  assert.equal(n.requests.records.length, 20, 'no request record for spliced bytes');
});

interface Banner {
  readonly port: number;
  close(): Promise<void>;
}

/** A server-first server on the pod address: sends its banner at once, then echoes. */
async function bannerServer(t: TestContext, host: string): Promise<Banner> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.write('220 weft-test ESMTP ready\r\n');
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const b = {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
  t.after(() => b.close());
  return b;
}

/** Adds Service `banner` port `port` (name `name`) on a new VIP, with the banner pod behind it. */
function bannerService(n: L7Mesh, vip: string, port: Partial<ServicePort> & { port: number }, targetPort: number): void {
  const p: ServicePort = { name: undefined, protocol: 'TCP', targetPort, ...port };
  const service = { key: `shop/banner-${p.port}`, name: `banner-${p.port}`, namespace: 'shop', vip, ports: [p], endpointSource: 'selector' as const, endpoints: [] };
  const pod = n.backends[2]?.pod;
  if (pod === undefined) throw new Error('no pod');
  n.mesh.services.set(`${vip}:${p.port}`, { at: { service, port: p }, endpoints: [endpoint(pod, targetPort)] });
}

async function bannerMs(n: L7Mesh, vip: string, port: number): Promise<number> {
  const t0 = performance.now();
  const s = await n.dialTo({ address: vip, port });
  try {
    await readUntil(s, (x) => x.includes('220 '), 5000);
    return performance.now() - t0;
  } finally {
    s.destroy();
  }
}

test('a server-first banner through the mesh: no added delay on a tcp- port or a known server-first port', async (t) => {
  const n = await l7Mesh(t);
  const banner = await bannerServer(t, n.backends[2]?.pod.ip ?? '');
  bannerService(n, '198.18.21.1', { port: 9025, name: 'tcp-smtp' }, banner.port);
  bannerService(n, '198.18.21.2', { port: 25 }, banner.port);
  bannerService(n, '198.18.21.3', { port: 9026 }, banner.port);
  // Interleaved rounds; the median of each, after one warm-up (the tunnel session opens once).
  await bannerMs(n, '198.18.21.1', 9025);
  const times: Record<string, number[]> = { declared: [], serverFirst: [], undeclared: [] };
  for (let i = 0; i < 7; i++) {
    times.declared?.push(await bannerMs(n, '198.18.21.1', 9025));
    times.serverFirst?.push(await bannerMs(n, '198.18.21.2', 25));
    times.undeclared?.push(await bannerMs(n, '198.18.21.3', 9026));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  const [declared, serverFirst, undeclared] = [median(times.declared ?? []), median(times.serverFirst ?? []), median(times.undeclared ?? [])];
  t.diagnostic(`banner after connect (median of 7): tcp- port ${declared.toFixed(1)} ms, port 25 ${serverFirst.toFixed(1)} ms, undeclared port ${undeclared.toFixed(1)} ms`);
  // The same path as an opaque port: no sniff wait in front of the banner.
  assert.ok(serverFirst < 50, `port 25 banner in ${serverFirst.toFixed(1)} ms`);
  assert.ok(declared < 50, `tcp- banner in ${declared.toFixed(1)} ms`);
  assert.ok(Math.abs(serverFirst - declared) < 30, 'a known server-first port behaves as a declared opaque one');
  // The one case that waits: nothing declared, port unknown; bounded by the sniff (100 ms).
  assert.ok(undeclared >= 95 && undeclared < 400, `undeclared port waits the sniff bound: ${undeclared.toFixed(1)} ms`);
});
