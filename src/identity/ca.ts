// The mesh CA, run by the control plane: a self-signed ECDSA P-256 root made on first start
// and reloaded afterwards, signing workload certificates for the nodes that run them.

import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';

import type { Clock } from '../core/clock.ts';
import { isWeftError } from '../core/errors.ts';
import type { CaStore, RevokedSerial, StoredCa } from './ca-store.ts';
import { identityError } from './errors.ts';
import { derSerialHex, derToPem, normalizeSerial } from './pem.ts';
import { DEFAULT_TRUST_DOMAIN, spiffeId, type SpiffeId } from './spiffe.ts';
import { ecdsaP256, nodeCrypto, x509, type CryptoKey, type EcKeyAlgorithm } from './x509.ts';

/** Answers "is a pod with this service account scheduled on this node?" from cluster state. */
export interface NodeAuthorizer {
  mayIssue(node: string, namespace: string, serviceAccount: string): boolean;
}

export interface CertificateAuthorityOptions {
  readonly store: CaStore;
  readonly authorizer: NodeAuthorizer;
  readonly clock: Clock;
  readonly trustDomain?: string;
  /** Workload certificate lifetime; 24 h by default. */
  readonly workloadTtlMs?: number;
  /** How far notBefore (and a CRL's thisUpdate) is backdated for clock skew; 5 min by default. */
  readonly clockSkewMs?: number;
  /** Root lifetime, used only when the root is first made; 10 years by default. */
  readonly caTtlMs?: number;
  /** How long a CRL is valid (its nextUpdate); 24 h by default. */
  readonly crlTtlMs?: number;
}

export interface SignRequest {
  readonly csrPem: string;
  /** The node that asked (from its authenticated connection, not from the CSR). */
  readonly node: string;
  readonly identity: SpiffeId;
}

export interface IssuedCertificate {
  readonly certPem: string;
  /** Intermediates between the certificate and a trust anchor; empty for this single-level CA. */
  readonly chainPem: readonly string[];
  /** Normalised serial (lowercase hex, no leading zeros). */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
export const DEFAULT_WORKLOAD_TTL_MS = 24 * HOUR;
export const DEFAULT_CLOCK_SKEW_MS = 5 * MINUTE;
const DEFAULT_CA_TTL_MS = 10 * 365 * 24 * HOUR;
const DEFAULT_CRL_TTL_MS = 24 * HOUR;
const CA_SUBJECT = 'O=weft, CN=weft root CA';
const OID_SAN = '2.5.29.17';
const OID_CRL_NUMBER = '2.5.29.20';

interface CaInternals {
  readonly options: Required<Omit<CertificateAuthorityOptions, 'store' | 'authorizer' | 'clock'>>;
  readonly store: CaStore;
  readonly authorizer: NodeAuthorizer;
  readonly clock: Clock;
  readonly stored: StoredCa;
  readonly cert: x509.X509Certificate;
  readonly signingKey: CryptoKey;
  readonly authorityKeyId: x509.AuthorityKeyIdentifierExtension;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly #in: CaInternals;
  readonly #certPem: string;
  readonly #revoked = new Map<string, RevokedSerial>();
  #revocationVersion = 0;
  #crl: { pem: string; version: number; refreshAt: number } | undefined;
  #writes: Promise<void> = Promise.resolve();

  private constructor(internals: CaInternals) {
    this.#in = internals;
    this.trustDomain = internals.options.trustDomain;
    this.#certPem = internals.cert.toString('pem') + '\n';
    for (const r of internals.stored.revoked) this.#revoked.set(normalizeSerial(r.serial), r);
  }

