// Reading and writing this network namespace's nat table through iptables-save and
// iptables-restore (nft or legacy backend, whichever `iptables` is).

import { run } from '../core/exec.ts';
import { redirectError, RedirectErrors } from './errors.ts';
import { buildNatRemoval, parseNatSave, type NatState } from './iptables-rules.ts';

export interface IptablesCommands {
  readonly save: string;
  readonly restore: string;
}

export async function readNatState(cmds: IptablesCommands): Promise<NatState> {
  try {
    return parseNatSave((await run(cmds.save, ['-t', 'nat'])).stdout);
  } catch (err: unknown) {
    throw redirectError(RedirectErrors.NO_IPTABLES, `cannot read the nat table with ${cmds.save} (${err instanceof Error ? err.message : String(err)}); iptables capture needs iptables (nft or legacy) with nat support`, err);
  }
}

export async function restoreNat(cmds: IptablesCommands, script: string): Promise<void> {
  try {
    await run(cmds.restore, ['-w', '5', '--noflush'], { input: script });
  } catch (err: unknown) {
    throw redirectError(RedirectErrors.IPTABLES_FAILED, `${cmds.restore} refused weft's rules: ${err instanceof Error ? err.message : String(err)}\n${script}`, err);
  }
}

/** Removes every WEFT-* chain and the jumps into them from this namespace's nat table. */
export async function removeNatChains(cmds: IptablesCommands): Promise<boolean> {
  const script = buildNatRemoval(await readNatState(cmds));
  if (script === undefined) return false;
  await restoreNat(cmds, script);
  return true;
}
