import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';

import { ManualClock } from '../../../src/core/clock.ts';
import { isWeftError } from '../../../src/core/errors.ts';
import { RevocationList } from '../../../src/identity/crl.ts';
import { spiffeId } from '../../../src/identity/spiffe.ts';
import { TrustBundle, uriSans } from '../../../src/identity/trust-bundle.ts';
import { PeerVerifier, verifyPeer } from '../../../src/identity/verify-peer.ts';
import { ecdsaP256, nodeCrypto, x509 } from '../../../src/identity/x509.ts';
import { issue, openCa } from './support.ts';

const web = spiffeId('shop', 'web');
const HOUR = 3_600_000;

function code(expected: string) {
  return (err: unknown) => {
    assert.ok(isWeftError(err, expected), `expected ${expected}, got ${String(err)}`);
    return true;
  };
}

/** A hand-made root, so the tests can sign leaves our CA would never issue. */
async function handRoot(now: number, trustDomain?: string) {
  const keys = await nodeCrypto.subtle.generateKey(ecdsaP256, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: 'CN=hand root',
      keys,
      signingAlgorithm: ecdsaP256,
      notBefore: new Date(now - HOUR),
      notAfter: new Date(now + 100 * HOUR),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
        ...(trustDomain === undefined ? [] : [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }])]),
      ],
    },
    nodeCrypto,
  );
  const pem = cert.toString('pem') + '\n';
  const leaf = async (options: { sans: x509.JsonGeneralNames; ca?: boolean; serial?: string }): Promise<string> => {
    const leafKeys = await nodeCrypto.subtle.generateKey(ecdsaP256, true, ['sign', 'verify']);
    const extensions: x509.Extension[] = [new x509.BasicConstraintsExtension(options.ca ?? false, undefined, true)];
    if (options.sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(options.sans, true));
    const c = await x509.X509CertificateGenerator.create(
      {
        serialNumber: options.serial,
        subject: '',
        issuer: cert.subjectName,
        notBefore: new Date(now - HOUR),
        notAfter: new Date(now + HOUR),
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        signingAlgorithm: ecdsaP256,
        extensions,
      },
      nodeCrypto,
    );
    return c.toString('pem') + '\n';
  };
  return { pem, leaf };
}

test('accepts a valid peer and returns its SPIFFE id, from PEM, X509Certificate or chain', async () => {
  const clock = new ManualClock(Date.now());
  const ca = await openCa(clock);
  const { certPem } = await issue(ca, web);
  const bundle = TrustBundle.parse(ca.trustBundlePem());
  const now = clock.now();
  for (const peer of [certPem, new X509Certificate(certPem), [new X509Certificate(certPem)]]) {
    const id = verifyPeer(peer, { trustBundle: bundle, now, expectedIdentity: web });
    assert.deepEqual({ ...id }, { ...web });
  }
  assert.equal(verifyPeer(certPem, { trustBundle: ca.trustBundlePem(), crl: await ca.crlPem(), now: new Date(now), expectedIdentity: web.uri }).uri, web.uri);
});

test('refuses revoked, foreign, wrong-identity, expired and not-yet-valid peers', async () => {
  const clock = new ManualClock(Date.now());
  const ca = await openCa(clock);
  const other = await openCa(clock);
  const good = await issue(ca, web);
  const revoked = await issue(ca, web);
  const foreign = await issue(other, web);
  await ca.revoke(revoked.serial);
  const bundle = TrustBundle.parse(ca.trustBundlePem());
  const crl = RevocationList.parse(await ca.crlPem(), bundle);
  assert.equal(crl.size, 1);
  const now = clock.now();
  const notBefore = new X509Certificate(good.certPem).validFromDate.getTime();
  const notAfter = new X509Certificate(good.certPem).validToDate.getTime();

  const cases = [
    { name: 'revoked serial', pem: revoked.certPem, now, code: 'WEFT_IDENTITY_PEER_REVOKED' },
    { name: 'issued by another CA', pem: foreign.certPem, now, code: 'WEFT_IDENTITY_PEER_UNTRUSTED' },
    { name: 'wrong identity', pem: good.certPem, now, expected: spiffeId('shop', 'db'), code: 'WEFT_IDENTITY_PEER_WRONG_IDENTITY' },
    { name: 'expired', pem: good.certPem, now: notAfter + 1000, code: 'WEFT_IDENTITY_PEER_EXPIRED' },
    { name: 'not yet valid', pem: good.certPem, now: notBefore - 1000, code: 'WEFT_IDENTITY_PEER_NOT_YET_VALID' },
    { name: 'not a certificate', pem: 'nope', now, code: 'WEFT_IDENTITY_PEER_MALFORMED' },
  ];
  for (const c of cases) {
    assert.throws(() => verifyPeer(c.pem, { trustBundle: bundle, crl, now: c.now, expectedIdentity: c.expected }), code(c.code), c.name);
  }
  // Control: the same options accept the good certificate, at the edges of its window too.
  for (const at of [now, notBefore, notAfter]) {
    assert.equal(verifyPeer(good.certPem, { trustBundle: bundle, crl, now: at, expectedIdentity: web }).uri, web.uri);
  }
  // Without the CRL the revoked certificate is otherwise fine: the refusal above came from the CRL.
  assert.equal(verifyPeer(revoked.certPem, { trustBundle: bundle, now }).uri, web.uri);
});

