// Bounds on manifest input, so one hostile or careless file cannot exhaust the control
// plane's memory or stack: bytes and objects per file and in total, YAML alias expansion and
// nesting depth. Each limit has its own stable problem code, and the message names the file
// and the limit. Pure: the readers (directory source, `weft vet`, the simulator) apply them.

import { isAlias, isCollection, isPair, type Document, type ParsedNode } from 'yaml';

export interface ManifestLimits {
  /** Bytes of one file; a larger file is refused unread. */
  readonly maxFileBytes: number;
  /** Bytes of every file together (files are counted in name order). */
  readonly maxTotalBytes: number;
  /** Documents (objects) in one file. */
  readonly maxObjectsPerFile: number;
  /** Objects in every file together. */
  readonly maxObjectsTotal: number;
  /** The YAML library's alias budget per document (its maxAliasCount: nodes an alias may stand for). */
  readonly maxAliases: number;
  /** Nesting of mappings and sequences inside one document. */
  readonly maxDepth: number;
}

// 4 MiB is four times a ConfigMap's limit (the usual way such a directory is mounted); the
// simulator's largest generated set (5,000 pods, 1,000 services) is under 3 MiB in one file.
export const DEFAULT_MANIFEST_LIMITS: ManifestLimits = Object.freeze({
  maxFileBytes: 4 * 1024 * 1024,
  maxTotalBytes: 64 * 1024 * 1024,
  maxObjectsPerFile: 20_000,
  maxObjectsTotal: 200_000,
  maxAliases: 100,
  // Kubernetes objects nest about 10 deep; CRDs with large schemas about 30.
  maxDepth: 64,
});

/** Problem codes of refused input (ManifestProblem.code). */
export const ManifestLimitCodes = {
  FILE_TOO_LARGE: 'WEFT_MANIFEST_FILE_TOO_LARGE',
  TOTAL_TOO_LARGE: 'WEFT_MANIFEST_TOTAL_TOO_LARGE',
  TOO_MANY_OBJECTS: 'WEFT_MANIFEST_TOO_MANY_OBJECTS',
  TOTAL_TOO_MANY_OBJECTS: 'WEFT_MANIFEST_TOTAL_TOO_MANY_OBJECTS',
  ALIAS_LIMIT: 'WEFT_MANIFEST_ALIAS_LIMIT',
  TOO_DEEP: 'WEFT_MANIFEST_TOO_DEEP',
  /** Not a limit: the YAML does not parse (the problem carries line and column). */
  BAD_YAML: 'WEFT_MANIFEST_BAD_YAML',
} as const;

/** Fills defaults; throws a TypeError naming the bad field (options come from flags, checked there). */
export function manifestLimits(partial: Partial<ManifestLimits> = {}): ManifestLimits {
  const l = { ...DEFAULT_MANIFEST_LIMITS, ...partial };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`manifest limit ${k} must be a positive integer, got ${String(v)}`);
  }
  return Object.freeze(l);
}

/** "4 MiB", "1.5 KiB", "12 bytes". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/**
 * The deepest nesting of mappings and sequences in a parsed document, walked without
 * recursion (a hostile document must not overflow our stack either). Stops counting once
 * past `stopAt`.
 */
export function documentDepth(doc: Document.Parsed, stopAt: number): number {
  let max = 0;
  const stack: Array<[ParsedNode | null | undefined, number]> = [[doc.contents, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [ParsedNode | null | undefined, number];
    if (node === null || node === undefined || isAlias(node) || !isCollection(node)) continue;
    if (depth > max) max = depth;
    if (max > stopAt) return max;
    for (const item of node.items as unknown[]) {
      if (isPair(item)) {
        stack.push([item.key as ParsedNode | null, depth + 1], [item.value as ParsedNode | null, depth + 1]);
      } else {
        stack.push([item as ParsedNode | null, depth + 1]);
      }
    }
  }
  return max;
}
