// Where an agent's config and certificates come from. Two implementations: the control
// plane (control-feed.ts) and a local manifests directory with a local CA (local-feed.ts,
// for a standalone agent). The agent treats both the same.

import type { CertificateIssuer } from '../identity/index.ts';
import type { MeshContent } from '../model/resolve.ts';

export interface NodeConfig {
  /** The node's slice of the mesh. */
  readonly content: MeshContent;
  /** Opaque version of this config (for /config_dump and logs). */
  readonly version: string;
  /** PEM of every trusted root. */
  readonly trustBundlePem: string;
  /** Current certificate revocation list, when the CA publishes one. */
  readonly crlPem: string | undefined;
}

export interface MeshFeed {
  /** Resolves once started; `onConfig` is called for the first config (maybe later, if the source is away) and every change. */
  start(onConfig: (config: NodeConfig) => void): Promise<void>;
  /** Signs this node's workload CSRs. */
  readonly issuer: CertificateIssuer;
  /** What the feed knows about its own health, for /config_dump. */
  describe(): object;
  /** Safe to call twice. */
  close(): Promise<void>;
}
