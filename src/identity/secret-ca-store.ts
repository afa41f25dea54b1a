// The CA kept in a Kubernetes Secret (keys ca.key, ca.crt, revoked.json, as FileCaStore's
// files), so a restarted control plane keeps its root and every replica signs with the same
// one. Writes are optimistic: the first save creates the Secret and fails with a conflict if
// another replica created it first (the CA then loads that one); later saves carry the
// version they read, and a conflicting revocation list is merged, never overwritten.

import { CERT_FILE, KEY_FILE, parseRevoked, REVOKED_FILE, revokedJson, type CaStore, type RevokedSerial, type StoredCa } from './ca-store.ts';
import { identityError } from './errors.ts';

export interface SecretContent {
  /** Decoded values by key. */
  readonly data: Readonly<Record<string, string>>;
  /** The object's resourceVersion. */
  readonly version: string;
}

/** One Secret, as the store needs it; declared here, implemented over the Kubernetes API by the app. */
export interface SecretClient {
  /** Where the Secret is, for messages: `namespace/name`. */
  readonly name: string;
  /** The Secret, or undefined when there is none. */
  read(): Promise<SecretContent | undefined>;
  /** Creates it; resolves with its version, or rejects with `conflict: true` when it exists. */
  create(data: Readonly<Record<string, string>>): Promise<string>;
  /** Replaces it if it is still at `version`; rejects with `conflict: true` otherwise. */
  replace(data: Readonly<Record<string, string>>, version: string): Promise<string>;
}

/** What SecretClient rejects with when another writer got there first. */
export function isConflict(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { conflict?: unknown }).conflict === true;
}

const MAX_MERGES = 5;

export class SecretCaStore implements CaStore {
  readonly #client: SecretClient;
  #version: string | undefined;
  #keyPem: string | undefined;

  constructor(client: SecretClient) {
    this.#client = client;
  }

  async load(): Promise<StoredCa | undefined> {
    const secret = await this.#read();
    if (secret === undefined) return undefined;
    const ca = this.#parse(secret);
    this.#version = secret.version;
    this.#keyPem = ca.keyPem;
    return ca;
  }

  async save(ca: StoredCa): Promise<void> {
    if (this.#version === undefined) {
      try {
        this.#version = await this.#client.create(this.#data(ca, ca.revoked));
        this.#keyPem = ca.keyPem;
        return;
      } catch (err: unknown) {
        if (isConflict(err)) throw identityError('WEFT_IDENTITY_CA_STORE_CONFLICT', `the Secret ${this.#client.name} was created by another control plane first`, err);
        throw identityError('WEFT_IDENTITY_CA_STORE_IO', `cannot create the CA Secret ${this.#client.name}`, err);
      }
    }
    if (ca.keyPem !== this.#keyPem) {
      throw identityError('WEFT_IDENTITY_CA_STORE_CONFLICT', `refusing to replace the CA in ${this.#client.name} with another key`);
    }
    let revoked = ca.revoked;
    for (let attempt = 0; ; attempt++) {
      try {
        this.#version = await this.#client.replace(this.#data(ca, revoked), this.#version);
        return;
      } catch (err: unknown) {
        if (!isConflict(err) || attempt >= MAX_MERGES) throw identityError('WEFT_IDENTITY_CA_STORE_IO', `cannot update the CA Secret ${this.#client.name}`, err);
      }
      // Another replica revoked something meanwhile: keep both lists.
      const now = await this.#read();
      if (now === undefined) throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', `the CA Secret ${this.#client.name} vanished`);
      const theirs = this.#parse(now);
      if (theirs.keyPem !== ca.keyPem) throw identityError('WEFT_IDENTITY_CA_STORE_CONFLICT', `the CA in ${this.#client.name} was replaced by another key`);
      revoked = mergeRevoked(revoked, theirs.revoked);
      this.#version = now.version;
    }
  }

  async #read(): Promise<SecretContent | undefined> {
    try {
      return await this.#client.read();
    } catch (err: unknown) {
      throw identityError('WEFT_IDENTITY_CA_STORE_IO', `cannot read the CA Secret ${this.#client.name}`, err);
    }
  }

  #parse(secret: SecretContent): StoredCa {
    const keyPem = secret.data[KEY_FILE];
    const certPem = secret.data[CERT_FILE];
    if (keyPem === undefined || certPem === undefined) {
      // Never mint a new root beside half of an old one: every workload would lose trust.
      throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', `the Secret ${this.#client.name} lacks ${keyPem === undefined ? KEY_FILE : CERT_FILE}`);
    }
    const revoked = secret.data[REVOKED_FILE];
    return { keyPem, certPem, revoked: revoked === undefined ? [] : parseRevoked(revoked, `${this.#client.name}[${REVOKED_FILE}]`) };
  }

  #data(ca: StoredCa, revoked: readonly RevokedSerial[]): Record<string, string> {
    return { [KEY_FILE]: ca.keyPem, [CERT_FILE]: ca.certPem, [REVOKED_FILE]: revokedJson(revoked) };
  }
}

/** Union by serial; the earlier revocation wins. */
export function mergeRevoked(a: readonly RevokedSerial[], b: readonly RevokedSerial[]): RevokedSerial[] {
  const out = new Map<string, RevokedSerial>();
  for (const r of [...a, ...b]) {
    const have = out.get(r.serial);
    if (have === undefined || r.revokedAt < have.revokedAt) out.set(r.serial, r);
  }
  return [...out.values()].sort((x, y) => (x.serial < y.serial ? -1 : 1));
}
