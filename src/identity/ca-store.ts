// Where the CA keeps its key, certificate and revocations between restarts. A directory of
// files here; in Kubernetes the same three entries live in a Secret (secret-ca-store.ts).

import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { identityError } from './errors.ts';

export interface RevokedSerial {
  /** Normalised serial (lowercase hex, no leading zeros). */
  readonly serial: string;
  /** Epoch milliseconds. */
  readonly revokedAt: number;
  /** After this the certificate has expired anyway, so the entry can leave the CRL. */
  readonly forgetAfter: number;
}

export interface StoredCa {
  readonly keyPem: string;
  readonly certPem: string;
  readonly revoked: readonly RevokedSerial[];
}

export interface CaStore {
  /** The stored CA, or undefined when nothing was ever stored (first start). */
  load(): Promise<StoredCa | undefined>;
  /**
   * Stores the CA. A store shared by several processes (a Secret) rejects the first save
   * with WEFT_IDENTITY_CA_STORE_CONFLICT when another process stored a CA first.
   */
  save(ca: StoredCa): Promise<void>;
}

/** For tests and single-process demos. */
export class MemoryCaStore implements CaStore {
  #stored: StoredCa | undefined;

  load(): Promise<StoredCa | undefined> {
    return Promise.resolve(this.#stored);
  }

  save(ca: StoredCa): Promise<void> {
    this.#stored = Object.freeze({ ...ca, revoked: Object.freeze([...ca.revoked]) });
    return Promise.resolve();
  }
}

export const KEY_FILE = 'ca.key';
export const CERT_FILE = 'ca.crt';
export const REVOKED_FILE = 'revoked.json';

/**
 * `ca.key` (mode 0600), `ca.crt` and `revoked.json` in one directory (mode 0700). Each file
 * is written to a temporary name and renamed, so a crash leaves whole files; a key and a
 * certificate from different generations are caught by the CA's key check on load.
 */
export class FileCaStore implements CaStore {
  readonly directory: string;

  constructor(directory: string) {
    this.directory = directory;
  }

  async load(): Promise<StoredCa | undefined> {
    const keyPem = await this.#readOptional(KEY_FILE);
    const certPem = await this.#readOptional(CERT_FILE);
    if (keyPem === undefined && certPem === undefined) return undefined;
    if (keyPem === undefined || certPem === undefined) {
      // Never silently mint a new root next to half of an old one: every workload would lose trust.
      const missing = keyPem === undefined ? KEY_FILE : CERT_FILE;
      throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', `${join(this.directory, missing)} is missing while its partner exists`);
    }
    const revoked = await this.#readOptional(REVOKED_FILE);
    return { keyPem, certPem, revoked: revoked === undefined ? [] : parseRevoked(revoked, join(this.directory, REVOKED_FILE)) };
  }

  async save(ca: StoredCa): Promise<void> {
    try {
      await mkdir(this.directory, { recursive: true, mode: 0o700 });
      await this.#writeAtomic(KEY_FILE, ca.keyPem, 0o600);
      await this.#writeAtomic(CERT_FILE, ca.certPem, 0o644);
      await this.#writeAtomic(REVOKED_FILE, revokedJson(ca.revoked), 0o644);
    } catch (err: unknown) {
      throw identityError('WEFT_IDENTITY_CA_STORE_IO', `cannot write CA material to ${this.directory}`, err);
    }
  }

  async #writeAtomic(name: string, content: string, mode: number): Promise<void> {
    const final = join(this.directory, name);
    const temp = `${final}.tmp-${process.pid}`;
    // A leftover temp from a crash could carry a wider mode; start from a fresh file ('wx')
    // so the key is never readable by others, even for a moment.
    await rm(temp, { force: true });
    await writeFile(temp, content, { mode, flag: 'wx' });
    await chmod(temp, mode); // the umask may have narrowed the certificate's 0644
    await rename(temp, final);
  }

  async #readOptional(name: string): Promise<string | undefined> {
    const path = join(this.directory, name);
    try {
      return await readFile(path, 'utf8');
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw identityError('WEFT_IDENTITY_CA_STORE_IO', `cannot read ${path}`, err);
    }
  }
}

/** The revocations as stored (`revoked.json`): a JSON array of { serial, revokedAt, forgetAfter }. */
export function parseRevoked(text: string, where: string): RevokedSerial[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err: unknown) {
    throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', `${where} is not JSON`, err);
  }
  if (!Array.isArray(parsed)) {
    throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', `${where} must hold a JSON array`);
  }
  return parsed.map((entry: unknown, i) => {
    const e = entry as Partial<Record<keyof RevokedSerial, unknown>> | null;
    if (e === null || typeof e.serial !== 'string' || typeof e.revokedAt !== 'number' || typeof e.forgetAfter !== 'number') {
      throw identityError('WEFT_IDENTITY_CA_STORE_CORRUPT', `${where}[${i}] needs serial (string), revokedAt and forgetAfter (numbers)`);
    }
    return { serial: e.serial, revokedAt: e.revokedAt, forgetAfter: e.forgetAfter };
  });
}

export function revokedJson(revoked: readonly RevokedSerial[]): string {
  return `${JSON.stringify(revoked, null, 1)}\n`;
}