  /** Loads the CA from its store, or makes and stores a new root when the store is empty. */
  static async open(options: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const opts = {
      trustDomain: options.trustDomain ?? DEFAULT_TRUST_DOMAIN,
      workloadTtlMs: options.workloadTtlMs ?? DEFAULT_WORKLOAD_TTL_MS,
      clockSkewMs: options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS,
      caTtlMs: options.caTtlMs ?? DEFAULT_CA_TTL_MS,
      crlTtlMs: options.crlTtlMs ?? DEFAULT_CRL_TTL_MS,
    };
    spiffeId('default', 'default', opts.trustDomain); // validates the trust domain
    for (const [name, value] of Object.entries(opts)) {
      if (name !== 'trustDomain' && (typeof value !== 'number' || !Number.isFinite(value) || value < 0)) {
        throw new RangeError(`CertificateAuthority option ${name} must be a non-negative number of milliseconds, got ${String(value)}`);
      }
    }
    let stored = await options.store.load();
    if (stored === undefined) {
      const fresh = await createRoot(opts.trustDomain, options.clock.now(), opts.clockSkewMs, opts.caTtlMs);
      try {
        await options.store.save(fresh);
        stored = fresh;
      } catch (err: unknown) {
        // Another replica sharing the store made the root first: use that one.
        if (!isWeftError(err, 'WEFT_IDENTITY_CA_STORE_CONFLICT')) throw err;
        stored = await options.store.load();
        if (stored === undefined) throw err;
      }
    }
    const { cert, signingKey } = checkStored(stored, opts.trustDomain, options.clock.now());
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
    const authorityKeyId = ski !== null
      ? new x509.AuthorityKeyIdentifierExtension(ski.keyId)
      : await x509.AuthorityKeyIdentifierExtension.create(cert.publicKey, false, nodeCrypto);
    return new CertificateAuthority({
      options: opts,
      store: options.store,
      authorizer: options.authorizer,
      clock: options.clock,
      stored,
      cert,
      signingKey,
      authorityKeyId,
    });
  }

  /** The PEM trust anchors to push to agents with config (one root today). */
  trustBundlePem(): string {
    return this.#certPem;
  }

