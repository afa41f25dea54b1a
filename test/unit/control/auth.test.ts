// Who may talk to the control plane, over real TLS on 127.0.0.1: bootstrap tokens, node
// certificates (the node comes from the certificate), and certificate signing.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { WeftError } from '../../../src/core/errors.ts';
import { systemScheduler } from '../../../src/control/timing.ts';
import { createNodeCsr } from '../../../src/control/channel-certificates.ts';
import { CONTROL_SERVER_NAME } from '../../../src/control/channel-identity.ts';
import {
  ControlStub, type BootstrapResponse, type ControlStubMethods, type DeltaRequest, type DeltaResponse,
} from '../../../src/control/protocol.ts';
import { snapshot, startAgent, startServer, testPki, tokenOf, TD, waitFor } from './harness.ts';
import { spiffeId, testLeaf } from '../../support/certs.ts';

function stub(port: number, key?: string, cert?: string, trust?: string): ControlStubMethods {
  return new ControlStub(`127.0.0.1:${port}`, grpc.credentials.createSsl(
    Buffer.from(trust ?? ''), key === undefined ? null : Buffer.from(key), cert === undefined ? null : Buffer.from(cert),
    { checkServerIdentity: () => undefined },
  ), { 'grpc.ssl_target_name_override': CONTROL_SERVER_NAME }) as unknown as ControlStubMethods;
}

function bootstrap(s: ControlStubMethods, csrPem: string, token: string | undefined, node = ''): Promise<BootstrapResponse> {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => s.BootstrapNodeCertificate({ csrPem, node }, md, { deadline: Date.now() + 5_000 }, (err, r) => (err ? reject(err) : resolve(r as BootstrapResponse))));
}

/** Opens a stream, subscribes as `node`, and returns the first response or the error. */
function subscribe(s: ControlStubMethods, node: string): Promise<DeltaResponse> {
  return new Promise((resolve, reject) => {
    const call = s.DeltaResources();
    call.on('data', (r: DeltaResponse) => { resolve(r); call.cancel(); });
    call.on('error', reject);
    const req: DeltaRequest = { node, initialVersions: {}, responseNonce: '', errorMessage: '', rejected: [] };
    call.write(req);
  });
}

async function nodeCertificate(port: number, node: string): Promise<{ key: string; cert: string; trust: string }> {
  const { trustBundlePem } = await testPki();
  const s = stub(port, undefined, undefined, trustBundlePem);
  try {
    const { keyPem, csrPem } = await createNodeCsr(node, TD);
    const r = await bootstrap(s, csrPem, tokenOf(node));
    return { key: keyPem, cert: r.certPem, trust: r.trustBundlePem };
  } finally {
    s.close();
  }
}

const nodes = snapshot({
  'node-a': { 'mesh/config': { node: 'node-a' }, 'secret/a': { only: 'a' } },
  'node-b': { 'mesh/config': { node: 'node-b' }, 'secret/b': { only: 'b' } },
});

test('a bad or missing bootstrap token is refused with a clear message', async (t) => {
  const h = await startServer();
  t.after(() => h.server.destroy());
  const { trustBundlePem } = await testPki();
  const s = stub(h.port, undefined, undefined, trustBundlePem);
  t.after(() => s.close());
  const { csrPem } = await createNodeCsr('node-a', TD);

  await assert.rejects(bootstrap(s, csrPem, 'not-a-token-at-all-000000'), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
    assert.match(err.details, /bootstrap token sha256:[0-9a-f]{8} is not known to this control plane/);
    assert.deepEqual(err.metadata.get('weft-error-code'), ['WEFT_CONTROL_UNAUTHENTICATED']);
    return true;
  });
  await assert.rejects(bootstrap(s, csrPem, undefined), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
    assert.match(err.details, /needs a bootstrap token in metadata "authorization: Bearer <token>"/);
    return true;
  });
  // A good token used for another node's name.
  await assert.rejects(bootstrap(s, csrPem, tokenOf('node-b'), 'node-a'), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.PERMISSION_DENIED);
    assert.match(err.details, /belongs to node node-b, not to node node-a/);
    return true;
  });
  // node-b's token with a CSR made for node-a: the CSR must name what will be issued.
  await assert.rejects(bootstrap(s, csrPem, tokenOf('node-b')), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.PERMISSION_DENIED);
    assert.match(err.details, /node node-b may only ask for \[url:spiffe:\/\/cluster.local\/ns\/weft-system\/sa\/weft-agent, dns:node-b.node.weft.internal\]/);
    return true;
  });
  assert.match(await h.registry.getSingleMetricAsString('weft_control_auth_failures_total'), /reason="unknown_token"} 1/);

  // The agent client with a wrong token keeps retrying and says why.
  const agent = await startAgent('node-a', h.port, { bootstrapToken: () => 'wrong-token-0123456789abcdef' });
  t.after(() => agent.client.close());
  await waitFor(() => /is not known to this control plane/.test(agent.client.configDump().lastError ?? ''), 'the refusal to surface');
  assert.equal(agent.client.configDump().synced, false);
});

