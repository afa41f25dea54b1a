// Can this host do iptables capture? Each rule feature weft's chains use (nat DNAT,
// multiport, comment, conntrack, and TPROXY for inbound capture) is tried for real, by
// committing a one-rule WEFT-CHECK chain with iptables-restore inside a fresh network
// namespace (`unshare --net`), which vanishes with the command: the host's tables are never
// touched, and a missing kernel module or extension is named by the feature that needs it.

import { run } from '../core/exec.ts';
import type { FeatureCheck } from './kernel-features.ts';

interface RuleFeature {
  readonly id: string;
  readonly what: string;
  readonly table: 'nat' | 'mangle';
  readonly rule: string;
}

export const IPTABLES_FEATURES: readonly RuleFeature[] = Object.freeze([
  { id: 'iptables:dnat', what: 'iptables nat DNAT (outbound capture)', table: 'nat', rule: '-p tcp -j DNAT --to-destination 127.0.0.1:15001' },
  { id: 'iptables:conntrack', what: 'conntrack (answers SO_ORIGINAL_DST in iptables mode)', table: 'nat', rule: '-p tcp -m conntrack --ctstate NEW -j RETURN' },
  { id: 'iptables:multiport', what: 'iptables multiport match (excluded ports)', table: 'nat', rule: '-p tcp -m multiport --dports 15000,15001 -j RETURN' },
  { id: 'iptables:comment', what: 'iptables comment match (which rule is which pod)', table: 'nat', rule: '-m comment --comment weft-check -j RETURN' },
  { id: 'iptables:tproxy', what: 'iptables TPROXY (inbound capture)', table: 'mangle', rule: '-p tcp -j TPROXY --on-port 15006 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1' },
]);

export interface IptablesCheckDeps {
  readonly iptables?: string;
  readonly restore?: string;
}

export async function checkIptables(deps: IptablesCheckDeps = {}): Promise<FeatureCheck[]> {
  const iptables = deps.iptables ?? 'iptables';
  const restore = deps.restore ?? 'iptables-restore';
  let version: string;
  try {
    version = (await run(iptables, ['--version'])).stdout.trim();
  } catch (err: unknown) {
    return [{ id: 'iptables', what: 'iptables', ok: false, detail: `${iptables} does not run (${err instanceof Error ? err.message : String(err)}); install iptables (Debian: apt-get install iptables)` }];
  }
  const checks: FeatureCheck[] = [{ id: 'iptables', what: 'iptables', ok: true, detail: version }];
  for (const f of IPTABLES_FEATURES) {
    const script = `*${f.table}\n:WEFT-CHECK - [0:0]\n-A WEFT-CHECK ${f.rule}\nCOMMIT\n`;
    try {
      await run('unshare', ['--net', restore, '-w', '5'], { input: script });
      checks.push({ id: f.id, what: f.what, ok: true });
    } catch (err: unknown) {
      const why = (err instanceof Error ? err.message : String(err)).split('\n').filter((l) => l.trim() !== '').slice(-2).join(' ');
      checks.push({ id: f.id, what: f.what, ok: false, detail: `the kernel or iptables refused \`-t ${f.table} ${f.rule}\`: ${why}` });
    }
  }
  return checks;
}
