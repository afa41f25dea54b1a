// The server's TLS material as a grpc-js CertificateProvider, so the certificate can be
// rotated without restarting the listener.

import { createSecureContext } from 'node:tls';
import { experimental } from '@grpc/grpc-js';
import { controlError, ControlErrors } from './errors.ts';

export interface ServerTlsMaterial {
  /** The CA certificates client (node) certificates must chain to. */
  readonly trustBundlePem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** Throws a clear error when TLS would refuse the material. */
export function checkTlsMaterial(m: ServerTlsMaterial): ServerTlsMaterial {
  try {
    createSecureContext({ ca: m.trustBundlePem, cert: m.certPem, key: m.keyPem });
  } catch (err: unknown) {
    throw controlError(ControlErrors.BAD_TLS_MATERIAL, `the control server's key, certificate or trust bundle was refused by TLS: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  return Object.freeze({ ...m });
}

export class TlsMaterialProvider implements experimental.CertificateProvider {
  #material: ServerTlsMaterial;
  readonly #ca = new Set<experimental.CaCertificateUpdateListener>();
  readonly #identity = new Set<experimental.IdentityCertificateUpdateListener>();

  constructor(material: ServerTlsMaterial) {
    this.#material = checkTlsMaterial(material);
  }

  get material(): ServerTlsMaterial {
    return this.#material;
  }

  update(material: ServerTlsMaterial): void {
    this.#material = checkTlsMaterial(material);
    for (const l of this.#ca) l(this.#caUpdate());
    for (const l of this.#identity) l(this.#identityUpdate());
  }

  // grpc-js registers its watcher only after adding these listeners, so the first update
  // must come later or it is lost and the server drops every connection.
  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.#ca.add(listener);
    queueMicrotask(() => { if (this.#ca.has(listener)) listener(this.#caUpdate()); });
  }

  removeCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.#ca.delete(listener);
  }

  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.#identity.add(listener);
    queueMicrotask(() => { if (this.#identity.has(listener)) listener(this.#identityUpdate()); });
  }

  removeIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.#identity.delete(listener);
  }

  #caUpdate(): experimental.CaCertificateUpdate {
    return { caCertificate: Buffer.from(this.#material.trustBundlePem) };
  }

  #identityUpdate(): experimental.IdentityCertificateUpdate {
    return { certificate: Buffer.from(this.#material.certPem), privateKey: Buffer.from(this.#material.keyPem) };
  }
}