test('a node certificate for node A cannot fetch node B\'s config; other certificates are refused', async (t) => {
  const h = await startServer();
  t.after(() => h.server.destroy());
  h.server.setSnapshot(nodes);
  const a = await nodeCertificate(h.port, 'node-a');

  const withA = stub(h.port, a.key, a.cert, a.trust);
  t.after(() => withA.close());
  const own = await subscribe(withA, 'node-a');
  assert.deepEqual(own.resources.map((r) => `${r.type}/${r.name}`).sort(), ['mesh/config', 'secret/a']);
  // Claiming node-b in the request does not help: the node comes from the certificate.
  await assert.rejects(subscribe(withA, 'node-b'), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.PERMISSION_DENIED);
    assert.match(err.details, /node certificate is for node node-a; it cannot subscribe to the config of node node-b/);
    return true;
  });
  // An empty node name means "whatever my certificate says".
  const implicit = await subscribe(withA, '');
  assert.ok(implicit.resources.every((r) => r.type !== 'secret' || r.name === 'a'));

  // A workload SVID from the same CA verifies at the TLS layer but is not a node certificate.
  const { trustBundlePem } = await testPki();
  const workload = testLeaf(spiffeId('default', 'web'), 'control');
  const withWorkload = stub(h.port, workload.key, workload.cert, trustBundlePem);
  t.after(() => withWorkload.close());
  await assert.rejects(subscribe(withWorkload, 'node-b'), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
    assert.match(err.details, /names \[spiffe:\/\/cluster.local\/ns\/default\/sa\/web\], but a node certificate must name exactly spiffe:\/\/cluster.local\/ns\/weft-system\/sa\/weft-agent/);
    return true;
  });
  // A certificate from a CA the server does not trust, and no certificate at all.
  const foreign = testLeaf(spiffeId('weft-system', 'weft-agent'), 'elsewhere');
  for (const s of [stub(h.port, foreign.key, foreign.cert, trustBundlePem), stub(h.port, undefined, undefined, trustBundlePem)]) {
    t.after(() => s.close());
    await assert.rejects(subscribe(s, 'node-b'), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.match(err.details, /DeltaResources needs a node certificate signed by the mesh CA/);
      return true;
    });
  }
  assert.equal(h.events.filter((e) => e.type === 'pushed' && e.node === 'node-b').length, 0, 'nothing of node-b was ever sent');
});

