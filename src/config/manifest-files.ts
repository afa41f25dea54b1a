// Reads Kubernetes YAML from a file or a directory (its *.yaml, *.yml and *.json files,
// not recursive, in name order) for the parsers in src/model/. A file over the per-file size
// limit is refused unread, naming the file and the limit.

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readTextUpToSync } from '../core/bounded-read.ts';
import { WeftError } from '../core/errors.ts';
import type { ManifestFile } from '../model/manifests.ts';
import { DEFAULT_MANIFEST_LIMITS, ManifestLimitCodes, formatBytes, type ManifestLimits } from '../model/manifest-limits.ts';

export const MANIFEST_EXTENSIONS = /\.(ya?ml|json)$/;

export function readManifests(path: string, code = 'WEFT_CONFIG_BAD_MANIFESTS', limits: ManifestLimits = DEFAULT_MANIFEST_LIMITS): ManifestFile[] {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (err: unknown) {
    throw new WeftError(code, `cannot read manifests at ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  const paths = isDir ? readdirSync(path).filter((f) => MANIFEST_EXTENSIONS.test(f)).sort().map((f) => join(path, f)) : [path];
  if (paths.length === 0) throw new WeftError(code, `${path} holds no *.yaml, *.yml or *.json files`);
  return paths.map((p) => {
    let read;
    try {
      read = readTextUpToSync(p, limits.maxFileBytes);
    } catch (err: unknown) {
      throw new WeftError(code, `cannot read manifest ${p}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
    }
    if ('tooLarge' in read) {
      throw new WeftError(code, `${p}: refused unread: ${formatBytes(read.bytes)} is over the limit of ${formatBytes(limits.maxFileBytes)} per manifest file [${ManifestLimitCodes.FILE_TOO_LARGE}]`);
    }
    return { path: p, text: read.text };
  });
}
