// `weft check` (like `linkerd check` or `cilium status`): can this node run weft, and is the
// agent on it healthy? A readable pass/fail list, or --json; exit 0 when nothing failed
// (warnings included), 1 otherwise.

import { isIPv4 } from 'node:net';
import { runHostChecks, type Check } from '../app/host-check.ts';
import { DEFAULT_TRUST_DOMAIN } from '../model/types.ts';
import { WEFT_VERSION } from './version.ts';
import { oneOf, parseFlags, usageError } from './args.ts';

const USAGE = `weft check [--json] [--mode auto|ebpf|iptables] [--bpftool PATH] [--object FILE]
                  [--agent HOST:PORT|none] [--control HOST:PORT --ca-file FILE [--trust-domain TD]]
  --mode     the agent's capture mode: which missing features fail the check (default auto:
             missing eBPF only warns while iptables works)
  --agent    the local agent's admin port (default 127.0.0.1:15000); none skips its checks
  --control  also try a TLS handshake with the control plane, verified against --ca-file`;

const MARK: Record<Check['status'], string> = { pass: '✔', fail: '✖', warn: '!', skip: '-' };

export function renderChecks(checks: readonly Check[]): string {
  const lines: string[] = [];
  let group = '';
  for (const c of checks) {
    if (c.group !== group) {
      group = c.group;
      lines.push(`${group}`);
    }
    lines.push(`  ${MARK[c.status]} ${c.what}${c.detail === undefined ? '' : `: ${c.detail}`}`);
  }
  const count = (s: Check['status']) => checks.filter((c) => c.status === s).length;
  lines.push('', `${count('pass')} passed, ${count('fail')} failed, ${count('warn')} warnings, ${count('skip')} skipped`);
  return `${lines.join('\n')}\n`;
}

function hostPort(v: string, flag: string): string {
  const m = /^([^:\s]+):(\d{1,5})$/.exec(v);
  if (m === null || Number(m[2]) > 65535) throw usageError(`${flag} must be HOST:PORT, got ${JSON.stringify(v)}`, USAGE);
  return v;
}

export async function checkCommand(argv: readonly string[]): Promise<number> {
  const s = { type: 'string' } as const;
  const { values } = parseFlags(argv, {
    json: { type: 'boolean' }, mode: s, bpftool: s, object: s, agent: s, control: s, 'ca-file': s, 'trust-domain': s,
  }, USAGE);
  const mode = oneOf(values.mode, '--mode', ['auto', 'ebpf', 'iptables'] as const, 'auto', USAGE);
  const agentFlag = values.agent ?? '127.0.0.1:15000';
  const agent = agentFlag === 'none' ? undefined : hostPort(agentFlag, '--agent');
  if ((values.control === undefined) !== (values['ca-file'] === undefined)) throw usageError('--control and --ca-file go together', USAGE);
  const control = values.control === undefined || values['ca-file'] === undefined
    ? undefined
    : { address: hostPort(values.control, '--control'), caFile: values['ca-file'], trustDomain: values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN };
  if (agent !== undefined && !isIPv4(agent.slice(0, agent.lastIndexOf(':'))) && !agent.startsWith('localhost:')) {
    throw usageError('--agent must be an IPv4 address and port: the admin port listens on loopback', USAGE);
  }
  const checks = await runHostChecks({ mode, bpftool: values.bpftool ?? 'bpftool', ...(values.object === undefined ? {} : { objectPath: values.object }), agent, control });
  const failed = checks.some((c) => c.status === 'fail');
  if (values.json === true) process.stdout.write(`${JSON.stringify({ version: WEFT_VERSION, ok: !failed, checks }, null, 2)}\n`);
  else process.stdout.write(`weft check (weft ${WEFT_VERSION}, --mode ${mode})\n${renderChecks(checks)}`);
  return failed ? 1 : 0;
}
