// Certificates for the control channel itself (not for workloads): an agent's node
// certificate and the control plane's server certificate, both signed by the mesh CA. The
// workload CA in src/identity issues only single-URI SVIDs for service accounts on the
// asking node; these carry the node name (see channel-identity.ts), so they are made here,
// from the CA's key and certificate handed in by the app.

import 'reflect-metadata'; // @peculiar/x509 resolves its internals through tsyringe, which needs it first
import { createPrivateKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { Clock } from '../core/clock.ts';
import { agentIdentity, controlIdentity, nodeDnsName } from './channel-identity.ts';
import { controlError, ControlErrors } from './errors.ts';

const crypto: webcrypto.Crypto = webcrypto;
const P256 = Object.freeze({ name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' });
const OID_SAN = '2.5.29.17';
const HOUR = 3_600_000;

export interface SignedCertificate {
  readonly certPem: string;
  /** Intermediates between the certificate and the trust bundle; empty for a single-level CA. */
  readonly chainPem: readonly string[];
}

export interface KeyAndCsr {
  /** PKCS#8 PEM; stays with the agent. */
  readonly keyPem: string;
  readonly csrPem: string;
}

export interface ServerCertificate extends SignedCertificate {
  readonly keyPem: string;
  readonly notAfter: Date;
}

function toPem(label: string, der: ArrayBuffer): string {
  const lines = Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

async function newKeyPair(): Promise<{ keys: webcrypto.CryptoKeyPair; keyPem: string }> {
  // Extractable: Node's TLS takes the key as PEM, not as a CryptoKey.
  const keys = await crypto.subtle.generateKey(P256, true, ['sign', 'verify']);
  return { keys, keyPem: toPem('PRIVATE KEY', await crypto.subtle.exportKey('pkcs8', keys.privateKey)) };
}

function sanNames(node: string, trustDomain: string): x509.JsonGeneralName[] {
  return [{ type: 'url', value: agentIdentity(trustDomain) }, { type: 'dns', value: nodeDnsName(node) }];
}

/** The agent side: a fresh P-256 key and a CSR naming exactly what its node certificate will carry. */
export async function createNodeCsr(node: string, trustDomain: string): Promise<KeyAndCsr> {
  const { keys, keyPem } = await newKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    { keys, signingAlgorithm: P256, extensions: [new x509.SubjectAlternativeNameExtension(sanNames(node, trustDomain), true)] },
    crypto,
  );
  return Object.freeze({ keyPem, csrPem: `${csr.toString('pem')}\n` });
}

export interface ChannelCertificateIssuerOptions {
  /** The mesh CA certificate (PEM); it is also the trust bundle agents verify the server with. */
  readonly caCertPem: string;
  /** Its ECDSA P-256 private key (PEM). */
  readonly caKeyPem: string;
  readonly trustDomain: string;
  readonly clock: Clock;
  /** Lifetime of node and server certificates; 24 h by default. */
  readonly ttlMs?: number;
  /** How far notBefore is backdated for clock skew; 5 min by default. */
  readonly clockSkewMs?: number;
}

export class ChannelCertificateIssuer {
  readonly trustDomain: string;
  readonly trustBundlePem: string;
  readonly #ca: x509.X509Certificate;
  readonly #caKey: webcrypto.CryptoKey;
  readonly #authorityKeyId: x509.AuthorityKeyIdentifierExtension;
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #skewMs: number;

  private constructor(o: ChannelCertificateIssuerOptions, ca: x509.X509Certificate, caKey: webcrypto.CryptoKey, akid: x509.AuthorityKeyIdentifierExtension) {
    this.trustDomain = o.trustDomain;
    this.trustBundlePem = o.caCertPem.endsWith('\n') ? o.caCertPem : `${o.caCertPem}\n`;
    this.#ca = ca;
    this.#caKey = caKey;
    this.#authorityKeyId = akid;
    this.#clock = o.clock;
    this.#ttlMs = o.ttlMs ?? 24 * HOUR;
    this.#skewMs = o.clockSkewMs ?? 5 * 60_000;
  }

  static async create(options: ChannelCertificateIssuerOptions): Promise<ChannelCertificateIssuer> {
    let ca: x509.X509Certificate;
    let caKey: webcrypto.CryptoKey;
    try {
      ca = new x509.X509Certificate(options.caCertPem);
      caKey = createPrivateKey(options.caKeyPem).toCryptoKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    } catch (err: unknown) {
      throw controlError(ControlErrors.BAD_CA_MATERIAL, `the CA certificate or key for channel certificates is unusable: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    const caNode = new X509Certificate(options.caCertPem);
    if (!caNode.ca) throw controlError(ControlErrors.BAD_CA_MATERIAL, `${caNode.subject} is not a CA certificate`);
    if (!caNode.checkPrivateKey(createPrivateKey(options.caKeyPem))) {
      throw controlError(ControlErrors.BAD_CA_MATERIAL, 'the CA key does not belong to the CA certificate');
    }
    const ski = ca.getExtension(x509.SubjectKeyIdentifierExtension);
    const akid = ski !== null
      ? new x509.AuthorityKeyIdentifierExtension(ski.keyId)
      : await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey, false, crypto);
    return new ChannelCertificateIssuer(options, ca, caKey, akid);
  }

  /**
   * Signs an agent's node certificate for `node`, which the caller has authenticated (by
   * bootstrap token or a still-valid node certificate). The CSR must name exactly the SANs
   * that will be issued, so a CSR made for another node is refused rather than rewritten.
   */
  async signNodeCertificate(csrPem: string, node: string): Promise<SignedCertificate> {
    const csr = parseCsr(csrPem);
    await checkCsr(csr, node, this.trustDomain);
    const names = sanNames(node, this.trustDomain);
    return this.#issue(csr.publicKey, names, [x509.ExtendedKeyUsage.clientAuth]);
  }

  /** A fresh key and server certificate for the control plane; `dnsNames` are extra names (e.g. the Service's). */
  async issueServerCertificate(dnsNames: readonly string[] = []): Promise<ServerCertificate> {
    const { keys, keyPem } = await newKeyPair();
    const names: x509.JsonGeneralName[] = [
      { type: 'url', value: controlIdentity(this.trustDomain) },
      ...dnsNames.map((value): x509.JsonGeneralName => ({ type: 'dns', value })),
    ];
    const cert = await this.#issue(new x509.PublicKey(await crypto.subtle.exportKey('spki', keys.publicKey)), names, [x509.ExtendedKeyUsage.serverAuth]);
    return Object.freeze({ ...cert, keyPem, notAfter: new X509Certificate(cert.certPem).validToDate });
  }

  async #issue(publicKey: x509.PublicKey, names: x509.JsonGeneralName[], usages: x509.ExtendedKeyUsageType[]): Promise<SignedCertificate> {
    const now = this.#clock.now();
    const serial = randomBytes(16);
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, fixed length
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial.toString('hex'),
        subject: '', // identified by SANs alone; the SAN extension is critical because of that
        issuer: this.#ca.subjectName,
        notBefore: new Date(now - this.#skewMs),
        notAfter: new Date(Math.min(now + this.#ttlMs, this.#ca.notAfter.getTime())),
        publicKey,
        signingKey: this.#caKey,
        signingAlgorithm: P256,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension(usages),
          new x509.SubjectAlternativeNameExtension(names, true),
          await x509.SubjectKeyIdentifierExtension.create(publicKey, false, crypto),
          this.#authorityKeyId,
        ],
      },
      crypto,
    );
    return Object.freeze({ certPem: `${cert.toString('pem')}\n`, chainPem: Object.freeze([]) });
  }
}

function parseCsr(csrPem: string): x509.Pkcs10CertificateRequest {
  if (typeof csrPem !== 'string' || !csrPem.includes('-----BEGIN CERTIFICATE REQUEST-----')) {
    throw controlError(ControlErrors.BAD_CSR, 'the node CSR must be a PEM "CERTIFICATE REQUEST" block');
  }
  try {
    return new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err: unknown) {
    throw controlError(ControlErrors.BAD_CSR, 'the node CSR PEM does not decode to a PKCS#10 request', err);
  }
}

async function checkCsr(csr: x509.Pkcs10CertificateRequest, node: string, trustDomain: string): Promise<void> {
  const algorithm = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (algorithm.name !== 'ECDSA' || algorithm.namedCurve !== 'P-256') {
    throw controlError(ControlErrors.BAD_CSR, `the node CSR key is ${algorithm.name} ${algorithm.namedCurve ?? ''}, only ECDSA P-256 is issued`);
  }
  let valid: boolean;
  try {
    valid = await csr.verify(crypto);
  } catch (err: unknown) {
    throw controlError(ControlErrors.BAD_CSR, 'the node CSR signature cannot be verified', err);
  }
  if (!valid) throw controlError(ControlErrors.BAD_CSR, 'the node CSR is not signed by the key it carries');
  let names: string[];
  try {
    names = csr.getExtensions(OID_SAN).flatMap((ext) =>
      new x509.SubjectAlternativeNameExtension(ext.rawData).names.items.map((n) => `${n.type}:${n.value}`));
  } catch (err: unknown) {
    throw controlError(ControlErrors.BAD_CSR, 'the node CSR subjectAltName cannot be decoded', err);
  }
  const wanted = sanNames(node, trustDomain).map((n) => `${n.type}:${n.value}`);
  if (names.length !== 2 || names.some((n) => !wanted.includes(n))) {
    throw controlError(
      ControlErrors.BAD_CSR,
      `the node CSR names [${names.join(', ')}], but node ${node} may only ask for [${wanted.join(', ')}]`,
    );
  }
}
