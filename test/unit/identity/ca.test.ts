import assert from 'node:assert/strict';
import { readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { ManualClock } from '../../../src/core/clock.ts';
import { isWeftError } from '../../../src/core/errors.ts';
import { FileCaStore, MemoryCaStore } from '../../../src/identity/ca-store.ts';
import { createWorkloadCsr } from '../../../src/identity/csr.ts';
import { spiffeId } from '../../../src/identity/spiffe.ts';
import { verifyPeer } from '../../../src/identity/verify-peer.ts';
import { issue, openCa, openssl, podsOnNodes, tempDir } from './support.ts';

const web = spiffeId('shop', 'web');
const db = spiffeId('shop', 'db');
const HOUR = 3_600_000;

function rejectsWith(code: string) {
  return (err: unknown) => {
    assert.ok(isWeftError(err, code), `expected ${code}, got ${String(err)}`);
    return true;
  };
}

test('issues a SPIFFE SVID that openssl reads and verifies as a client and server certificate', async (t) => {
  const start = Date.now();
  const clock = new ManualClock(start);
  const ca = await openCa(clock);
  const { certPem, serial } = await issue(ca, web);
  const dir = tempDir(t);
  const files = { 'leaf.pem': certPem, 'bundle.pem': ca.trustBundlePem() };

  const text = openssl(dir, ['x509', '-in', 'leaf.pem', '-noout', '-text'], files);
  assert.equal(text.status, 0, text.out);
  assert.match(text.out, /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web\s/);
  assert.match(text.out, /X509v3 Key Usage: critical\s+Digital Signature\s/);
  assert.match(text.out, /X509v3 Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.match(text.out, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
  assert.match(text.out, /NIST CURVE: P-256/);
  assert.match(text.out, /Signature Algorithm: ecdsa-with-SHA256/);
  assert.match(text.out, /Subject:\s*\n/, 'empty subject: the URI SAN is the identity');

  const serialOut = openssl(dir, ['x509', '-in', 'leaf.pem', '-noout', '-serial', '-startdate', '-enddate']);
  assert.equal(serialOut.out.match(/serial=([0-9A-F]+)/)?.[1]?.toLowerCase(), serial);
  const notBefore = Date.parse(serialOut.out.match(/notBefore=(.*)/)?.[1] ?? '');
  const notAfter = Date.parse(serialOut.out.match(/notAfter=(.*)/)?.[1] ?? '');
  assert.ok(Math.abs(notBefore - (start - 5 * 60_000)) < 2000, 'notBefore is backdated 5 minutes for clock skew');
  assert.ok(Math.abs(notAfter - (start + 24 * HOUR)) < 2000, '24 h lifetime');

  for (const purpose of ['sslclient', 'sslserver']) {
    const v = openssl(dir, ['verify', '-purpose', purpose, '-CAfile', 'bundle.pem', 'leaf.pem']);
    assert.equal(v.status, 0, v.out);
    assert.match(v.out, /leaf\.pem: OK/);
  }
  // The same check on our side agrees.
  assert.equal(verifyPeer(certPem, { trustBundle: ca.trustBundlePem(), now: start }).uri, web.uri);

  // And openssl refuses it against some other root: the check above could fail.
  const other = await openCa(clock);
  const wrong = openssl(dir, ['verify', '-CAfile', 'other.pem', 'leaf.pem'], { 'other.pem': other.trustBundlePem() });
  assert.notEqual(wrong.status, 0, wrong.out);
});

test('the root is a P-256 CA certificate naming its trust domain', async (t) => {
  const ca = await openCa(new ManualClock(Date.now()), { trustDomain: 'example.org' });
  const dir = tempDir(t);
  const text = openssl(dir, ['x509', '-in', 'ca.pem', '-noout', '-text'], { 'ca.pem': ca.trustBundlePem() });
  assert.equal(text.status, 0, text.out);
  assert.match(text.out, /Basic Constraints: critical\s+CA:TRUE/);
  assert.match(text.out, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
  assert.match(text.out, /URI:spiffe:\/\/example\.org\s/);
  const id = spiffeId('shop', 'web', 'example.org');
  const { certPem } = await issue(ca, id);
  assert.equal(verifyPeer(certPem, { trustBundle: ca.trustBundlePem(), now: Date.now() }).trustDomain, 'example.org');
});

test('accepts a CSR made by openssl (EC P-256, URI SAN only)', async (t) => {
  const clock = new ManualClock(Date.now());
  const ca = await openCa(clock);
  const dir = tempDir(t);
  const r = openssl(dir, [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'k.pem',
    '-subj', '/', '-addext', `subjectAltName=critical,URI:${web.uri}`, '-out', 'csr.pem',
  ]);
  assert.equal(r.status, 0, r.out);
  const issued = await ca.sign({ csrPem: readFileSync(join(dir, 'csr.pem'), 'utf8'), node: 'node-1', identity: web });
  const v = openssl(dir, ['verify', '-CAfile', 'ca.pem', 'leaf.pem'], { 'ca.pem': ca.trustBundlePem(), 'leaf.pem': issued.certPem });
  assert.equal(v.status, 0, v.out);
  // The certificate is for the key openssl made.
  const match = openssl(dir, ['x509', '-in', 'leaf.pem', '-noout', '-pubkey']);
  const keyPub = openssl(dir, ['pkey', '-in', 'k.pem', '-pubout']);
  assert.equal(match.out, keyPub.out);
});

test('refuses requests it must not sign, naming why', async (t) => {
  const clock = new ManualClock(Date.now());
  // web runs on node-1 only; db on node-2 only.
  const ca = await openCa(clock, { authorizer: podsOnNodes({ 'node-1': ['shop/web'], 'node-2': ['shop/db'] }) });
  const webCsr = (await createWorkloadCsr(web)).csrPem;
  const dir = tempDir(t);

  // A CSR for a different name, then edited to say "web": the SAN now matches, the signature does not.
  const wed = (await createWorkloadCsr(spiffeId('shop', 'wed'))).csrPem;
  const der = Buffer.from(wed.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const at = der.indexOf(Buffer.from('/sa/wed'));
  assert.ok(at > 0);
  der.write('/sa/web', at);
  const edited = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;

  const rsa = openssl(dir, ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rsa.key', '-subj', '/', '-addext', `subjectAltName=URI:${web.uri}`]);
  assert.equal(rsa.status, 0, rsa.out);
  const extraDns = openssl(dir, [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ec.key', '-subj', '/',
    '-addext', `subjectAltName=URI:${web.uri},DNS:web.shop.svc`,
  ]);
  assert.equal(extraDns.status, 0, extraDns.out);

  const cases: Array<{ name: string; node: string; identity: typeof web; csrPem: string; code: string }> = [
    { name: 'SA has no pod on the asking node', node: 'node-2', identity: web, csrPem: webCsr, code: 'WEFT_IDENTITY_NOT_ON_NODE' },
    { name: 'unknown node', node: 'node-9', identity: web, csrPem: webCsr, code: 'WEFT_IDENTITY_NOT_ON_NODE' },
    { name: 'CSR SAN is another identity', node: 'node-2', identity: db, csrPem: webCsr, code: 'WEFT_IDENTITY_CSR_IDENTITY_MISMATCH' },
    { name: 'CSR signature does not match its content', node: 'node-1', identity: web, csrPem: edited, code: 'WEFT_IDENTITY_CSR_BAD_SIGNATURE' },
    { name: 'CSR names an extra DNS SAN', node: 'node-1', identity: web, csrPem: extraDns.out, code: 'WEFT_IDENTITY_CSR_IDENTITY_MISMATCH' },
    { name: 'RSA key', node: 'node-1', identity: web, csrPem: rsa.out, code: 'WEFT_IDENTITY_CSR_KEY_UNSUPPORTED' },
    { name: 'not a CSR', node: 'node-1', identity: web, csrPem: 'hello', code: 'WEFT_IDENTITY_CSR_MALFORMED' },
    { name: 'CSR PEM with garbage inside', node: 'node-1', identity: web, csrPem: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', code: 'WEFT_IDENTITY_CSR_MALFORMED' },
    { name: 'other trust domain', node: 'node-1', identity: spiffeId('shop', 'web', 'evil.org'), csrPem: webCsr, code: 'WEFT_IDENTITY_WRONG_TRUST_DOMAIN' },
    { name: 'empty node name', node: '', identity: web, csrPem: webCsr, code: 'WEFT_IDENTITY_BAD_NODE' },
    { name: 'forged SpiffeId object', node: 'node-1', identity: { ...web, namespace: 'Shop' }, csrPem: webCsr, code: 'WEFT_IDENTITY_INVALID_ID' },
  ];
  for (const c of cases) {
    await assert.rejects(ca.sign({ csrPem: c.csrPem, node: c.node, identity: c.identity }), rejectsWith(c.code), c.name);
  }
  // The unedited CSR on the right node is fine: the refusals above were about what they name.
  const ok = await ca.sign({ csrPem: webCsr, node: 'node-1', identity: web });
  assert.equal(verifyPeer(ok.certPem, { trustBundle: ca.trustBundlePem(), now: clock.now() }).uri, web.uri);
});

test('a CA reloaded from its directory keeps its root, its key (0600) and its revocations', async (t) => {
  const dir = tempDir(t);
  const caDir = join(dir, 'ca');
  const clock = new ManualClock(Date.now());
  const first = await openCa(clock, { store: new FileCaStore(caDir) });
  const bundle = first.trustBundlePem();
  const before = await issue(first, web);
  await first.revoke(before.serial);

  assert.equal(statSync(join(caDir, 'ca.key')).mode & 0o777, 0o600);
  assert.equal(statSync(caDir).mode & 0o777, 0o700);
  assert.match(readFileSync(join(caDir, 'ca.key'), 'utf8'), /^-----BEGIN PRIVATE KEY-----/);

  const second = await openCa(clock, { store: new FileCaStore(caDir) });
  assert.equal(second.trustBundlePem(), bundle, 'same root after restart');
  const after = await issue(second, web);
  const v = openssl(dir, ['verify', '-CAfile', 'bundle.pem', 'after.pem'], { 'bundle.pem': bundle, 'after.pem': after.certPem });
  assert.equal(v.status, 0, v.out);
  assert.equal(verifyPeer(after.certPem, { trustBundle: bundle, now: clock.now() }).uri, web.uri);
  assert.deepEqual(second.revokedSerials(), [before.serial]);
  const crl = await second.crlPem();
  assert.throws(
    () => verifyPeer(before.certPem, { trustBundle: bundle, crl, now: clock.now() }),
    rejectsWith('WEFT_IDENTITY_PEER_REVOKED'),
  );
});

test('refuses to start from damaged or foreign CA material instead of minting a new root', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(Date.now());
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  await openCa(clock, { store: new FileCaStore(a) });
  await openCa(clock, { store: new FileCaStore(b) });

  await assert.rejects(openCa(clock, { store: new FileCaStore(a), trustDomain: 'example.org' }), rejectsWith('WEFT_IDENTITY_CA_TRUST_DOMAIN_MISMATCH'));

  // b's key next to a's certificate.
  writeFileSync(join(a, 'ca.key'), readFileSync(join(b, 'ca.key')));
  await assert.rejects(openCa(clock, { store: new FileCaStore(a) }), rejectsWith('WEFT_IDENTITY_CA_STORE_CORRUPT'));

  unlinkSync(join(b, 'ca.crt'));
  await assert.rejects(openCa(clock, { store: new FileCaStore(b) }), rejectsWith('WEFT_IDENTITY_CA_STORE_CORRUPT'));

  writeFileSync(join(b, 'ca.crt'), 'not a certificate');
  await assert.rejects(openCa(clock, { store: new FileCaStore(b) }), rejectsWith('WEFT_IDENTITY_CA_STORE_CORRUPT'));

  // Eleven years later the ten-year root has expired.
  const store = new MemoryCaStore();
  await openCa(clock, { store });
  clock.advance(11 * 365 * 24 * HOUR);
  await assert.rejects(openCa(clock, { store }), rejectsWith('WEFT_IDENTITY_CA_EXPIRED'));
});

test('revocation: openssl reads the CRL and refuses the revoked serial only', async (t) => {
  const clock = new ManualClock(Date.now());
  const ca = await openCa(clock);
  const revoked = await issue(ca, web);
  const kept = await issue(ca, web);
  await ca.revoke(revoked.serial.toUpperCase()); // any spelling
  await ca.revoke(revoked.serial); // twice is a no-op
  assert.deepEqual(ca.revokedSerials(), [revoked.serial]);
  const crlPem = await ca.crlPem();
  assert.equal(await ca.crlPem(), crlPem, 'cached while nothing changed');

  const dir = tempDir(t);
  const files = { 'ca.pem': ca.trustBundlePem(), 'crl.pem': crlPem, 'revoked.pem': revoked.certPem, 'kept.pem': kept.certPem };
  const text = openssl(dir, ['crl', '-in', 'crl.pem', '-noout', '-text', '-CAfile', 'ca.pem'], files);
  assert.equal(text.status, 0, text.out);
  assert.match(text.out, /verify OK/);
  assert.match(text.out.toLowerCase(), new RegExp(`serial number: ${revoked.serial}`));
  assert.match(text.out, /X509v3 CRL Number/);

  const bad = openssl(dir, ['verify', '-crl_check', '-CAfile', 'ca.pem', '-CRLfile', 'crl.pem', 'revoked.pem']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.out, /certificate revoked/);
  const good = openssl(dir, ['verify', '-crl_check', '-CAfile', 'ca.pem', '-CRLfile', 'crl.pem', 'kept.pem']);
  assert.equal(good.status, 0, good.out);

  // A day and a lifetime later the entry has aged out: that certificate has expired anyway.
  clock.advance(25 * HOUR);
  assert.deepEqual(ca.revokedSerials(), []);
  assert.notEqual(await ca.crlPem(), crlPem);
});
