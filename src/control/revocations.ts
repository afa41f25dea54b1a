// What an operator's revocation needs to know and keep: every certificate the control plane
// signed (serial, kind, identity, node, expiry), so that `--node` and `--identity` find the
// serials to put on the CRL; and the nodes revoked, so that such a node can neither
// bootstrap again with its token nor use a node certificate it still holds. With a
// directory both are kept on disk (issued.jsonl, appended per certificate and compacted on
// load; revoked-nodes.json), so a restarted control plane still knows them.

import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlError, ControlErrors } from './errors.ts';

export interface IssuedCertificate {
  readonly serial: string;
  readonly kind: 'workload' | 'node';
  /** SPIFFE id (workload) or the agent identity (node). */
  readonly identity: string;
  readonly node: string;
  /** Epoch ms. */
  readonly notAfter: number;
}

export type RevocationRequest =
  | { readonly serial: string }
  | { readonly node: string }
  | { readonly identity: string };

const ISSUED_FILE = 'issued.jsonl';
const NODES_FILE = 'revoked-nodes.json';
const SERIAL = /^[0-9a-f]{1,64}$/;

export function normalizedSerial(serial: string): string {
  return serial.toLowerCase().replace(/[^0-9a-f]/g, '').replace(/^0+(?=.)/, '');
}

/** Checks an admin request body: exactly one of serial, node, identity, each well formed. */
export function parseRevocationRequest(body: unknown): RevocationRequest {
  const bad = (why: string): never => {
    throw controlError(ControlErrors.BAD_REVOCATION, `revocation request: ${why}`);
  };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return bad('must be a JSON object with one of serial, node, identity');
  const o = body as Record<string, unknown>;
  const given = ['serial', 'node', 'identity'].filter((k) => o[k] !== undefined);
  const extra = Object.keys(o).filter((k) => !['serial', 'node', 'identity'].includes(k));
  if (extra.length > 0) bad(`unknown field(s) ${extra.join(', ')}`);
  if (given.length !== 1) bad(`give exactly one of serial, node, identity (got ${given.length === 0 ? 'none' : given.join(', ')})`);
  const value = o[given[0] ?? ''];
  if (typeof value !== 'string' || value === '') return bad(`${given[0] ?? ''} must be a non-empty string`);
  if (given[0] === 'serial') {
    const s = normalizedSerial(value);
    if (!SERIAL.test(s) || !/^[0-9a-fA-F:]+$/.test(value)) bad(`serial ${JSON.stringify(value)} is not a hexadecimal certificate serial`);
    return { serial: s };
  }
  if (given[0] === 'node') {
    if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(value)) bad(`node ${JSON.stringify(value)} is not a node name`);
    return { node: value };
  }
  if (!/^spiffe:\/\/[^/]+\/ns\/[^/]+\/sa\/[^/]+$/.test(value)) bad(`identity ${JSON.stringify(value)} is not a SPIFFE id spiffe://<trust-domain>/ns/<ns>/sa/<sa>`);
  return { identity: value };
}

export class Revocations {
  readonly #dir: string | undefined;
  readonly #now: () => number;
  readonly #issued = new Map<string, IssuedCertificate>();
  readonly #nodes = new Set<string>();

  /** `dir` undefined keeps everything in memory (a CA in a Secret: the ledger restarts empty). */
  constructor(dir: string | undefined, now: () => number = Date.now) {
    this.#dir = dir;
    this.#now = now;
    if (dir === undefined) return;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#load(dir);
  }

  #load(dir: string): void {
    let text = '';
    try {
      text = readFileSync(join(dir, ISSUED_FILE), 'utf8');
    } catch {
      // none yet
    }
    const now = this.#now();
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const c = JSON.parse(line) as IssuedCertificate;
        if (typeof c.serial === 'string' && typeof c.node === 'string' && typeof c.notAfter === 'number' && c.notAfter > now) this.#issued.set(c.serial, c);
      } catch {
        // a line cut short by a crash: the rest still counts
      }
    }
    // Compacted: expired entries go.
    const tmp = join(dir, `${ISSUED_FILE}.tmp`);
    writeFileSync(tmp, [...this.#issued.values()].map((c) => `${JSON.stringify(c)}\n`).join(''), { mode: 0o600 });
    renameSync(tmp, join(dir, ISSUED_FILE));
    try {
      const nodes = JSON.parse(readFileSync(join(dir, NODES_FILE), 'utf8')) as unknown;
      if (!Array.isArray(nodes) || !nodes.every((n) => typeof n === 'string')) {
        throw controlError(ControlErrors.BAD_REVOCATION, `${join(dir, NODES_FILE)} must be a JSON array of node names`);
      }
      for (const n of nodes) this.#nodes.add(n);
    } catch (err: unknown) {
      if ((err as { code?: string }).code !== 'ENOENT') throw err;
    }
  }

  /** A certificate the control plane signed. */
  record(c: IssuedCertificate): void {
    const entry = Object.freeze({ ...c, serial: normalizedSerial(c.serial) });
    this.#issued.set(entry.serial, entry);
    if (this.#dir !== undefined) appendFileSync(join(this.#dir, ISSUED_FILE), `${JSON.stringify(entry)}\n`, { mode: 0o600 });
    // Bounded: expired entries go once the map grows past what a mesh renews in a day.
    if (this.#issued.size > 200_000) {
      const now = this.#now();
      for (const [s, x] of this.#issued) if (x.notAfter < now) this.#issued.delete(s);
    }
  }

  /** The serials a request covers that are still valid; a node is also remembered as revoked. */
  select(request: RevocationRequest): string[] {
    const now = this.#now();
    const live = [...this.#issued.values()].filter((c) => c.notAfter > now);
    if ('serial' in request) return [request.serial];
    if ('node' in request) {
      if (!this.#nodes.has(request.node)) {
        this.#nodes.add(request.node);
        if (this.#dir !== undefined) {
          const tmp = join(this.#dir, `${NODES_FILE}.tmp`);
          writeFileSync(tmp, `${JSON.stringify([...this.#nodes].sort())}\n`, { mode: 0o600 });
          renameSync(tmp, join(this.#dir, NODES_FILE));
        }
      }
      return live.filter((c) => c.node === request.node).map((c) => c.serial);
    }
    return live.filter((c) => c.kind === 'workload' && c.identity === request.identity).map((c) => c.serial);
  }

  isRevokedNode(node: string): boolean {
    return this.#nodes.has(node);
  }

  revokedNodes(): string[] {
    return [...this.#nodes].sort();
  }

  /** What is known of a serial (the dashboard names revoked certificates with it). */
  describe(serial: string): { serial: string; identity?: string; node?: string } {
    const c = this.#issued.get(normalizedSerial(serial));
    return c === undefined ? { serial } : { serial, identity: c.identity, node: c.node };
  }
}
