// The agent's certificates: one per service account with pods on this node, each renewed at
// half-life, retried with capped backoff, kept while still valid when renewal fails, and never
// handed out once expired.

import { X509Certificate, createPrivateKey } from 'node:crypto';

import type { Clock } from '../core/clock.ts';
import { describeError } from '../core/errors.ts';
import { DEFAULT_BACKOFF, backoffDelay, type BackoffPolicy } from './backoff.ts';
import { createWorkloadCsr } from './csr.ts';
import { identityError } from './errors.ts';
import { normalizeSerial } from './pem.ts';
import type { Scheduler, TimerHandle } from '../core/scheduler.ts';
import type { SpiffeId } from './spiffe.ts';
import { uriSans } from './trust-bundle.ts';

/** What the store needs from the control plane; the gRPC client implements it. */
export interface CertificateIssuer {
  sign(csrPem: string, identity: SpiffeId): Promise<{ readonly certPem: string; readonly chainPem: readonly string[] }>;
}

export interface WorkloadCertificate {
  readonly identity: SpiffeId;
  /** PKCS#8 PEM; never leaves the node and never appears in snapshots. */
  readonly keyPem: string;
  readonly certPem: string;
  readonly chainPem: readonly string[];
  /** Normalised serial (lowercase hex). */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export type CertificateEvent =
  /** A certificate was issued: the first for this identity, or a renewal (`previous` set). */
  | { readonly type: 'issued'; readonly identity: SpiffeId; readonly certificate: WorkloadCertificate; readonly previous: WorkloadCertificate | undefined }
  /** A request failed; `stillValid` says whether the old certificate is still being served. */
  | { readonly type: 'failed'; readonly identity: SpiffeId; readonly error: unknown; readonly failures: number; readonly retryInMs: number; readonly stillValid: boolean }
  /** The certificate expired without a renewal; `get` now returns undefined. */
  | { readonly type: 'expired'; readonly identity: SpiffeId; readonly certificate: WorkloadCertificate }
  /** The identity is no longer wanted on this node. */
  | { readonly type: 'removed'; readonly identity: SpiffeId };

export interface CertificateSnapshot {
  readonly identity: string;
  readonly serial: string | undefined;
  readonly notBefore: string | undefined;
  readonly notAfter: string | undefined;
  /** When the next renewal or retry is due (ISO), if one is scheduled. */
  readonly nextAttempt: string | undefined;
  readonly failures: number;
  readonly lastError: string | undefined;
}

export interface CertificateStoreOptions {
  readonly issuer: CertificateIssuer;
  readonly clock: Clock;
  readonly scheduler: Scheduler;
  /** Jitter source in [0, 1); Math.random by default. */
  readonly random?: () => number;
  /** Fraction of the lifetime after which to renew; 0.5 by default. */
  readonly renewAtFraction?: number;
  readonly backoff?: BackoffPolicy;
  /** An issuer call that has not answered by then counts as failed; 30 s by default. */
  readonly requestTimeoutMs?: number;
}

interface Entry {
  readonly id: SpiffeId;
  current: WorkloadCertificate | undefined;
  /** The next renewal or retry. */
  attempt: TimerHandle | undefined;
  attemptAt: number | undefined;
  expiry: TimerHandle | undefined;
  inFlight: boolean;
  failures: number;
  lastError: string | undefined;
  waiters: Array<{ resolve: (c: WorkloadCertificate) => void; reject: (e: unknown) => void }>;
}

type Listener = (event: CertificateEvent) => void;

// Even a certificate issued already past its renewal point is not re-requested in a tight loop.
const MIN_RENEW_DELAY_MS = 1_000;

export class CertificateStore {
  readonly #issuer: CertificateIssuer;
  readonly #clock: Clock;
  readonly #scheduler: Scheduler;
  readonly #random: () => number;
  readonly #renewAt: number;
  readonly #backoff: BackoffPolicy;
  readonly #timeoutMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #listeners = new Set<Listener>();
  #closed = false;

