// How a splice ended, as response flags and a log detail.

import { describeError } from '../core/errors.ts';
import { ResponseFlags } from './flags.ts';
import type { SpliceResult } from './splice.ts';

export function flagsForSplice(r: SpliceResult): [string, string?] {
  const why = r.error === undefined ? undefined : describeError(r.error);
  switch (r.outcome) {
    case 'closed':
      return [ResponseFlags.OK];
    case 'downstream_reset':
      return [ResponseFlags.DOWNSTREAM_RESET, why ?? 'downstream reset'];
    case 'upstream_reset':
      return [ResponseFlags.UPSTREAM_RESET, why ?? 'upstream reset'];
    case 'aborted':
      return [ResponseFlags.DRAINED, 'ended by drain or shutdown'];
    case 'idle_timeout':
      return [ResponseFlags.IDLE_TIMEOUT, 'half-closed and idle past the timeout'];
  }
}
