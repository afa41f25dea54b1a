// Reading one manifest file within the limits: the size is checked before reading (a 50 MB
// file is refused unread), the text is split into raw objects, and every failure becomes
// this file's problem rather than an exception. Shared by the directory source and `weft vet`.

import type { Stats } from 'node:fs';
import { readTextUpTo } from '../../core/bounded-read.ts';
import { describeError } from '../../core/errors.ts';
import { splitManifestFile, type ManifestProblem, type SplitFile } from '../../model/manifests.ts';
import { ManifestLimitCodes, formatBytes, type ManifestLimits } from '../../model/manifest-limits.ts';

export interface ManifestFileRead {
  readonly bytes: number;
  /** The split of what was read; undefined when nothing could be read. */
  readonly split: SplitFile | undefined;
  /** Why nothing could be read (too large, unreadable). */
  readonly problem: ManifestProblem | undefined;
  /** The file is gone (deleted since it was listed). */
  readonly missing: boolean;
  /** The text read, to tell a rewrite with the same content from a change. */
  readonly text: string | undefined;
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** What tells one version of a file from another without reading it (the target's, for a symlink). */
export function fileSignature(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export async function readManifestFile(path: string, limits: ManifestLimits): Promise<ManifestFileRead> {
  let read;
  try {
    read = await readTextUpTo(path, limits.maxFileBytes);
  } catch (err: unknown) {
    if (errno(err) === 'ENOENT') return { bytes: 0, split: undefined, problem: undefined, missing: true, text: undefined };
    return {
      bytes: 0, split: undefined, missing: false, text: undefined,
      problem: { file: path, object: undefined, field: undefined, message: `cannot read (${describeError(err)})` },
    };
  }
  if ('tooLarge' in read) {
    return {
      bytes: read.bytes, split: undefined, missing: false, text: undefined,
      problem: {
        file: path, object: undefined, field: undefined, code: ManifestLimitCodes.FILE_TOO_LARGE,
        message: `refused unread: ${formatBytes(read.bytes)} is over the limit of ${formatBytes(limits.maxFileBytes)} per manifest file`,
      },
    };
  }
  let split: SplitFile;
  try {
    split = splitManifestFile({ path, text: read.text }, { limits });
  } catch (err: unknown) {
    // Not expected (the splitter turns what it knows into problems), but never the directory's failure.
    split = { objects: [], refused: true, problems: [{ file: path, object: undefined, field: undefined, code: ManifestLimitCodes.BAD_YAML, message: `cannot be parsed: ${describeError(err)}` }] };
  }
  return { bytes: read.bytes, split, problem: undefined, missing: false, text: read.text };
}
