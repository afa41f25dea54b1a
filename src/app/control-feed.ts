// An agent's config from the control plane: a ControlClient (bootstrap token -> node
// certificate -> mTLS delta stream), with the agent-side validator and decoder from
// app/control.ts, and the client itself signing workload CSRs.

import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { WeftError } from '../core/errors.ts';
import type { AgentConfig } from '../config/agent.ts';
import { ControlClient } from '../control/client.ts';
import { decodeAgentResources, validateAgentResource } from './control.ts';
import type { MeshFeed, NodeConfig } from './mesh-feed.ts';

async function readRequired(path: string | undefined, flag: string): Promise<string> {
  if (path === undefined) throw new WeftError('WEFT_CONFIG_INVALID', `--${flag} is required with --control`);
  return readFile(path, 'utf8');
}

export function controlFeed(config: AgentConfig, logger: Logger, registry?: Registry): MeshFeed {
  if (config.source.kind !== 'control') throw new Error('controlFeed needs a control source');
  const { address, tokenFile, caFile } = config.source;
  let listener: ((c: NodeConfig) => void) | undefined;
  const client = new ControlClient({
    address,
    node: config.node,
    trustDomain: config.trustDomain,
    // Read at each bootstrap: the CA file may appear after the agent starts.
    trustBundlePem: () => readRequired(caFile, 'ca-file'),
    bootstrapToken: async () => (await readRequired(tokenFile, 'token-file')).trim(),
    validate: validateAgentResource,
    logger,
    registry,
    onConfig: (resources, version) => {
      const { decoded, trust } = decodeAgentResources(resources, config.trustDomain);
      for (const p of decoded.problems) logger.warn({ problem: p }, 'config resource refused');
      if (trust === undefined) {
        logger.warn({ version }, 'config without a trust bundle; waiting for one');
        return;
      }
      listener?.({ content: decoded.content, version, trustBundlePem: trust.trustBundlePem, crlPem: trust.crlPem });
    },
  });
  return {
    issuer: client,
    start: (onConfig) => {
      listener = onConfig;
      client.start();
      return Promise.resolve();
    },
    describe: () => client.configDump(),
    close: () => client.close(),
  };
}

