// `weft vet PATH`: validates manifests offline. Prints every problem with its file, object
// and field — per file (size and object limits, YAML syntax with line and column, alias and
// depth limits), per object (schemas, weft's checks) and across objects (duplicate or
// unusable VIPs, selectors matching no pod, policies naming unknown identities, unknown
// kinds) — then a one-line summary. Exit 0 when clean, 1 on problems, 2 on usage errors.
// Whatever a file holds, it is reported as that file's problem, never as a stack trace.
// Pods on nodes nothing declares are fine: nodes are not objects here.

import { stat } from 'node:fs/promises';
import { formatProblem, parseObjects, totalLimitProblem, type ManifestProblem } from '../model/manifests.ts';
import { DEFAULT_MANIFEST_LIMITS } from '../model/manifest-limits.ts';
import { crossCheck } from '../model/crosscheck.ts';
import { isTrustDomain } from '../model/spiffe.ts';
import { DEFAULT_TRUST_DOMAIN, type RawObject } from '../model/types.ts';
import { listManifestFiles } from '../control/source/directory.ts';
import { readManifestFile } from '../control/source/manifest-read.ts';
import { describeError } from '../core/errors.ts';
import { parseFlags, usageError } from './args.ts';

const USAGE = 'weft vet [--trust-domain DOMAIN] PATH...   (PATH: a manifest file or a directory of *.yaml, *.yml, *.json)';

export interface VetOutput {
  write(text: string): void;
}

async function manifestPaths(path: string): Promise<string[]> {
  const st = await stat(path).catch((err: unknown) => {
    throw usageError(`cannot read ${path}: ${describeError(err)}`, USAGE);
  });
  if (!st.isDirectory()) return [path];
  return listManifestFiles(path).catch((err: unknown) => {
    throw usageError(`cannot list ${path}: ${describeError(err)}`, USAGE);
  });
}

/** Reads every file within the limits (per file, then in total); each failure is a problem of its file. */
async function readAll(paths: readonly string[]): Promise<{ objects: RawObject[]; problems: ManifestProblem[] }> {
  const objects: RawObject[] = [];
  const problems: ManifestProblem[] = [];
  const totals = { bytes: 0, objects: 0 };
  for (const path of paths) {
    const r = await readManifestFile(path, DEFAULT_MANIFEST_LIMITS);
    if (r.missing) {
      problems.push({ file: path, object: undefined, field: undefined, message: 'vanished while being read' });
      continue;
    }
    if (r.problem !== undefined) problems.push(r.problem);
    if (r.split === undefined) continue;
    problems.push(...r.split.problems);
    if (r.split.refused) continue;
    totals.bytes += r.bytes;
    totals.objects += r.split.objects.length;
    const over = totalLimitProblem(path, totals, DEFAULT_MANIFEST_LIMITS);
    if (over !== undefined) problems.push(over);
    else objects.push(...r.split.objects);
  }
  return { objects, problems };
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

  const paths: string[] = [];
  for (const path of positionals) paths.push(...await manifestPaths(path));
  const { objects: raw, problems } = await readAll(paths);
  try {
    const parsed = parseObjects(raw, { kubernetesSchema: true });
    problems.push(...parsed.problems, ...crossCheck(parsed, { trustDomain, origins: parsed.origins }));
    return report(out, paths, problems, parsed.origins.size, parsed.routes.length > 0);
  } catch (err: unknown) {
    // A bug of ours, not the user's input: one line, never a stack trace.
    problems.push({ file: paths.join(', '), object: undefined, field: undefined, message: `weft vet could not check these files: ${describeError(err)}` });
    return report(out, paths, problems, 0);
  }
}

function report(out: VetOutput, paths: readonly string[], problems: ManifestProblem[], objects: number, routes = false): number {
  // Grouped by file (stable: within a file, in the order found).
  const order = new Map(paths.map((f, i) => [f, i]));
  problems.sort((a, b) => (order.get(a.file) ?? -1) - (order.get(b.file) ?? -1));
  for (const p of problems) out.write(`${formatProblem(p)}\n`);
  if (routes) {
    // A cluster's control plane writes these as each route's status.parents; files have no status to write to.
    out.write(`weft vet: route status (Accepted, ResolvedRefs) is written back only by \`weft control --kubernetes\`; for files, the route problems above are what it would say\n`);
  }
  const what = `${objects} object${objects === 1 ? '' : 's'} in ${paths.length} file${paths.length === 1 ? '' : 's'}`;
  if (problems.length === 0) {
    out.write(`weft vet: ${what}, no problems\n`);
    return 0;
  }
  const inFiles = new Set(problems.map((p) => p.file)).size;
  out.write(`weft vet: ${problems.length} problem${problems.length === 1 ? '' : 's'} in ${inFiles} file${inFiles === 1 ? '' : 's'} (${what} accepted)\n`);
  return 1;
}
