// The agent's own RLIMIT_NOFILE, raised to the hard limit at start (a node's shell default of
// 1,024 or 20,000 is far below what one proxy for every pod on the node needs). Only this
// process is changed; without the native addon the limit is read from /proc and left as is.

import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { describeError } from '../core/errors.ts';
import { nativeAddon, type NativeAddon } from '../core/native-addon.ts';

/** The soft "Max open files" of /proc/<pid>/limits text, or undefined. */
export function parseNofile(limitsText: string): number | undefined {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limitsText);
  if (m === null) return undefined;
  return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

/** Raises the soft limit to the hard one; returns the soft limit in force afterwards. */
export function raiseNofileLimit(logger: Pick<Logger, 'info' | 'warn'>, addon: NativeAddon | Error = nativeAddon()): number {
  const fromProc = (): number => {
    try {
      return parseNofile(readFileSync('/proc/self/limits', 'utf8')) ?? 1024;
    } catch {
      return 1024;
    }
  };
  if (addon instanceof Error) {
    const soft = fromProc();
    logger.warn({ nofile: soft, err: addon.message }, 'the native addon does not load: RLIMIT_NOFILE stays as inherited');
    return soft;
  }
  try {
    const before = addon.nofileLimit();
    const after = addon.raiseNofileLimit();
    const soft = after.soft < 0 ? Number.MAX_SAFE_INTEGER : after.soft;
    logger.info({ before: before.soft, nofile: soft, hard: after.hard }, 'raised RLIMIT_NOFILE to the hard limit');
    return soft;
  } catch (err: unknown) {
    const soft = fromProc();
    logger.warn({ nofile: soft, err: describeError(err) }, 'cannot raise RLIMIT_NOFILE; keeping the inherited limit');
    return soft;
  }
}