  /** Checks the request (authorizer, CSR signature, CSR SAN) and issues a workload certificate. */
  async sign(request: SignRequest): Promise<IssuedCertificate> {
    const { authorizer, clock, options } = this.#in;
    const id = this.#canonicalIdentity(request.identity);
    if (typeof request.node !== 'string' || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(request.node)) {
      throw identityError('WEFT_IDENTITY_BAD_NODE', `node name ${JSON.stringify(request.node)} is not a DNS-1123 subdomain`);
    }
    // Authorise before any signature work so an unauthorised caller cannot make the CA spend CPU.
    if (!authorizer.mayIssue(request.node, id.namespace, id.serviceAccount)) {
      throw identityError(
        'WEFT_IDENTITY_NOT_ON_NODE',
        `node ${request.node} asked for ${id.uri}, but no pod with service account ${id.namespace}/${id.serviceAccount} is scheduled on it`,
      );
    }
    const csr = parseCsr(request.csrPem);
    await checkCsr(csr, id);

    const now = clock.now();
    // Backdated for skew, but by at most a tenth of the lifetime: agents renew at half of
    // notBefore..notAfter, which a 5 min backdate on a 1 min certificate puts in the past.
    const notBefore = new Date(now - Math.min(options.clockSkewMs, Math.floor(options.workloadTtlMs / 10)));
    const notAfter = new Date(Math.min(now + options.workloadTtlMs, this.#in.cert.notAfter.getTime()));
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerialHex(),
        subject: '', // SPIFFE SVIDs identify by URI SAN alone; the SAN is critical because of that
        issuer: this.#in.cert.subjectName,
        notBefore,
        notAfter,
        publicKey: csr.publicKey,
        signingKey: this.#in.signingKey,
        signingAlgorithm: ecdsaP256,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id.uri }], true),
          await x509.SubjectKeyIdentifierExtension.create(csr.publicKey, false, nodeCrypto),
          this.#in.authorityKeyId,
        ],
      },
      nodeCrypto,
    );
    return Object.freeze({
      certPem: cert.toString('pem') + '\n',
      chainPem: Object.freeze([]),
      serial: normalizeSerial(cert.serialNumber),
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
    });
  }

  /** Adds a serial to the CRL and persists it. Revoking twice is a no-op. */
  async revoke(serial: string): Promise<void> {
    const s = normalizeSerial(serial);
    const now = this.#in.clock.now();
    this.#prune(now);
    if (this.#revoked.has(s)) return;
    // Any certificate this CA issued expires within one lifetime of now, so the entry can go then.
    const forgetAfter = now + this.#in.options.workloadTtlMs + this.#in.options.clockSkewMs;
    this.#revoked.set(s, Object.freeze({ serial: s, revokedAt: now, forgetAfter }));
    this.#revocationVersion++;
    await this.#persist();
  }

  /** Serials currently on the CRL (normalised). */
  revokedSerials(): string[] {
    this.#prune(this.#in.clock.now());
    return [...this.#revoked.keys()];
  }

  /** A signed CRL in PEM, remade when revocations change or half its validity has passed. */
  async crlPem(): Promise<string> {
    const { clock, options } = this.#in;
    const now = clock.now();
    this.#prune(now);
    const cached = this.#crl;
    if (cached !== undefined && cached.version === this.#revocationVersion && now < cached.refreshAt) return cached.pem;
    const version = this.#revocationVersion;
    const crl = await x509.X509CrlGenerator.create(
      {
        issuer: this.#in.cert.subjectName,
        thisUpdate: new Date(now - options.clockSkewMs),
        nextUpdate: new Date(now + options.crlTtlMs),
        entries: [...this.#revoked.values()].map((r) => ({
          serialNumber: derSerialHex(r.serial),
          revocationDate: new Date(r.revokedAt),
        })),
        extensions: [this.#in.authorityKeyId, new x509.Extension(OID_CRL_NUMBER, false, derPositiveInteger(BigInt(now)))],
        signingKey: this.#in.signingKey,
        signingAlgorithm: ecdsaP256,
      },
      nodeCrypto,
    );
    // OpenSSL and RFC 7468 call it "X509 CRL"; the library writes "CRL", which openssl cannot read.
    const pem = derToPem('X509 CRL', crl.rawData);
    this.#crl = { pem, version, refreshAt: now + options.crlTtlMs / 2 };
    return pem;
  }

  #canonicalIdentity(identity: SpiffeId): SpiffeId {
    // Rebuilt from its parts so a hand-made object with a mismatching uri cannot slip through.
    const id = spiffeId(identity.namespace, identity.serviceAccount, identity.trustDomain);
    if (id.trustDomain !== this.trustDomain) {
      throw identityError('WEFT_IDENTITY_WRONG_TRUST_DOMAIN', `${id.uri} is not in this CA's trust domain ${this.trustDomain}`);
    }
    return id;
  }

  #prune(now: number): void {
    for (const [serial, r] of this.#revoked) {
      if (r.forgetAfter <= now) {
        this.#revoked.delete(serial);
        this.#revocationVersion++;
      }
    }
  }

  #persist(): Promise<void> {
    const snapshot: StoredCa = { ...this.#in.stored, revoked: [...this.#revoked.values()] };
    const write = this.#writes.then(() => this.#in.store.save(snapshot));
    this.#writes = write.catch(() => undefined); // a failed write is reported to its caller, not to the next one
    return write;
  }
}

function randomSerialHex(): string {
  // 128 random bits, top bit clear (positive INTEGER) and next bit set (fixed length, no leading zeros).
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x40;
  return bytes.toString('hex');
}

function derPositiveInteger(value: bigint): Uint8Array {
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  const body = Buffer.from(hex, 'hex');
  return Uint8Array.from([0x02, body.length, ...body]);
}

async function createRoot(trustDomain: string, now: number, skewMs: number, ttlMs: number): Promise<StoredCa> {
  const keys = await nodeCrypto.subtle.generateKey(ecdsaP256, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialHex(),
      name: CA_SUBJECT,
      notBefore: new Date(now - skewMs),
      notAfter: new Date(now + ttlMs),
      keys,
      signingAlgorithm: ecdsaP256,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        // SPIFFE: a signing certificate may name its trust domain; the CA checks it on reload.
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, nodeCrypto),
      ],
    },
    nodeCrypto,
  );
  const pkcs8 = await nodeCrypto.subtle.exportKey('pkcs8', keys.privateKey);
  const keyPem = createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string;
  return { keyPem, certPem: cert.toString('pem') + '\n', revoked: [] };
}

