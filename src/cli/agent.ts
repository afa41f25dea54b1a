// `weft agent`: the node agent (capture + proxy). Runs until SIGTERM/SIGINT, then drains.

import { availableParallelism } from 'node:os';
import { agentConfig } from '../config/agent.ts';
import { runAgent } from '../app/agent.ts';
import { parseFlags } from './args.ts';

const USAGE = `weft agent --node NAME [--mode ebpf|iptables|off] --capture-address IP [--tunnel-address IP]
            (--control HOST:PORT [--token-file F] [--ca-file F] | --manifests DIR)
            [--pod-cgroup TEMPLATE] [--pin-name NAME] [--pod-interface IF] [--exclude-ports P,..] [--exclude-cidrs C,..]
            [--workers N] [--drain-seconds S] [--fail-closed] [--ready-file F] [--state-dir DIR] [--trust-domain TD] [--log-level L]
            [--l7 on|off] [--sniff-ms MS]`;

export async function agentCommand(argv: readonly string[]): Promise<number> {
  const s = { type: 'string' } as const;
  const { values } = parseFlags(argv, {
    node: s, mode: s, 'capture-address': s, 'tunnel-address': s, control: s, 'token-file': s, 'ca-file': s, manifests: s,
    'pod-cgroup': s, 'pin-name': s, 'pod-interface': s, 'exclude-ports': s, 'exclude-cidrs': s, workers: s, 'drain-seconds': s,
    'fail-closed': { type: 'boolean' }, 'ready-file': s, 'state-dir': s, 'trust-domain': s, 'log-level': s, l7: s, 'sniff-ms': s,
  }, USAGE);
  const config = agentConfig(values, process.env, availableParallelism());
  const agent = await runAgent(config);
  await new Promise<void>((resolve, reject) => {
    const stop = (): void => void agent.shutdown().then(resolve);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    agent.failed.catch((err: unknown) => void agent.shutdown().then(() => reject(err instanceof Error ? err : new Error(String(err)))));
  });
  return 0;
}