  constructor(options: CertificateStoreOptions) {
    this.#issuer = options.issuer;
    this.#clock = options.clock;
    this.#scheduler = options.scheduler;
    this.#random = options.random ?? Math.random;
    this.#renewAt = options.renewAtFraction ?? 0.5;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
    if (!(this.#renewAt > 0 && this.#renewAt < 1)) {
      throw new RangeError(`CertificateStore renewAtFraction must be between 0 and 1 (exclusive), got ${this.#renewAt}`);
    }
    if (!(this.#backoff.initialMs > 0 && this.#backoff.maxMs >= this.#backoff.initialMs)) {
      throw new RangeError(`CertificateStore backoff needs 0 < initialMs <= maxMs, got ${JSON.stringify(this.#backoff)}`);
    }
  }

  /**
   * Declares the identities this node needs (the service accounts of its pods). New ones are
   * requested at once; ones no longer listed are dropped with their keys.
   */
  setIdentities(identities: Iterable<SpiffeId>): void {
    if (this.#closed) throw identityError('WEFT_IDENTITY_STORE_CLOSED', 'setIdentities on a closed CertificateStore');
    const wanted = new Map<string, SpiffeId>();
    for (const id of identities) wanted.set(id.uri, id);
    for (const [uri, entry] of this.#entries) {
      if (!wanted.has(uri)) this.#remove(entry);
    }
    for (const [uri, id] of wanted) {
      if (this.#entries.has(uri)) continue;
      const entry: Entry = {
        id,
        current: undefined,
        attempt: undefined,
        attemptAt: undefined,
        expiry: undefined,
        inFlight: false,
        failures: 0,
        lastError: undefined,
        waiters: [],
      };
      this.#entries.set(uri, entry);
      this.#request(entry);
    }
  }

  /** The valid certificate for `identity`, or undefined when there is none (yet, or any more). */
  get(identity: SpiffeId | string): WorkloadCertificate | undefined {
    const current = this.#entries.get(typeof identity === 'string' ? identity : identity.uri)?.current;
    if (current === undefined) return undefined;
    const now = this.#clock.now();
    // Checked here too, not only by the expiry timer, because a timer can fire late.
    return now >= current.notBefore.getTime() && now < current.notAfter.getTime() ? current : undefined;
  }

  /** Resolves with the certificate once one is valid; rejects if the identity is dropped or the store closes. */
  waitFor(identity: SpiffeId | string): Promise<WorkloadCertificate> {
    const uri = typeof identity === 'string' ? identity : identity.uri;
    if (this.#closed) return Promise.reject(identityError('WEFT_IDENTITY_STORE_CLOSED', `waitFor(${uri}) on a closed CertificateStore`));
    const entry = this.#entries.get(uri);
    if (entry === undefined) {
      return Promise.reject(identityError('WEFT_IDENTITY_NOT_REQUESTED', `${uri} is not among this node's identities`));
    }
    const ready = this.get(uri);
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
  }

  /** Listens to issued/failed/expired/removed events; returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** For the admin config dump: certificate metadata, never keys. */
  snapshot(): CertificateSnapshot[] {
    return [...this.#entries.values()].map((e) => {
      const cert = this.get(e.id);
      return {
        identity: e.id.uri,
        serial: cert?.serial,
        notBefore: cert?.notBefore.toISOString(),
        notAfter: cert?.notAfter.toISOString(),
        nextAttempt: e.attemptAt === undefined ? undefined : new Date(e.attemptAt).toISOString(),
        failures: e.failures,
        lastError: e.lastError,
      };
    });
  }

  /**
   * Takes certificates kept from before a restart (the last good config on disk) for
   * identities already declared, when they are valid now and no newer one is held: served
   * until they expire or are renewed (at half-life, or now if that is past). Returns how many.
   */
  adopt(certs: readonly { keyPem: string; certPem: string; chainPem: readonly string[] }[]): number {
    let n = 0;
    for (const c of certs) {
      let cert: WorkloadCertificate;
      let entry: Entry | undefined;
      try {
        const uri = uriSans(new X509Certificate(c.certPem))[0] ?? '';
        entry = this.#entries.get(uri);
        if (entry === undefined) continue;
        cert = this.#check(entry.id, c.keyPem, c.certPem, c.chainPem);
      } catch {
        continue; // expired, not ours, or not a certificate: asked for anew instead
      }
      if (entry.current !== undefined && entry.current.notAfter >= cert.notAfter) continue;
      if (this.#clock.now() < cert.notBefore.getTime()) continue;
      this.#onIssued(entry, cert);
      n++;
    }
    return n;
  }

  /**
   * Drops every current certificate `revoked` picks (peers refuse it now) and asks for a new
   * one, with a new key, at once. Returns the identities concerned. A node an operator revoked
   * gets none: its requests fail and are retried with backoff.
   */
  replaceRevoked(revoked: (cert: WorkloadCertificate) => boolean): SpiffeId[] {
    const out: SpiffeId[] = [];
    for (const entry of this.#entries.values()) {
      const cert = entry.current;
      if (cert === undefined || !revoked(cert)) continue;
      entry.current = undefined;
      entry.expiry?.cancel();
      entry.expiry = undefined;
      this.#emit({ type: 'expired', identity: entry.id, certificate: cert });
      this.#request(entry);
      out.push(entry.id);
    }
    return out;
  }

  /** Cancels timers, forgets keys, rejects waiters. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const entry of this.#entries.values()) {
      this.#cancelTimers(entry);
      entry.current = undefined;
      for (const w of entry.waiters.splice(0)) w.reject(identityError('WEFT_IDENTITY_STORE_CLOSED', `CertificateStore closed while waiting for ${entry.id.uri}`));
    }
    this.#entries.clear();
    this.#listeners.clear();
  }

  #remove(entry: Entry): void {
    this.#entries.delete(entry.id.uri);
    this.#cancelTimers(entry);
    entry.current = undefined;
    for (const w of entry.waiters.splice(0)) {
      w.reject(identityError('WEFT_IDENTITY_NOT_REQUESTED', `${entry.id.uri} was dropped from this node's identities`));
    }
    this.#emit({ type: 'removed', identity: entry.id });
  }

  #cancelTimers(entry: Entry): void {
    entry.attempt?.cancel();
    entry.expiry?.cancel();
    entry.attempt = entry.expiry = entry.attemptAt = undefined;
  }

  #live(entry: Entry): boolean {
    return !this.#closed && this.#entries.get(entry.id.uri) === entry;
  }

  #request(entry: Entry): void {
    if (entry.inFlight || !this.#live(entry)) return;
    entry.inFlight = true;
    entry.attempt?.cancel();
    entry.attempt = entry.attemptAt = undefined;
    this.#issue(entry.id).then(
      (cert) => this.#onIssued(entry, cert),
      (err: unknown) => this.#onFailed(entry, err),
    );
  }

  async #issue(id: SpiffeId): Promise<WorkloadCertificate> {
    // A fresh key per request: a renewal never reuses the old key.
    const { keyPem, csrPem } = await createWorkloadCsr(id);
    let timer: TimerHandle | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.#scheduler.schedule(this.#timeoutMs, () =>
        reject(identityError('WEFT_IDENTITY_ISSUE_TIMEOUT', `the issuer did not answer for ${id.uri} within ${this.#timeoutMs} ms`)),
      );
    });
    try {
      const answer = await Promise.race([this.#issuer.sign(csrPem, id), timeout]);
      return this.#check(id, keyPem, answer.certPem, answer.chainPem);
    } finally {
      timer?.cancel();
    }
  }

  /** The issuer is trusted for signing, not for getting the request right: check what came back. */
  #check(id: SpiffeId, keyPem: string, certPem: string, chainPem: readonly string[]): WorkloadCertificate {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certPem);
    } catch (err: unknown) {
      throw identityError('WEFT_IDENTITY_ISSUED_INVALID', `the certificate issued for ${id.uri} does not parse`, err);
    }
    const uris = uriSans(cert);
    if (uris.length !== 1 || uris[0] !== id.uri) {
      throw identityError('WEFT_IDENTITY_ISSUED_INVALID', `the certificate issued for ${id.uri} names [${uris.join(', ')}]`);
    }
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) {
      throw identityError('WEFT_IDENTITY_ISSUED_INVALID', `the certificate issued for ${id.uri} is not for the key that was sent`);
    }
    const notBefore = cert.validFromDate;
    const notAfter = cert.validToDate;
    if (notAfter.getTime() <= this.#clock.now()) {
      throw identityError('WEFT_IDENTITY_ISSUED_INVALID', `the certificate issued for ${id.uri} expired at ${notAfter.toISOString()}`);
    }
    return Object.freeze({
      identity: id,
      keyPem,
      certPem,
      chainPem: Object.freeze([...chainPem]),
      serial: normalizeSerial(cert.serialNumber),
      notBefore,
      notAfter,
    });
  }

  #onIssued(entry: Entry, cert: WorkloadCertificate): void {
    entry.inFlight = false;
    if (!this.#live(entry)) return;
    const previous = entry.current;
    entry.current = cert;
    entry.failures = 0;
    entry.lastError = undefined;
    const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime();
    this.#scheduleAttempt(entry, cert.notBefore.getTime() + lifetime * this.#renewAt, MIN_RENEW_DELAY_MS);
    entry.expiry?.cancel();
    entry.expiry = this.#at(cert.notAfter.getTime(), 0, () => this.#onExpired(entry, cert));
    for (const w of entry.waiters.splice(0)) w.resolve(cert);
    this.#emit({ type: 'issued', identity: entry.id, certificate: cert, previous });
  }

  #onFailed(entry: Entry, error: unknown): void {
    entry.inFlight = false;
    if (!this.#live(entry)) return;
    entry.failures++;
    entry.lastError = describeError(error);
    const retryInMs = backoffDelay(entry.failures, this.#backoff, this.#random);
    this.#scheduleAttempt(entry, this.#clock.now() + retryInMs, 0);
    const stillValid = this.get(entry.id) !== undefined;
    this.#emit({ type: 'failed', identity: entry.id, error, failures: entry.failures, retryInMs, stillValid });
  }

  #onExpired(entry: Entry, cert: WorkloadCertificate): void {
    if (!this.#live(entry) || entry.current !== cert) return;
    entry.current = undefined;
    entry.expiry = undefined;
    this.#emit({ type: 'expired', identity: entry.id, certificate: cert });
  }

  #scheduleAttempt(entry: Entry, at: number, minDelayMs: number): void {
    entry.attempt?.cancel();
    const due = Math.max(at, this.#clock.now() + minDelayMs);
    entry.attemptAt = due;
    entry.attempt = this.#at(due, 0, () => {
      entry.attempt = entry.attemptAt = undefined;
      this.#request(entry);
    });
  }

  /** Runs `fn` at clock time `at`; if the timer fires early (clamped or skewed), waits again. */
  #at(at: number, minDelayMs: number, fn: () => void): TimerHandle {
    let handle: TimerHandle;
    const arm = (): void => {
      handle = this.#scheduler.schedule(Math.max(at - this.#clock.now(), minDelayMs), () => {
        if (this.#clock.now() < at) arm();
        else fn();
      });
    };
    arm();
    return { cancel: () => handle.cancel() };
  }

  #emit(event: CertificateEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err: unknown) {
        // The store's state is already consistent; surface a listener bug the way EventEmitter would.
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }
}