function checkStored(
  stored: StoredCa,
  trustDomain: string,
  now: number,
): { cert: x509.X509Certificate; signingKey: CryptoKey } {
  let cert: x509.X509Certificate;
  let signingKey: CryptoKey;
  let keyObject: KeyObject;
  try {
    cert = new x509.X509Certificate(stored.certPem);
  } catch (err: unknown) {
    throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', 'the stored CA certificate is not a parseable X.509 certificate', err);
  }
  try {
    keyObject = createPrivateKey(stored.keyPem);
    if (keyObject.asymmetricKeyType !== 'ec' || keyObject.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new Error(`key is ${keyObject.asymmetricKeyType ?? 'unknown'} ${keyObject.asymmetricKeyDetails?.namedCurve ?? ''}, not EC P-256`);
    }
    signingKey = keyObject.toCryptoKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  } catch (err: unknown) {
    throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', 'the stored CA key is not a readable ECDSA P-256 private key', err);
  }
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  if (basic === null || !basic.ca) {
    throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', 'the stored CA certificate is not a CA certificate (basicConstraints cA is not set)');
  }
  const certKey = createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: 'der', type: 'spki' });
  if (!createPublicKey(keyObject).equals(certKey)) {
    throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', 'the stored CA key does not belong to the stored CA certificate');
  }
  if (now < cert.notBefore.getTime() || now >= cert.notAfter.getTime()) {
    throw identityError(
      'WEFT_IDENTITY_CA_EXPIRED',
      `the stored CA certificate is valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}, not at ${new Date(now).toISOString()}`,
    );
  }
  const uris = (cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [])
    .filter((n) => n.type === 'url')
    .map((n) => n.value);
  if (!uris.includes(`spiffe://${trustDomain}`)) {
    throw identityError(
      'WEFT_IDENTITY_CA_TRUST_DOMAIN_MISMATCH',
      `the stored CA certificate names ${uris.join(', ') || 'no trust domain'}, but this CA serves spiffe://${trustDomain}`,
    );
  }
  return { cert, signingKey };
}

function parseCsr(csrPem: string): x509.Pkcs10CertificateRequest {
  if (typeof csrPem !== 'string' || !csrPem.includes('-----BEGIN CERTIFICATE REQUEST-----')) {
    throw identityError('WEFT_IDENTITY_CSR_MALFORMED', 'the CSR must be a PEM "CERTIFICATE REQUEST" block');
  }
  try {
    return new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err: unknown) {
    throw identityError('WEFT_IDENTITY_CSR_MALFORMED', 'the CSR PEM does not decode to a PKCS#10 request', err);
  }
}

async function checkCsr(csr: x509.Pkcs10CertificateRequest, id: SpiffeId): Promise<void> {
  const algorithm = csr.publicKey.algorithm as EcKeyAlgorithm;
  if (algorithm.name !== 'ECDSA' || algorithm.namedCurve !== 'P-256') {
    throw identityError('WEFT_IDENTITY_CSR_KEY_UNSUPPORTED', `the CSR key is ${algorithm.name} ${algorithm.namedCurve ?? ''}, weft issues only for ECDSA P-256`);
  }
  let valid: boolean;
  try {
    valid = await csr.verify(nodeCrypto);
  } catch (err: unknown) {
    throw identityError('WEFT_IDENTITY_CSR_BAD_SIGNATURE', `the CSR for ${id.uri} carries an unverifiable signature`, err);
  }
  if (!valid) {
    throw identityError('WEFT_IDENTITY_CSR_BAD_SIGNATURE', `the CSR for ${id.uri} is not signed by the key it carries`);
  }
  let names: string[];
  try {
    names = csr.getExtensions(OID_SAN).flatMap((ext) =>
      new x509.SubjectAlternativeNameExtension(ext.rawData).names.items.map((n) => `${n.type}:${n.value}`),
    );
  } catch (err: unknown) {
    throw identityError('WEFT_IDENTITY_CSR_MALFORMED', 'the CSR subjectAltName extension cannot be decoded', err);
  }
  if (names.length !== 1 || names[0] !== `url:${id.uri}`) {
    throw identityError(
      'WEFT_IDENTITY_CSR_IDENTITY_MISMATCH',
      `the CSR names [${names.join(', ')}], but ${id.uri} was requested; it must name exactly that URI`,
    );
  }
}
