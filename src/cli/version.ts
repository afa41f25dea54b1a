// `weft --version`: the release (package.json) and the Node that runs it, one line.

import pkg from '../../package.json' with { type: 'json' };

export const WEFT_VERSION: string = pkg.version;

export function versionLine(): string {
  return `weft ${WEFT_VERSION} (node ${process.version}, ${process.platform}/${process.arch})`;
}
