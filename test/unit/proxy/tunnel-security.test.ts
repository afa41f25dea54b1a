// Who may use the tunnel: peers from another CA, servers with the wrong identity, plain TCP,
// missing or unknown server names, and policy are all refused, and counted.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { connect as tlsConnect, createSecureContext } from 'node:tls';
import { test } from 'node:test';

import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { serverNameFor } from '../../../src/proxy/server-name.ts';
import { spiffeId, testCa, testLeaf } from '../../support/certs.ts';
import { closure, denyTo, testCredentials, until } from './harness.ts';
import { parseMetrics, total } from './metrics-text.ts';
import { twoNodes, type TwoNodes } from './two-nodes.ts';

async function handshakeFailures(n: TwoNodes, reason: string): Promise<number> {
  return total(parseMetrics(await n.registry.metrics()), 'weft_tunnel_handshake_failures_total', { reason });
}

function flagsOf(n: TwoNodes, reporter: string): unknown[] {
  return n.logLines.filter((l) => l.msg === 'connection' && l.reporter === reporter).map((l) => l.flags);
}

test('a client certificate from another CA is refused by the inbound agent, counted, and the client is reset', async (t) => {
  const n = await twoNodes(t, { clientCredentials: testCredentials([spiffeId('shop', 'client')], { caName: 'other' }) });
  const s = await n.dial();
  assert.equal(await closure(s), 'ECONNRESET');
  await until(() => n.outbound.connections === 0, 3000, 'outbound record');
  assert.ok(await handshakeFailures(n, 'untrusted_peer') >= 1);
  assert.deepEqual(flagsOf(n, 'source'), [ResponseFlags.UPSTREAM_CONNECT_FAILURE]);
  assert.deepEqual(flagsOf(n, 'destination'), [], 'no stream may reach the inbound side');
});

test('a server presenting the certificate of another identity is refused by the client and counted', async (t) => {
  const n = await twoNodes(t, {
    serverCredentials: testCredentials([spiffeId('shop', 'echo')], { presentAs: { [spiffeId('shop', 'echo')]: spiffeId('shop', 'impostor') } }),
  });
  const s = await n.dial();
  assert.equal(await closure(s), 'ECONNRESET');
  await until(() => n.outbound.connections === 0, 3000, 'outbound record');
  assert.equal(await handshakeFailures(n, 'identity_rejected'), 1);
  assert.deepEqual(flagsOf(n, 'source'), [ResponseFlags.UPSTREAM_CONNECT_FAILURE]);
  assert.equal(n.pool.stats().sessions, 0);
});

test('plain TCP to the tunnel port is refused and counted', async (t) => {
  const n = await twoNodes(t);
  const s = connect({ host: n.inboundAddress.address, port: n.inboundAddress.port });
  s.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  await closure(s);
  await until(() => n.logLines.some((l) => l.msg === 'tunnel handshake refused'), 3000, 'refusal log');
  assert.equal(await handshakeFailures(n, 'not_tls'), 1);
});

test('TLS without a server name, or naming an identity not on the node, is refused and counted', async (t) => {
  const n = await twoNodes(t);
  const leaf = testLeaf(spiffeId('shop', 'client'));
  const context = createSecureContext({ cert: leaf.cert, key: leaf.key, ca: testCa().cert });
  for (const servername of [undefined, serverNameFor(spiffeId('shop', 'elsewhere'))]) {
    const s = tlsConnect({
      host: n.inboundAddress.address, port: n.inboundAddress.port, secureContext: context, ALPNProtocols: ['h2'],
      checkServerIdentity: () => undefined, ...(servername === undefined ? {} : { servername }),
    });
    await closure(s);
  }
  await until(() => n.logLines.filter((l) => l.msg === 'tunnel handshake refused').length === 2, 3000, 'two refusals');
  assert.equal(await handshakeFailures(n, 'unknown_server_name'), 2);
});

test('policy denied at the destination: 403, the client is reset, both sides record DENY and count it', async (t) => {
  const n = await twoNodes(t, { inboundAuthorize: denyTo('echo') });
  const s = await n.dial();
  assert.equal(await closure(s), 'ECONNRESET');
  await until(() => flagsOf(n, 'source').length === 1 && flagsOf(n, 'destination').length === 1, 3000, 'records');
  assert.deepEqual(flagsOf(n, 'source'), [ResponseFlags.DENIED]);
  assert.deepEqual(flagsOf(n, 'destination'), [ResponseFlags.DENIED]);
  const samples = parseMetrics(await n.registry.metrics());
  assert.equal(total(samples, 'weft_policy_denials_total', { reporter: 'destination' }), 1);
  assert.equal(total(samples, 'weft_policy_denials_total', { reporter: 'source' }), 1);
});

test('policy denied at the source: no tunnel is opened at all', async (t) => {
  const n = await twoNodes(t, { authorize: denyTo('echo'), inboundAuthorize: () => ({ allowed: true, reason: '' }) });
  const s = await n.dial();
  assert.equal(await closure(s), 'ECONNRESET');
  await until(() => flagsOf(n, 'source').length === 1, 3000, 'record');
  assert.deepEqual(flagsOf(n, 'source'), [ResponseFlags.DENIED]);
  assert.equal(n.pool.stats().sessions, 0);
  assert.equal(n.inbound.stats().sessions, 0);
});
