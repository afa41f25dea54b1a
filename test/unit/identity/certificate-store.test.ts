import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';

import { ManualClock } from '../../../src/core/clock.ts';
import { isWeftError } from '../../../src/core/errors.ts';
import type { CertificateAuthority } from '../../../src/identity/ca.ts';
import {
  CertificateStore,
  type CertificateEvent,
  type CertificateIssuer,
  type WorkloadCertificate,
} from '../../../src/identity/certificate-store.ts';
import { createWorkloadCsr } from '../../../src/identity/csr.ts';
import { ManualScheduler } from '../../../src/core/scheduler.ts';
import { spiffeId } from '../../../src/identity/spiffe.ts';
import { verifyPeer } from '../../../src/identity/verify-peer.ts';
import { openCa, podsOnNodes } from './support.ts';

const web = spiffeId('shop', 'web');
const db = spiffeId('shop', 'db');
const HOUR = 3_600_000;

/** The real CA in-process behind a switch that plays "control plane unreachable". */
class SwitchableIssuer implements CertificateIssuer {
  down = false;
  calls = 0;
  readonly #ca: CertificateAuthority;

  constructor(ca: CertificateAuthority) {
    this.#ca = ca;
  }

  async sign(csrPem: string, identity: typeof web): Promise<{ certPem: string; chainPem: readonly string[] }> {
    this.calls++;
    if (this.down) throw new Error('control plane unreachable');
    return this.#ca.sign({ csrPem, node: 'node-1', identity });
  }
}

async function setup(t: TestContext, options: { workloadTtlMs?: number; random?: () => number } = {}) {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const scheduler = new ManualScheduler(clock);
  const ca = await openCa(clock, {
    authorizer: podsOnNodes({ 'node-1': ['shop/web', 'shop/db'] }),
    workloadTtlMs: options.workloadTtlMs,
  });
  const issuer = new SwitchableIssuer(ca);
  const store = new CertificateStore({ issuer, clock, scheduler, random: options.random ?? (() => 0.5) });
  t.after(() => store.close());
  const events: CertificateEvent[] = [];
  store.subscribe((e) => events.push(e));
  /** The next event (of a type), subscribed before the action that causes it. */
  const next = <T extends CertificateEvent['type']>(type?: T): Promise<Extract<CertificateEvent, { type: T }>> =>
    new Promise((resolve) => {
      const off = store.subscribe((e) => {
        if (type === undefined || e.type === type) {
          off();
          resolve(e as Extract<CertificateEvent, { type: T }>);
        }
      });
    });
  return { clock, scheduler, ca, issuer, store, events, next };
}

function lifetime(cert: WorkloadCertificate): number {
  return cert.notAfter.getTime() - cert.notBefore.getTime();
}

test('issues on demand and renews at half-life with a new key', async (t) => {
  const { clock, scheduler, ca, issuer, store, next } = await setup(t);
  const issued = next('issued');
  store.setIdentities([web]);
  const first = (await issued).certificate;
  assert.equal(store.get(web), first);
  assert.equal(await store.waitFor(web), first);
  assert.equal(verifyPeer(first.certPem, { trustBundle: ca.trustBundlePem(), now: clock.now(), expectedIdentity: web }).uri, web.uri);
  assert.equal(lifetime(first), 24 * HOUR + 5 * 60_000, '24 h plus the 5 min backdating');

  const halfLife = first.notBefore.getTime() + lifetime(first) / 2;
  const [snap] = store.snapshot();
  assert.deepEqual(snap, {
    identity: web.uri,
    serial: first.serial,
    notBefore: first.notBefore.toISOString(),
    notAfter: first.notAfter.toISOString(),
    nextAttempt: new Date(halfLife).toISOString(),
    failures: 0,
    lastError: undefined,
  });
  assert.doesNotMatch(JSON.stringify(store.snapshot()), /PRIVATE KEY/);

  // One second before half-life nothing happens.
  scheduler.advance(halfLife - clock.now() - 1000);
  assert.equal(issuer.calls, 1);

  const renewed = next('issued');
  assert.equal(scheduler.advanceToNext(), 1000);
  const second = await renewed;
  assert.equal(clock.now(), halfLife);
  assert.equal(issuer.calls, 2);
  assert.equal(second.previous, first);
  assert.notEqual(second.certificate.serial, first.serial);
  assert.notEqual(second.certificate.keyPem, first.keyPem, 'a fresh key per renewal');
  assert.equal(store.get(web), second.certificate);
  // The old certificate's expiry timer is gone: only the next renewal and the new expiry are pending.
  assert.deepEqual(scheduler.pendingDelays(), [lifetime(second.certificate) / 2 - 5 * 60_000, lifetime(second.certificate) - 5 * 60_000]);
});

