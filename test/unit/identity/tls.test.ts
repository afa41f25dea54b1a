import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { connect, createSecureContext, createServer, type SecureContext, type TLSSocket } from 'node:tls';

import { systemClock } from '../../../src/core/clock.ts';
import { describeError, isWeftError } from '../../../src/core/errors.ts';
import { CertificateStore } from '../../../src/identity/certificate-store.ts';
import { RevocationList } from '../../../src/identity/crl.ts';
import { systemScheduler } from '../../../src/core/scheduler.ts';
import { spiffeId } from '../../../src/identity/spiffe.ts';
import {
  SecureContextCache,
  createWorkloadSecureContext,
  serverNameFor,
  sniCallbackFor,
  spiffeServerIdentityCheck,
  verifyTlsPeer,
} from '../../../src/identity/tls-context.ts';
import { TrustBundle } from '../../../src/identity/trust-bundle.ts';
import { PeerVerifier } from '../../../src/identity/verify-peer.ts';
import { issue, openCa } from './support.ts';

const web = spiffeId('shop', 'web');
const db = spiffeId('shop', 'db');

interface Outcome {
  secure: boolean;
  protocol: string | null;
  serverId: string | undefined;
  data: string;
  error: unknown;
}

test('TLS 1.3 on 127.0.0.1 between two workload contexts, each side verifying the other\'s SPIFFE id', async (t) => {
  const clock = systemClock; // OpenSSL checks validity against the real time
  const ca = await openCa(clock);
  const store = new CertificateStore({
    issuer: { sign: (csrPem, identity) => ca.sign({ csrPem, node: 'node-1', identity }) },
    clock,
    scheduler: systemScheduler,
  });
  t.after(() => store.close());
  store.setIdentities([web, db]);
  const [webCert, dbCert] = await Promise.all([store.waitFor(web), store.waitFor(db)]);
  const bundle = TrustBundle.parse(ca.trustBundlePem());
  const contexts = new SecureContextCache();
  const clientVerifier = new PeerVerifier({ trustBundle: bundle, clock });
  let serverVerifier = new PeerVerifier({ trustBundle: bundle, clock });

  const webCtx = contexts.get(webCert, bundle);
  assert.equal(contexts.get(webCert, bundle), webCtx, 'one context per identity and certificate');

  // The inbound side: one port, the destination workload picked by SNI.
  const serverSeen: Array<{ ok: string } | { code: string }> = [];
  const verifyMicros: number[] = [];
  const server = createServer(
    {
      SNICallback: sniCallbackFor((name) => (name === serverNameFor(db) ? contexts.get(store.get(db)!, bundle) : undefined)),
      requestCert: true,
      rejectUnauthorized: false, // verifyTlsPeer is the gate, so refusals carry a reason
      minVersion: 'TLSv1.3',
    },
    (socket) => {
      try {
        const started = performance.now();
        const peer = verifyTlsPeer(socket, serverVerifier);
        verifyMicros.push((performance.now() - started) * 1000);
        serverSeen.push({ ok: peer.uri });
        socket.end(`hello ${peer.uri}`);
      } catch (err: unknown) {
        serverSeen.push({ code: isWeftError(err) ? err.code : describeError(err) });
        socket.destroy();
      }
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;

  const dial = (secureContext: SecureContext, expected = db, servername = serverNameFor(db)): Promise<Outcome> =>
    new Promise((resolve) => {
      const outcome: Outcome = { secure: false, protocol: null, serverId: undefined, data: '', error: undefined };
      const socket: TLSSocket = connect({
        host: '127.0.0.1',
        port,
        servername,
        secureContext,
        checkServerIdentity: spiffeServerIdentityCheck(clientVerifier, expected),
      });
      socket.setEncoding('utf8');
      socket.on('secureConnect', () => {
        outcome.secure = true;
        outcome.protocol = socket.getProtocol();
        outcome.serverId = verifyTlsPeer(socket, clientVerifier, expected).uri;
      });
      socket.on('data', (chunk: string) => {
        outcome.data += chunk;
      });
      socket.on('error', (err: Error) => {
        outcome.error = err;
      });
      socket.on('close', () => resolve(outcome));
    });

  // 1. The good path, in both directions of verification.
  const ok = await dial(webCtx);
  assert.equal(ok.error, undefined, describeError(ok.error));
  assert.equal(ok.protocol, 'TLSv1.3');
  assert.equal(ok.serverId, db.uri);
  assert.equal(ok.data, `hello ${web.uri}`);
  assert.deepEqual(serverSeen, [{ ok: web.uri }]);
  // A second handshake with the same certificates (pooled tunnels reconnecting) hits the signature cache.
  assert.equal((await dial(webCtx)).data, `hello ${web.uri}`);
  t.diagnostic(`server-side verifyTlsPeer per handshake: first ${verifyMicros[0]?.toFixed(0)} us, cached ${verifyMicros[1]?.toFixed(0)} us`);

  // 2. The client expects another workload behind that name: the connect fails with our code.
  const wrong = await dial(webCtx, web);
  assert.ok(isWeftError(wrong.error, 'WEFT_IDENTITY_PEER_WRONG_IDENTITY'), describeError(wrong.error));
  assert.equal(wrong.data, '');

  // 3. A client certificate from another CA: OpenSSL's verdict surfaces with our code.
  const other = await openCa(clock);
  const foreign = await issue(other, web);
  const foreignOutcome = await dial(
    createWorkloadSecureContext({ keyPem: foreign.keyPem, certPem: foreign.certPem, chainPem: [], trustBundlePem: bundle.pem }),
  );
  assert.equal(foreignOutcome.data, '', 'the server sent nothing to the foreign client');
  assert.deepEqual(serverSeen.at(-1), { code: 'WEFT_IDENTITY_PEER_UNTRUSTED' });
  // The verifier alone reaches the same verdict (it does not trust OpenSSL's word only).
  assert.throws(() => serverVerifier.verify(new X509Certificate(foreign.certPem)), (err: unknown) => isWeftError(err, 'WEFT_IDENTITY_PEER_UNTRUSTED'));

  // 4. No client certificate at all.
  const anonymous = await dial(createSecureContext({ ca: bundle.pem, minVersion: 'TLSv1.3' }));
  assert.equal(anonymous.data, '');
  assert.deepEqual(serverSeen.at(-1), { code: 'WEFT_IDENTITY_PEER_MISSING' });

  // 5. TLS 1.2 is not offered.
  const old = await dial(createSecureContext({ key: webCert.keyPem, cert: webCert.certPem, ca: bundle.pem, maxVersion: 'TLSv1.2' }));
  assert.equal(old.secure, false);
  assert.match(describeError(old.error), /version|protocol/i);

  // 6. A server name this node holds no certificate for.
  const unknown = await dial(webCtx, db, serverNameFor(spiffeId('shop', 'cache')));
  assert.equal(unknown.secure, false);

  // 7. Revoked: OpenSSL accepts the chain, the CRL check in verifyTlsPeer refuses.
  await ca.revoke(webCert.serial);
  serverVerifier = new PeerVerifier({ trustBundle: bundle, crl: RevocationList.parse(await ca.crlPem(), bundle), clock });
  const revoked = await dial(webCtx);
  assert.equal(revoked.data, '');
  assert.deepEqual(serverSeen.at(-1), { code: 'WEFT_IDENTITY_PEER_REVOKED' });
  // ... while db's own certificate (not revoked) still serves as a client.
  assert.equal((await dial(contexts.get(dbCert, bundle))).data, `hello ${db.uri}`);
});
