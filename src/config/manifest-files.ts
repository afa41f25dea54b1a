// Reads Kubernetes YAML from a file or a directory (its *.yaml, *.yml and *.json files,
// not recursive, in name order) for the parsers in src/model/.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../core/errors.ts';
import type { ManifestFile } from '../model/manifests.ts';

export const MANIFEST_EXTENSIONS = /\.(ya?ml|json)$/;

export function readManifests(path: string, code = 'WEFT_CONFIG_BAD_MANIFESTS'): ManifestFile[] {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (err: unknown) {
    throw new WeftError(code, `cannot read manifests at ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  const paths = isDir ? readdirSync(path).filter((f) => MANIFEST_EXTENSIONS.test(f)).sort().map((f) => join(path, f)) : [path];
  if (paths.length === 0) throw new WeftError(code, `${path} holds no *.yaml, *.yml or *.json files`);
  return paths.map((p) => ({ path: p, text: readFileSync(p, 'utf8') }));
}