test('keeps the old certificate while renewal fails, backs off up to 150 s, serves nothing after expiry, recovers', async (t) => {
  // A 1 h lifetime keeps the number of retries until expiry small; jitter alternates low/high.
  let flip = 0;
  const { clock, scheduler, issuer, store, events, next } = await setup(t, {
    workloadTtlMs: HOUR,
    random: () => (flip++ % 2 === 0 ? 0 : 0.999),
  });
  const issued = next('issued');
  store.setIdentities([web]);
  const first = (await issued).certificate;
  const waiting: Promise<WorkloadCertificate>[] = [];

  issuer.down = true;
  const retryDelays: number[] = [];
  let failures = 0;
  let expiredAt: number | undefined;
  for (let i = 0; i < 100 && expiredAt === undefined; i++) {
    const event = next();
    const waited = scheduler.advanceToNext();
    assert.notEqual(waited, undefined, 'something is always scheduled');
    const e = await event;
    if (e.type === 'expired') {
      expiredAt = clock.now();
      assert.equal(e.certificate, first);
      waiting.push(store.waitFor(web));
      continue;
    }
    assert.equal(e.type, 'failed');
    if (e.type !== 'failed') continue;
    assert.match(String(e.error), /control plane unreachable/);
    assert.equal(e.failures, ++failures);
    if (i > 0) retryDelays.push(waited!); // the first wait is the half-life, not a backoff
    assert.equal(e.stillValid, clock.now() < first.notAfter.getTime());
    if (e.stillValid) assert.equal(store.get(web), first, 'the still-valid certificate is kept');
  }
  assert.equal(expiredAt, first.notAfter.getTime(), 'expired exactly at notAfter');
  assert.equal(store.get(web), undefined, 'never served once expired');
  assert.equal(store.snapshot()[0]?.serial, undefined);
  assert.ok(retryDelays.length >= 10, `retried ${retryDelays.length} times`);
  assert.ok(Math.max(...retryDelays) <= 150_000, `max delay ${Math.max(...retryDelays)}`);
  assert.ok(Math.max(...retryDelays) > 140_000, 'reached the cap');
  assert.ok(retryDelays[0] <= 2_000 && retryDelays[1] <= 4_000, `starts small: ${retryDelays.slice(0, 3).join(', ')}`);
  const capped = retryDelays.slice(-4);
  assert.ok(capped.every((d) => d >= 75_000), `capped delays stay in [75 s, 150 s]: ${capped.join(', ')}`);

  // The control plane comes back: the next retry succeeds and the waiter gets the certificate.
  issuer.down = false;
  const recovered = next('issued');
  const waited = scheduler.advanceToNext()!;
  assert.ok(waited <= 150_000);
  const back = await recovered;
  assert.equal(back.previous, undefined, 'nothing was being served any more');
  assert.equal(store.get(web), back.certificate);
  assert.equal(await waiting[0], back.certificate);
  assert.equal(store.snapshot()[0]?.failures, 0);
  assert.equal(events.filter((e) => e.type === 'expired').length, 1);
});

