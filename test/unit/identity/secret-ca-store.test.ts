import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ManualClock } from '../../../src/core/clock.ts';
import { isWeftError } from '../../../src/core/errors.ts';
import { SecretCaStore, mergeRevoked, type SecretClient, type SecretContent } from '../../../src/identity/secret-ca-store.ts';
import { spiffeId } from '../../../src/identity/spiffe.ts';
import { issue, openCa } from './support.ts';

/** One Secret with the API server's optimistic concurrency: create once, replace at the current version. */
class SharedSecret {
  content: SecretContent | undefined;
  #rv = 0;
  writes = 0;
  /** Let every reader see "no Secret" until this many reads, as two replicas starting together would. */
  emptyReads = 0;

  client(): SecretClient {
    return {
      name: 'weft-system/weft-ca',
      read: () => Promise.resolve(this.emptyReads-- > 0 ? undefined : this.content),
      create: (data) => {
        if (this.content !== undefined) return Promise.reject(Object.assign(new Error('exists'), { conflict: true }));
        this.writes++;
        this.content = { data: { ...data }, version: String(++this.#rv) };
        return Promise.resolve(this.content.version);
      },
      replace: (data, version) => {
        if (this.content?.version !== version) return Promise.reject(Object.assign(new Error('stale'), { conflict: true }));
        this.writes++;
        this.content = { data: { ...data }, version: String(++this.#rv) };
        return Promise.resolve(this.content.version);
      },
    };
  }
}

test('two control planes starting together on one Secret end up with the same root', async () => {
  const clock = new ManualClock(Date.now());
  const secret = new SharedSecret();
  secret.emptyReads = 2; // both see no CA, both make a root, only one create wins
  const [a, b] = await Promise.all([openCa(clock, { store: new SecretCaStore(secret.client()) }), openCa(clock, { store: new SecretCaStore(secret.client()) })]);
  assert.equal(secret.writes, 1, 'one create succeeded');
  assert.equal(a.trustBundlePem(), b.trustBundlePem(), 'the loser adopted the winner\'s root');
  assert.equal(secret.content?.data['ca.crt'], a.trustBundlePem());
  // A certificate from one verifies against the other's bundle: agents may use either.
  const { certPem } = await issue(a, spiffeId('shop', 'web'));
  assert.match(certPem, /BEGIN CERTIFICATE/);
  const restarted = await openCa(clock, { store: new SecretCaStore(secret.client()) });
  assert.equal(restarted.trustBundlePem(), a.trustBundlePem(), 'a restart keeps the root');
});

test('revocations from two replicas are merged, not overwritten', async () => {
  const clock = new ManualClock(Date.now());
  const secret = new SharedSecret();
  const a = await openCa(clock, { store: new SecretCaStore(secret.client()) });
  const b = await openCa(clock, { store: new SecretCaStore(secret.client()) });
  const one = await issue(a, spiffeId('shop', 'web'));
  const two = await issue(b, spiffeId('shop', 'db'));
  await a.revoke(one.serial);
  await b.revoke(two.serial); // b's version is stale now: it re-reads and merges
  const stored = JSON.parse(secret.content?.data['revoked.json'] ?? '[]') as { serial: string }[];
  assert.deepEqual(stored.map((r) => r.serial).sort(), [one.serial, two.serial].map((s) => s.replace(/^0+/, '').toLowerCase()).sort());
  const fresh = await openCa(clock, { store: new SecretCaStore(secret.client()) });
  assert.equal(fresh.revokedSerials().length, 2);
});

test('a Secret holding half a CA, or another key, is refused by name', async () => {
  const clock = new ManualClock(Date.now());
  const secret = new SharedSecret();
  secret.content = { data: { 'ca.crt': '-----BEGIN CERTIFICATE-----\n' }, version: '7' };
  await assert.rejects(openCa(clock, { store: new SecretCaStore(secret.client()) }), (err: unknown) => {
    assert.ok(isWeftError(err, 'WEFT_IDENTITY_CA_STORE_CORRUPT'));
    assert.match((err as Error).message, /weft-system\/weft-ca lacks ca\.key/);
    return true;
  });
  const good = new SharedSecret();
  const store = new SecretCaStore(good.client());
  const ca = await openCa(clock, { store });
  const stored = await store.load();
  assert.ok(stored !== undefined && ca.trustBundlePem() === stored.certPem);
  await assert.rejects(store.save({ ...stored, keyPem: 'another key' }), (err: unknown) => isWeftError(err, 'WEFT_IDENTITY_CA_STORE_CONFLICT'));
});

test('mergeRevoked keeps each serial once, the earliest revocation', () => {
  const r = (serial: string, revokedAt: number) => ({ serial, revokedAt, forgetAfter: revokedAt + 10 });
  assert.deepEqual(mergeRevoked([r('0b', 5), r('0a', 1)], [r('0b', 3), r('0c', 9)]), [r('0a', 1), r('0b', 3), r('0c', 9)]);
});
