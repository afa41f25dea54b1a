// `weft vet PATH`: validates manifests offline. Prints every problem with its file, object
// and field — per object (syntax, schemas, weft's checks) and across objects (duplicate or
// unusable VIPs, selectors matching no pod, policies naming unknown identities, unknown
// kinds) — then a one-line summary. Exit 0 when clean, 1 on problems, 2 on usage errors.
// Pods on nodes nothing declares are fine: nodes are not objects here.

import { readFile, stat } from 'node:fs/promises';
import { parseManifests, formatProblem, type ManifestFile, type ManifestProblem } from '../model/manifests.ts';
import { crossCheck } from '../model/crosscheck.ts';
import { isTrustDomain } from '../model/spiffe.ts';
import { DEFAULT_TRUST_DOMAIN } from '../model/types.ts';
import { listManifestFiles } from '../control/source/directory.ts';
import { describeError } from '../core/errors.ts';
import { parseFlags, usageError } from './args.ts';

const USAGE = 'weft vet [--trust-domain DOMAIN] PATH...   (PATH: a manifest file or a directory of *.yaml, *.yml, *.json)';

export interface VetOutput {
  write(text: string): void;
}

async function readManifests(path: string): Promise<{ files: ManifestFile[]; problems: ManifestProblem[] }> {
  const st = await stat(path).catch((err: unknown) => {
    throw usageError(`cannot read ${path}: ${describeError(err)}`, USAGE);
  });
  const paths = st.isDirectory() ? await listManifestFiles(path) : [path];
  const files: ManifestFile[] = [];
  const problems: ManifestProblem[] = [];
  for (const p of paths) {
    try {
      files.push({ path: p, text: await readFile(p, 'utf8') });
    } catch (err: unknown) {
      problems.push({ file: p, object: undefined, field: undefined, message: `cannot read: ${describeError(err)}` });
    }
  }
  return { files, problems };
}

export async function vetCommand(argv: readonly string[], out: VetOutput = process.stdout): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    'trust-domain': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  }, USAGE, true);
  if (values.help === true) {
    out.write(`usage: ${USAGE}\n`);
    return 0;
  }
  if (positionals.length === 0) throw usageError('a PATH is required', USAGE);
  const trustDomain = values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN;
  if (!isTrustDomain(trustDomain)) throw usageError(`--trust-domain must be lowercase letters, digits, '.', '-' or '_', got ${JSON.stringify(trustDomain)}`, USAGE);

  const files: ManifestFile[] = [];
  const problems: ManifestProblem[] = [];
  for (const path of positionals) {
    const r = await readManifests(path);
    files.push(...r.files);
    problems.push(...r.problems);
  }
  const parsed = parseManifests(files, new Set(), { kubernetesSchema: true });
  problems.push(...parsed.problems, ...crossCheck(parsed, { trustDomain, origins: parsed.origins }));
  // Grouped by file (stable: within a file, in the order found).
  const order = new Map(files.map((f, i) => [f.path, i]));
  problems.sort((a, b) => (order.get(a.file) ?? -1) - (order.get(b.file) ?? -1));
  for (const p of problems) out.write(`${formatProblem(p)}\n`);
  if (parsed.routes.length > 0) {
    // A cluster's control plane writes these as each route's status.parents; files have no status to write to.
    out.write(`weft vet: route status (Accepted, ResolvedRefs) is written back only by \`weft control --kubernetes\`; for files, the route problems above are what it would say\n`);
  }

  const objects = parsed.origins.size;
  const what = `${objects} object${objects === 1 ? '' : 's'} in ${files.length} file${files.length === 1 ? '' : 's'}`;
  if (problems.length === 0) {
    out.write(`weft vet: ${what}, no problems\n`);
    return 0;
  }
  const inFiles = new Set(problems.map((p) => p.file)).size;
  out.write(`weft vet: ${problems.length} problem${problems.length === 1 ? '' : 's'} in ${inFiles} file${inFiles === 1 ? '' : 's'} (${what} accepted)\n`);
  return 1;
}
