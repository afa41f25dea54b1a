// `weft agent`: the node agent (capture + proxy). Runs until SIGTERM/SIGINT, then drains.

import { availableParallelism } from 'node:os';
import { agentConfigFromArgv } from '../config/agent.ts';
import { runAgent } from '../app/agent.ts';

export async function agentCommand(argv: readonly string[]): Promise<number> {
  const config = agentConfigFromArgv(argv, process.env, availableParallelism());
  const agent = await runAgent(config);
  await new Promise<void>((resolve, reject) => {
    const stop = (): void => void agent.shutdown().then(resolve);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    agent.failed.catch((err: unknown) => void agent.shutdown().then(() => reject(err instanceof Error ? err : new Error(String(err)))));
  });
  return 0;
}
