// A standalone agent's config: a watched manifests directory, sliced for this node the way
// the control plane would slice it, and a local CA kept in the agent's state directory.

import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { DirectorySource } from '../control/source/directory.ts';
import { CertificateAuthority, FileCaStore, type CertificateIssuer } from '../identity/index.ts';
import { loadMesh, type LoadResult } from '../model/load.ts';
import { nodeResources } from '../model/node-slice.ts';
import { decodeNodeResources } from '../model/resource-codec.ts';
import { formatProblem } from '../model/manifests.ts';
import type { MeshFeed, NodeConfig } from './mesh-feed.ts';

export interface LocalFeedOptions {
  readonly node: string;
  readonly manifestsDir: string;
  readonly stateDir: string;
  readonly trustDomain: string;
}

export class LocalFeed implements MeshFeed {
  readonly #options: LocalFeedOptions;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #source: DirectorySource;
  #ca: CertificateAuthority | undefined;
  #last: LoadResult | undefined;
  #version = 0;
  // Configs are delivered in order even though reading the CRL is asynchronous.
  #delivery: Promise<void> = Promise.resolve();
  readonly issuer: CertificateIssuer;

  constructor(options: LocalFeedOptions, logger: Logger, clock: Clock) {
    this.#options = options;
    this.#logger = logger;
    this.#clock = clock;
    this.#source = new DirectorySource({ directory: options.manifestsDir, log: logger });
    this.issuer = {
      sign: async (csrPem, identity) => {
        if (this.#ca === undefined) throw new Error('the local CA is not open yet');
        const issued = await this.#ca.sign({ csrPem, node: options.node, identity });
        return { certPem: issued.certPem, chainPem: issued.chainPem };
      },
    };
  }

  async start(onConfig: (config: NodeConfig) => void): Promise<void> {
    const { node } = this.#options;
    this.#ca = await CertificateAuthority.open({
      store: new FileCaStore(join(this.#options.stateDir, 'ca')),
      clock: this.#clock,
      trustDomain: this.#options.trustDomain,
      authorizer: { mayIssue: (n, ns, sa) => n === node && (this.#last?.state.hasServiceAccountOnNode(n, ns, sa) ?? false) },
    });
    const ca = this.#ca;
    await this.#source.start((objects, sourceProblems) => {
      const result = loadMesh(objects, { trustDomain: this.#options.trustDomain, ...(this.#last === undefined ? {} : { previous: this.#last.objects }) });
      for (const p of [...sourceProblems, ...result.problems]) this.#logger.warn({ problem: formatProblem(p) }, 'manifest problem; the rest of the config still applies');
      this.#last = result;
      const decoded = decodeNodeResources(nodeResources(result.state, node).values(), this.#options.trustDomain);
      const version = `local-${++this.#version}`;
      this.#delivery = this.#delivery
        .then(async () => onConfig({ content: decoded.content, version, trustBundlePem: ca.trustBundlePem(), crlPem: await ca.crlPem() }))
        .catch((err: unknown) => this.#logger.error({ err: String(err) }, 'config delivery failed'));
    });
  }

  describe(): object {
    return { source: 'manifests', directory: this.#options.manifestsDir, version: `local-${this.#version}` };
  }

  async close(): Promise<void> {
    await this.#source.close();
  }
}
