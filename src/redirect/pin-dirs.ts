// bpffs pin directories are <base>/<node>/ (base: /sys/fs/bpf/weft, /sys/fs/bpf/weft-splice).
// Every remover goes through here, so the base goes too once the last node's pins are gone and
// a clean run leaves nothing named weft in /sys/fs/bpf.

import { rmSync, rmdirSync } from 'node:fs';
import { dirname } from 'node:path';

/** Removes one node's pin directory, then its base when no other node's pins are left there. */
export function removePinDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  try {
    rmdirSync(dirname(dir)); // only succeeds once no node has pins left
  } catch {
    // not empty (another node's pins), or already gone
  }
}