test('SignCertificate is called with the node from the certificate; refusals keep their code', async (t) => {
  let refuse = false;
  const h = await startServer(0, {
    csrSigner: {
      sign: (request) => {
        h.signCalls.push(request);
        if (refuse) return Promise.reject(new WeftError('WEFT_IDENTITY_NOT_ON_NODE', `no pod with ${request.identity} on ${request.node}`));
        return Promise.resolve({ certPem: `signed for ${request.node}`, chainPem: ['chain'] });
      },
    },
  });
  t.after(() => h.server.destroy());
  h.server.setSnapshot(nodes);
  const agent = await startAgent('node-b', h.port);
  t.after(() => agent.client.close());
  await agent.client.whenSynced();

  const identity = { uri: 'spiffe://cluster.local/ns/shop/sa/cart' };
  const issued = await agent.client.sign('-----BEGIN CERTIFICATE REQUEST-----\n...', identity);
  assert.deepEqual(issued, { certPem: 'signed for node-b', chainPem: ['chain'] });
  assert.deepEqual(h.signCalls, [{ csrPem: '-----BEGIN CERTIFICATE REQUEST-----\n...', node: 'node-b', identity: identity.uri }]);

  refuse = true;
  await assert.rejects(agent.client.sign('csr', identity.uri), (err: unknown) => {
    assert.ok(err instanceof WeftError);
    assert.equal(err.code, 'WEFT_IDENTITY_NOT_ON_NODE');
    assert.match(err.message, /node node-b asked for spiffe:\/\/cluster.local\/ns\/shop\/sa\/cart: no pod with/);
    return true;
  });

  // Without a node certificate, SignCertificate is refused outright.
  const { trustBundlePem } = await testPki();
  const anonymous = stub(h.port, undefined, undefined, trustBundlePem);
  t.after(() => anonymous.close());
  await assert.rejects(new Promise((resolve, reject) => anonymous.SignCertificate({ csrPem: 'x', identity: identity.uri }, new grpc.Metadata(), {}, (e, r) => (e ? reject(e) : resolve(r)))),
    (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED && /SignCertificate needs a node certificate/.test(err.details));
  assert.equal(h.signCalls.length, 2);
});

test('the agent refuses a server that is not the control plane', async (t) => {
  const { trustBundlePem } = await testPki();
  // Same CA, but a workload's certificate instead of weft-control's.
  const impostor = testLeaf(spiffeId('default', 'web'), 'control');
  const h = await startServer(0, { tls: { trustBundlePem, certPem: impostor.cert, keyPem: impostor.key } });
  t.after(() => h.server.destroy());
  h.server.setSnapshot(nodes);
  const agent = await startAgent('node-a', h.port);
  t.after(() => agent.client.close());
  await waitFor(() => /not the control plane's identity spiffe:\/\/cluster.local\/ns\/weft-system\/sa\/weft-control/.test(agent.client.configDump().lastError ?? ''), 'the refusal');
  assert.deepEqual(h.events.filter((e) => e.type !== 'published'), [], 'no stream: the agent never got past TLS');
});

test('the server certificate rotates without a restart; bad TLS material is refused by name', async (t) => {
  const h = await startServer();
  t.after(() => h.server.destroy());
  h.server.setSnapshot(nodes);
  const { issuer, trustBundlePem } = await testPki();
  const next = await issuer.issueServerCertificate(['rotated.example']);
  h.server.updateTls({ trustBundlePem, certPem: next.certPem, keyPem: next.keyPem });
  const seen: string[] = [];
  const s = new ControlStub(`127.0.0.1:${h.port}`, grpc.credentials.createSsl(Buffer.from(trustBundlePem), null, null, {
    checkServerIdentity: (_host, cert) => { seen.push(cert.subjectaltname ?? ''); return undefined; },
  }), { 'grpc.ssl_target_name_override': CONTROL_SERVER_NAME }) as unknown as ControlStubMethods;
  t.after(() => s.close());
  const { csrPem } = await createNodeCsr('node-a', TD);
  await bootstrap(s, csrPem, tokenOf('node-a'));
  assert.deepEqual(seen, ['URI:spiffe://cluster.local/ns/weft-system/sa/weft-control, DNS:rotated.example']);
  assert.throws(() => h.server.updateTls({ trustBundlePem, certPem: next.certPem, keyPem: 'not a key' }), { code: 'WEFT_CONTROL_BAD_TLS_MATERIAL', message: /refused by TLS/ });
});

test('the node certificate is renewed over mTLS at half-life, without the token', async (t) => {
  const h = await startServer();
  t.after(() => h.server.destroy());
  h.server.setSnapshot(nodes);
  let tokenReads = 0;
  let renewals = 0;
  const agent = await startAgent('node-a', h.port, {
    bootstrapToken: () => { tokenReads++; return tokenOf('node-a'); },
    // Compress time: the renewal timer (hours away) fires after 20 ms, once.
    scheduler: { schedule: (ms, fn) => systemScheduler.schedule(ms >= 60_000 ? (renewals++ === 0 ? 20 : 3_600_000) : ms, fn) },
  });
  t.after(() => agent.client.close());
  await agent.client.whenSynced();
  await waitFor(() => renewals >= 2, 'the renewal to finish (it schedules the next one)');
  const metric = await h.registry.getSingleMetricAsString('weft_control_certificates_total');
  assert.match(metric, /kind="node",result="issued"} 2/);
  assert.equal(tokenReads, 1, 'the renewal authenticated with the certificate, not the token');
  // The renewed certificate works for new connections.
  const issued = await agent.client.sign('csr', 'spiffe://cluster.local/ns/a/sa/b');
  assert.match(issued.certPem, /cert for spiffe:\/\/cluster.local\/ns\/a\/sa\/b on node-a/);
});
