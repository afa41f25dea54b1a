// Shared by the identity tests: a real CA, real CSRs, the openssl CLI as an independent judge.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

import type { Clock } from '../../../src/core/clock.ts';
import { CertificateAuthority, type NodeAuthorizer } from '../../../src/identity/ca.ts';
import { MemoryCaStore, type CaStore } from '../../../src/identity/ca-store.ts';
import { createWorkloadCsr } from '../../../src/identity/csr.ts';
import type { SpiffeId } from '../../../src/identity/spiffe.ts';

/** Pods by node, as "node -> ['ns/sa', ...]": the authorizer the control plane would derive from Pod objects. */
export function podsOnNodes(placement: Record<string, string[]>): NodeAuthorizer {
  return {
    mayIssue: (node, namespace, serviceAccount) => (placement[node] ?? []).includes(`${namespace}/${serviceAccount}`),
  };
}

export function openCa(
  clock: Clock,
  options: { store?: CaStore; authorizer?: NodeAuthorizer; trustDomain?: string; workloadTtlMs?: number } = {},
): Promise<CertificateAuthority> {
  return CertificateAuthority.open({
    store: options.store ?? new MemoryCaStore(),
    authorizer: options.authorizer ?? { mayIssue: () => true },
    clock,
    trustDomain: options.trustDomain,
    workloadTtlMs: options.workloadTtlMs,
  });
}

/** Key + CSR + signature, as an agent on `node` would get them. */
export async function issue(ca: CertificateAuthority, id: SpiffeId, node = 'node-1'): Promise<{ keyPem: string; certPem: string; serial: string }> {
  const { keyPem, csrPem } = await createWorkloadCsr(id);
  const issued = await ca.sign({ csrPem, node, identity: id });
  return { keyPem, certPem: issued.certPem, serial: issued.serial };
}

export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-identity-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `files` into `dir` and runs openssl there; returns status and combined output. */
export function openssl(dir: string, args: string[], files: Record<string, string> = {}): { status: number | null; out: string } {
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}