test('drops identities no longer needed and rejects their waiters; close is idempotent', async (t) => {
  const { scheduler, store, next } = await setup(t);
  let seen = 0;
  const both = new Promise<void>((resolve) => {
    store.subscribe((e) => {
      if (e.type === 'issued' && ++seen === 2) resolve();
    });
  });
  store.setIdentities([web, db]);
  await both;
  assert.deepEqual(store.snapshot().map((s) => s.identity).sort(), [db.uri, web.uri]);
  assert.equal(scheduler.pendingDelays().length, 4, 'renewal and expiry for each');

  const removed = next('removed');
  store.setIdentities([db]);
  assert.equal((await removed).identity.uri, web.uri);
  assert.equal(store.get(web), undefined);
  assert.notEqual(store.get(db), undefined);
  assert.equal(scheduler.pendingDelays().length, 2);
  await assert.rejects(store.waitFor(web), (err: unknown) => isWeftError(err, 'WEFT_IDENTITY_NOT_REQUESTED'));

  store.close();
  store.close();
  assert.equal(scheduler.pendingDelays().length, 0);
  assert.equal(store.get(db), undefined);
  await assert.rejects(store.waitFor(db), (err: unknown) => isWeftError(err, 'WEFT_IDENTITY_STORE_CLOSED'));
  assert.throws(() => store.setIdentities([db]), (err: unknown) => isWeftError(err, 'WEFT_IDENTITY_STORE_CLOSED'));
});

test('an answer for a dropped identity is discarded', async (t) => {
  const { store, issuer, events } = await setup(t);
  let answered!: () => void;
  const answeredP = new Promise<void>((resolve) => (answered = resolve));
  const sign = issuer.sign.bind(issuer);
  issuer.sign = async (csr, id) => {
    try {
      return await sign(csr, id);
    } finally {
      answered();
    }
  };
  store.setIdentities([web]);
  const pending = store.waitFor(web);
  store.setIdentities([]);
  await assert.rejects(pending, (err: unknown) => isWeftError(err, 'WEFT_IDENTITY_NOT_REQUESTED'));
  await answeredP;
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(store.get(web), undefined);
  assert.deepEqual(events.map((e) => e.type), ['removed']);
});

test('checks what the issuer returns, and times out an issuer that never answers', async (t) => {
  const { clock, scheduler, ca } = await setup(t);
  let mode: 'other-key' | 'other-identity' | 'hang' = 'other-key';
  let called: () => void = () => {};
  const badIssuer: CertificateIssuer = {
    async sign(_csrPem, identity) {
      called();
      if (mode === 'hang') return new Promise(() => {});
      const other = await createWorkloadCsr(mode === 'other-identity' ? db : identity);
      return ca.sign({ csrPem: other.csrPem, node: 'node-1', identity: mode === 'other-identity' ? db : identity });
    },
  };
  const checked = new CertificateStore({ issuer: badIssuer, clock, scheduler });
  t.after(() => checked.close());
  const failure = () =>
    new Promise<unknown>((resolve) => {
      const off = checked.subscribe((e) => {
        if (e.type === 'failed') {
          off();
          resolve(e.error);
        }
      });
    });

  let failed = failure();
  checked.setIdentities([web]);
  let err = await failed;
  assert.ok(isWeftError(err, 'WEFT_IDENTITY_ISSUED_INVALID') && /not for the key/.test(err.message), String(err));

  mode = 'other-identity';
  failed = failure();
  scheduler.advanceToNext();
  err = await failed;
  assert.ok(isWeftError(err, 'WEFT_IDENTITY_ISSUED_INVALID') && /names \[spiffe:\/\/cluster\.local\/ns\/shop\/sa\/db\]/.test(err.message), String(err));

  mode = 'hang';
  const calledP = new Promise<void>((resolve) => (called = resolve));
  failed = failure();
  scheduler.advanceToNext();
  await calledP;
  scheduler.advance(29_999);
  assert.equal(checked.get(web), undefined);
  scheduler.advance(1);
  err = await failed;
  assert.ok(isWeftError(err, 'WEFT_IDENTITY_ISSUE_TIMEOUT'), String(err));
  assert.equal(checked.snapshot()[0]?.failures, 3);
});
