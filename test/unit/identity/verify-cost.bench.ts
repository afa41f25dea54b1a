// What checking a peer costs per TLS handshake, on loopback with real ECDSA P-256 certificates.
// Run: node test/unit/identity/verify-cost.bench.ts [handshakes]
// Prints medians and p99s in microseconds for: the whole client handshake, the server's
// getPeerX509Certificate(), PeerVerifier.verify with and without the signature cache.

import type { AddressInfo } from 'node:net';
import { connect, createServer } from 'node:tls';

import { systemClock } from '../../../src/core/clock.ts';
import { spiffeId } from '../../../src/identity/spiffe.ts';
import { createWorkloadSecureContext, serverNameFor, sniCallbackFor, spiffeServerIdentityCheck } from '../../../src/identity/tls-context.ts';
import { TrustBundle } from '../../../src/identity/trust-bundle.ts';
import { PeerVerifier } from '../../../src/identity/verify-peer.ts';
import { issue, openCa } from './support.ts';

const handshakes = Number(process.argv[2] ?? 500);
const ca = await openCa(systemClock);
const web = spiffeId('shop', 'web');
const db = spiffeId('shop', 'db');
const [client, server] = await Promise.all([issue(ca, web), issue(ca, db)]);
const bundle = TrustBundle.parse(ca.trustBundlePem());
const ctx = (m: { keyPem: string; certPem: string }) =>
  createWorkloadSecureContext({ keyPem: m.keyPem, certPem: m.certPem, chainPem: [], trustBundlePem: bundle.pem });
const clientCtx = ctx(client);
const serverCtx = ctx(server);
const cached = new PeerVerifier({ trustBundle: bundle, clock: systemClock });
const uncached = new PeerVerifier({ trustBundle: bundle, clock: systemClock, cacheSize: 0 });

const samples = { handshake: [] as number[], getPeerX509Certificate: [] as number[], verifyUncached: [] as number[], verifyCached: [] as number[] };
const tls = createServer(
  { SNICallback: sniCallbackFor(() => serverCtx), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' },
  (socket) => {
    const t0 = performance.now();
    const cert = socket.getPeerX509Certificate()!;
    const t1 = performance.now();
    uncached.verify(cert, web);
    const t2 = performance.now();
    cached.verify(cert, web);
    const t3 = performance.now();
    samples.getPeerX509Certificate.push((t1 - t0) * 1000);
    samples.verifyUncached.push((t2 - t1) * 1000);
    samples.verifyCached.push((t3 - t2) * 1000);
    socket.end();
  },
);
await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
const { port } = tls.address() as AddressInfo;

for (let i = 0; i < handshakes; i++) {
  await new Promise<void>((resolve, reject) => {
    const started = performance.now();
    const socket = connect({
      host: '127.0.0.1',
      port,
      servername: serverNameFor(db),
      secureContext: clientCtx,
      checkServerIdentity: spiffeServerIdentityCheck(cached, db),
    });
    socket.on('secureConnect', () => samples.handshake.push((performance.now() - started) * 1000));
    socket.on('error', reject);
    socket.resume();
    socket.on('close', () => resolve());
  });
}
tls.close();

const warm = Math.min(20, Math.floor(handshakes / 10));
for (const [name, values] of Object.entries(samples)) {
  const sorted = values.slice(warm).sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))].toFixed(1);
  console.log(`${name.padEnd(24)} p50 ${at(0.5).padStart(8)} us   p99 ${at(0.99).padStart(8)} us   (n=${sorted.length})`);
}
