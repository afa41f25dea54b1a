// Test PKI made with the openssl CLI (ECDSA P-256): a mesh CA, leaf SVIDs with a URI SAN
// spiffe://..., and a second CA that nobody trusts. Generated once per process into a
// temp dir (openssl costs ~20 ms per key) and removed when the process exits.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CertPair {
  /** PEM certificate (leaf only). */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string;
}

export interface TestCa extends CertPair {
  readonly name: string;
}

interface Pki {
  readonly dir: string;
  readonly cas: Map<string, TestCa>;
  readonly leaves: Map<string, CertPair>;
  serial: number;
}

let pki: Pki | undefined;

function openssl(dir: string, args: readonly string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
}

function state(): Pki {
  if (pki) return pki;
  const dir = mkdtempSync(join(tmpdir(), 'weft-certs-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  pki = { dir, cas: new Map(), leaves: new Map(), serial: 1 };
  return pki;
}

/** A self-signed CA; `name` is 'mesh' for the trusted one by convention. Cached. */
export function testCa(name = 'mesh'): TestCa {
  const p = state();
  const cached = p.cas.get(name);
  if (cached) return cached;
  const safe = name.replace(/[^a-z0-9-]/gi, '_');
  const key = `ca-${safe}.key`;
  const crt = `ca-${safe}.crt`;
  openssl(p.dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  openssl(p.dir, [
    'req', '-x509', '-new', '-key', key, '-sha256', '-days', '2', '-subj', `/O=weft test/CN=${name} CA`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', crt,
  ]);
  const ca = { name, cert: readFileSync(join(p.dir, crt), 'utf8'), key: readFileSync(join(p.dir, key), 'utf8') };
  p.cas.set(name, ca);
  return ca;
}

/** A leaf certificate whose only SAN is `URI:<spiffeId>`, signed by the named CA. Cached. */
export function testLeaf(spiffeId: string, caName = 'mesh'): CertPair {
  const p = state();
  const id = `${caName} ${spiffeId}`;
  const cached = p.leaves.get(id);
  if (cached) return cached;
  testCa(caName); // made first: the leaf is signed with its files
  const n = p.serial++;
  const caSafe = caName.replace(/[^a-z0-9-]/gi, '_');
  const [key, csr, crt, ext] = [`leaf${n}.key`, `leaf${n}.csr`, `leaf${n}.crt`, `leaf${n}.ext`];
  writeFileSync(join(p.dir, ext), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth,clientAuth',
    `subjectAltName=critical,URI:${spiffeId}`,
    '',
  ].join('\n'));
  openssl(p.dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  openssl(p.dir, ['req', '-new', '-key', key, '-subj', '/O=weft test', '-out', csr]);
  openssl(p.dir, [
    'x509', '-req', '-in', csr, '-CA', `ca-${caSafe}.crt`, '-CAkey', `ca-${caSafe}.key`,
    '-set_serial', String(1000 + n), '-days', '1', '-sha256', '-extfile', ext, '-out', crt,
  ]);
  const leaf = { cert: readFileSync(join(p.dir, crt), 'utf8'), key: readFileSync(join(p.dir, key), 'utf8') };
  p.leaves.set(id, leaf);
  return leaf;
}

/** `spiffe://cluster.local/ns/<ns>/sa/<sa>` */
export function spiffeId(ns: string, sa: string, trustDomain = 'cluster.local'): string {
  return `spiffe://${trustDomain}/ns/${ns}/sa/${sa}`;
}