test('refuses leaves without exactly one SPIFFE URI SAN, CA leaves and foreign trust domains', async () => {
  const now = Date.now();
  const hand = await handRoot(now);
  const bundle = TrustBundle.parse(hand.pem);
  const cases = [
    { name: 'no SAN', sans: [], code: 'WEFT_IDENTITY_PEER_NO_URI_SAN' },
    { name: 'DNS SAN only', sans: [{ type: 'dns' as const, value: 'web.shop.svc' }], code: 'WEFT_IDENTITY_PEER_NO_URI_SAN' },
    {
      name: 'two URI SANs',
      sans: [{ type: 'url' as const, value: web.uri }, { type: 'url' as const, value: 'spiffe://cluster.local/ns/shop/sa/db' }],
      code: 'WEFT_IDENTITY_PEER_MULTIPLE_URI_SAN',
    },
    { name: 'URI SAN that is not a workload id', sans: [{ type: 'url' as const, value: 'https://web.shop' }], code: 'WEFT_IDENTITY_INVALID_ID' },
    { name: 'a CA certificate as leaf', sans: [{ type: 'url' as const, value: web.uri }], ca: true, code: 'WEFT_IDENTITY_PEER_IS_CA' },
  ];
  for (const c of cases) {
    const pem = await hand.leaf({ sans: c.sans, ca: c.ca });
    assert.throws(() => verifyPeer(pem, { trustBundle: bundle, now }), code(c.code), c.name);
  }
  // A DNS name that looks like a second URI inside Node's SAN text is still one URI.
  const tricky = await hand.leaf({ sans: [{ type: 'dns', value: `x, URI:${web.uri}` }, { type: 'url', value: spiffeId('shop', 'db').uri }] });
  assert.deepEqual(uriSans(new X509Certificate(tricky)), ['spiffe://cluster.local/ns/shop/sa/db']);
  assert.equal(verifyPeer(tricky, { trustBundle: bundle, now }).serviceAccount, 'db');

  // A CA that names its trust domain vouches only for ids in it.
  const example = await handRoot(now, 'example.org');
  const exampleBundle = TrustBundle.parse(example.pem);
  const outside = await example.leaf({ sans: [{ type: 'url', value: web.uri }] });
  assert.throws(() => verifyPeer(outside, { trustBundle: exampleBundle, now }), code('WEFT_IDENTITY_WRONG_TRUST_DOMAIN'));
  const inside = await example.leaf({ sans: [{ type: 'url', value: spiffeId('shop', 'web', 'example.org').uri }] });
  assert.equal(verifyPeer(inside, { trustBundle: exampleBundle, now }).trustDomain, 'example.org');
});

test('a CRL revokes only its own issuer\'s serials and must be signed by a bundle CA', async () => {
  const clock = new ManualClock(Date.now());
  const now = clock.now();
  const ca = await openCa(clock);
  const hand = await handRoot(now);
  const victim = await issue(ca, web);
  await ca.revoke(victim.serial);
  const bundle = TrustBundle.parse(ca.trustBundlePem() + hand.pem);
  const crl = RevocationList.parse(await ca.crlPem(), bundle);
  // Same serial, other issuer: not revoked by this CRL.
  const twin = await hand.leaf({ sans: [{ type: 'url', value: web.uri }], serial: victim.serial });
  assert.equal(new X509Certificate(twin).serialNumber.toLowerCase(), victim.serial);
  assert.equal(verifyPeer(twin, { trustBundle: bundle, crl, now }).uri, web.uri);
  assert.throws(() => verifyPeer(victim.certPem, { trustBundle: bundle, crl, now }), code('WEFT_IDENTITY_PEER_REVOKED'));

  const other = await openCa(clock);
  const foreignCrl = await other.crlPem();
  assert.throws(() => RevocationList.parse(foreignCrl, bundle), code('WEFT_IDENTITY_CRL_INVALID'));
  assert.equal(RevocationList.parse(foreignCrl, TrustBundle.parse(other.trustBundlePem())).size, 0, 'fine under its own CA');
  assert.throws(() => RevocationList.parse('', bundle), code('WEFT_IDENTITY_CRL_INVALID'));
  // One flipped bit in the signed part: the signature check must catch it.
  const pem = await ca.crlPem();
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.indexOf(Buffer.from('weft root CA')) + 1] ^= 0x01;
  assert.throws(() => RevocationList.parse(new Uint8Array(der), bundle), code('WEFT_IDENTITY_CRL_INVALID'));
});

test('bundles must hold CA certificates', async () => {
  const clock = new ManualClock(Date.now());
  const ca = await openCa(clock);
  const { certPem } = await issue(ca, web);
  assert.throws(() => TrustBundle.parse(''), code('WEFT_IDENTITY_BUNDLE_INVALID'));
  assert.throws(() => TrustBundle.parse(certPem), code('WEFT_IDENTITY_BUNDLE_INVALID'));
  assert.equal(TrustBundle.parse(ca.trustBundlePem()).anchors[0]?.trustDomain, 'cluster.local');
});

test('PeerVerifier caches signature checks but still checks time, CRL and identity every call', async () => {
  const clock = new ManualClock(Date.now());
  const ca = await openCa(clock);
  const { certPem } = await issue(ca, web);
  const cert = new X509Certificate(certPem);
  const verifier = new PeerVerifier({ trustBundle: TrustBundle.parse(ca.trustBundlePem()), clock, cacheSize: 2 });
  assert.equal(verifier.verify(cert).uri, web.uri);
  assert.equal(verifier.verify(new X509Certificate(certPem), web).uri, web.uri, 'cache hit by bytes, not object');
  assert.throws(() => verifier.verify(cert, spiffeId('shop', 'db')), code('WEFT_IDENTITY_PEER_WRONG_IDENTITY'));
  for (let i = 0; i < 3; i++) verifier.verify(new X509Certificate((await issue(ca, web)).certPem)); // overflows the cache
  clock.advance(25 * HOUR);
  assert.throws(() => verifier.verify(cert), code('WEFT_IDENTITY_PEER_EXPIRED'));
});
