// Node and server certificates for the control channel, checked with openssl and Node's
// X509Certificate rather than with the code that made them.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.ts';
import { ChannelCertificateIssuer, createNodeCsr } from '../../../src/control/channel-certificates.ts';
import { nodeFromCertificate } from '../../../src/control/channel-identity.ts';
import { testCa } from '../../support/certs.ts';

function opensslVerify(caPem: string, certPem: string, purpose: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-verify-'));
  try {
    writeFileSync(join(dir, 'ca.pem'), caPem);
    writeFileSync(join(dir, 'cert.pem'), certPem);
    const r = spawnSync('openssl', ['verify', '-purpose', purpose, '-CAfile', join(dir, 'ca.pem'), join(dir, 'cert.pem')], { encoding: 'utf8' });
    return `${r.stdout}${r.stderr}`.trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a node certificate carries the agent SVID and the node DNS name, verifies as a TLS client, and names its node', async () => {
  const ca = testCa('channel');
  const issuer = await ChannelCertificateIssuer.create({ caCertPem: ca.cert, caKeyPem: ca.key, trustDomain: 'example.org', clock: new ManualClock(Date.now()) });
  const { keyPem, csrPem } = await createNodeCsr('worker-7.zone-a', 'example.org');
  const { certPem, chainPem } = await issuer.signNodeCertificate(csrPem, 'worker-7.zone-a');
  assert.deepEqual(chainPem, []);
  const cert = new X509Certificate(certPem);
  assert.equal(cert.subjectAltName, 'URI:spiffe://example.org/ns/weft-system/sa/weft-agent, DNS:worker-7.zone-a.node.weft.internal');
  assert.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(keyPem)));
  assert.equal(cert.ca, false);
  assert.match(opensslVerify(ca.cert, certPem, 'sslclient'), /: OK$/);
  assert.equal(nodeFromCertificate(cert.subjectAltName, 'example.org'), 'worker-7.zone-a');
  const hours = (cert.validToDate.getTime() - cert.validFromDate.getTime()) / 3_600_000;
  assert.ok(hours > 24 && hours < 24.2, `lifetime ${hours} h (24 h plus 5 min backdating)`);
});

test('the server certificate carries the control plane identity and extra DNS names', async () => {
  const ca = testCa('channel');
  const issuer = await ChannelCertificateIssuer.create({ caCertPem: ca.cert, caKeyPem: ca.key, trustDomain: 'cluster.local', clock: new ManualClock(Date.now()) });
  const server = await issuer.issueServerCertificate(['weft-control.weft-system.svc']);
  const cert = new X509Certificate(server.certPem);
  assert.equal(cert.subjectAltName, 'URI:spiffe://cluster.local/ns/weft-system/sa/weft-control, DNS:weft-control.weft-system.svc');
  assert.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(server.keyPem)));
  assert.match(opensslVerify(ca.cert, server.certPem, 'sslserver'), /: OK$/);
  assert.equal(server.notAfter.getTime(), cert.validToDate.getTime());
});

test('CSRs for another node, another trust domain or a bad key are refused with the reason', async () => {
  const ca = testCa('channel');
  const issuer = await ChannelCertificateIssuer.create({ caCertPem: ca.cert, caKeyPem: ca.key, trustDomain: 'cluster.local', clock: new ManualClock(Date.now()) });
  const forB = await createNodeCsr('node-b', 'cluster.local');
  await assert.rejects(issuer.signNodeCertificate(forB.csrPem, 'node-a'), /the node CSR names \[url:spiffe:\/\/cluster.local\/ns\/weft-system\/sa\/weft-agent, dns:node-b.node.weft.internal\], but node node-a may only ask for \[.*dns:node-a.node.weft.internal\]/);
  const otherTd = await createNodeCsr('node-a', 'evil.org');
  await assert.rejects(issuer.signNodeCertificate(otherTd.csrPem, 'node-a'), /spiffe:\/\/evil.org/);
  await assert.rejects(issuer.signNodeCertificate('hello', 'node-a'), { code: 'WEFT_CONTROL_BAD_CSR', message: /must be a PEM "CERTIFICATE REQUEST" block/ });
  await assert.rejects(issuer.signNodeCertificate(forB.csrPem, 'Node_A'), { code: 'WEFT_CONTROL_BAD_NODE_NAME' });
  // A CSR whose signature does not match its key.
  const tampered = forB.csrPem.replace(/(\n[A-Za-z0-9+/]{10})([A-Za-z0-9+/])/, (_m, a: string, c: string) => `${a}${c === 'A' ? 'B' : 'A'}`);
  await assert.rejects(issuer.signNodeCertificate(tampered, 'node-b'), { code: 'WEFT_CONTROL_BAD_CSR' });
});

test('unusable CA material is refused when the issuer is made', async () => {
  const ca = testCa('channel');
  const other = testCa('channel-other');
  const clock = new ManualClock();
  await assert.rejects(ChannelCertificateIssuer.create({ caCertPem: ca.cert, caKeyPem: other.key, trustDomain: 'cluster.local', clock }), { code: 'WEFT_CONTROL_BAD_CA_MATERIAL', message: /key does not belong/ });
  await assert.rejects(ChannelCertificateIssuer.create({ caCertPem: 'nope', caKeyPem: ca.key, trustDomain: 'cluster.local', clock }), { code: 'WEFT_CONTROL_BAD_CA_MATERIAL' });
});
