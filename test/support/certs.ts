// Test PKI made with the openssl CLI (ECDSA P-256): a mesh CA, leaf SVIDs with a URI SAN
// spiffe://..., and a second CA that nobody trusts. Generated once per process into a
// temp dir (openssl costs ~20 ms per key) and removed when the process exits. Child
// processes that must share the PKI get the directory in WEFT_TEST_PKI_DIR (see sharedPkiEnv)
// and reuse the files there.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
}

let pki: Pki | undefined;

function openssl(dir: string, args: readonly string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
}

function state(): Pki {
  if (pki) return pki;
  const shared = process.env.WEFT_TEST_PKI_DIR;
  const dir = shared ?? mkdtempSync(join(tmpdir(), 'weft-certs-'));
  if (shared === undefined) process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  pki = { dir, cas: new Map(), leaves: new Map() };
  return pki;
}

/** Environment for child processes that must use this process's PKI. */
export function sharedPkiEnv(): Record<string, string> {
  return { WEFT_TEST_PKI_DIR: state().dir };
}

/** A self-signed CA; `name` is 'mesh' for the trusted one by convention. Cached. */
export function testCa(name = 'mesh'): TestCa {
  const p = state();
  const cached = p.cas.get(name);
  if (cached) return cached;
  const safe = name.replace(/[^a-z0-9-]/gi, '_');
  const key = `ca-${safe}.key`;
  const crt = `ca-${safe}.crt`;
  if (!existsSync(join(p.dir, crt))) makeCa(p.dir, name, key, crt);
  const ca = { name, cert: readFileSync(join(p.dir, crt), 'utf8'), key: readFileSync(join(p.dir, key), 'utf8') };
  p.cas.set(name, ca);
  return ca;
}

function makeCa(dir: string, name: string, key: string, crt: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  openssl(dir, [
    'req', '-x509', '-new', '-key', key, '-sha256', '-days', '2', '-subj', `/O=weft test/CN=${name} CA`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', crt,
  ]);
}

/** A leaf certificate whose only SAN is `URI:<spiffeId>`, signed by the named CA. Cached. */
export function testLeaf(spiffeId: string, caName = 'mesh'): CertPair {
  const p = state();
  const id = `${caName} ${spiffeId}`;
  const cached = p.leaves.get(id);
  if (cached) return cached;
  testCa(caName); // made first: the leaf is signed with its files
  const n = createHash('sha256').update(id).digest('hex').slice(0, 16);
  const [key, crt] = [`leaf-${n}.key`, `leaf-${n}.crt`];
  if (!existsSync(join(p.dir, crt))) makeLeaf(p.dir, spiffeId, caName, n);
  const leaf = { cert: readFileSync(join(p.dir, crt), 'utf8'), key: readFileSync(join(p.dir, key), 'utf8') };
  p.leaves.set(id, leaf);
  return leaf;
}

function makeLeaf(dir: string, spiffeId: string, caName: string, n: string): void {
  const caSafe = caName.replace(/[^a-z0-9-]/gi, '_');
  const [key, csr, crt, ext] = [`leaf-${n}.key`, `leaf-${n}.csr`, `leaf-${n}.crt`, `leaf-${n}.ext`];
  writeFileSync(join(dir, ext), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth,clientAuth',
    `subjectAltName=critical,URI:${spiffeId}`,
    '',
  ].join('\n'));
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  openssl(dir, ['req', '-new', '-key', key, '-subj', '/O=weft test', '-out', csr]);
  openssl(dir, [
    'x509', '-req', '-in', csr, '-CA', `ca-${caSafe}.crt`, '-CAkey', `ca-${caSafe}.key`,
    '-set_serial', `0x${n}`, '-days', '1', '-sha256', '-extfile', ext, '-out', crt,
  ]);
}

/** `spiffe://cluster.local/ns/<ns>/sa/<sa>` */
export function spiffeId(ns: string, sa: string, trustDomain = 'cluster.local'): string {
  return `spiffe://${trustDomain}/ns/${ns}/sa/${sa}`;
}
