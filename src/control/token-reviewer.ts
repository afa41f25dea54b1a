// Bootstrap authentication: a token the agent presents before it has a node certificate.
// In the simulator each node gets a random token written by `weft sim`; on Kubernetes the
// agent's projected service-account token is checked with a TokenReview (see
// kubernetes-token-reviewer.ts). Both answer the same question: which node is this?

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { checkNodeName } from './channel-identity.ts';
import { controlError, ControlErrors } from './errors.ts';

export interface TokenReviewer {
  /** The node the token belongs to, or undefined when the token is not recognised. */
  review(token: string): Promise<string | undefined>;
  /** What an operator should check when a token is refused (said to the agent). */
  readonly refusalHint?: string;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * Tokens known in advance. Only their SHA-256 digests are kept, and the lookup compares
 * digests in constant time, so neither memory nor timing gives a token away.
 */
export class StaticTokenReviewer implements TokenReviewer {
  readonly refusalHint = "check the agent's token file against the control plane's --tokens file";
  readonly #entries: ReadonlyArray<{ readonly digest: Buffer; readonly node: string }>;

  /** `tokens`: token -> node name. A node may have several tokens (rotation). */
  constructor(tokens: ReadonlyMap<string, string>) {
    const entries: Array<{ digest: Buffer; node: string }> = [];
    for (const [token, node] of tokens) {
      if (typeof node !== 'string') throw controlError(ControlErrors.BAD_TOKEN_FILE, `token #${entries.length + 1} must map to a node name, got ${JSON.stringify(node)}`);
      checkNodeName(node);
      if (token.length < 16) {
        throw controlError(ControlErrors.BAD_TOKEN_FILE, `the token of node ${node} is ${token.length} characters; bootstrap tokens need at least 16`);
      }
      entries.push({ digest: digest(token), node });
    }
    this.#entries = entries;
  }

  /**
   * Reads a JSON object mapping token to node name, e.g. `{"3f9c...": "node-1"}` (what
   * `weft sim` writes).
   */
  static async fromFile(path: string): Promise<StaticTokenReviewer> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(path, 'utf8'));
    } catch (err: unknown) {
      throw controlError(ControlErrors.BAD_TOKEN_FILE, `cannot read the bootstrap token file ${path}: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw controlError(ControlErrors.BAD_TOKEN_FILE, `${path} must hold a JSON object mapping token to node name`);
    }
    try {
      return new StaticTokenReviewer(new Map(Object.entries(parsed as Record<string, string>)));
    } catch (err: unknown) {
      throw controlError(ControlErrors.BAD_TOKEN_FILE, `${path}: ${err instanceof Error ? err.message : String(err)}`, err);
    }
  }

  review(token: string): Promise<string | undefined> {
    const d = digest(token);
    let node: string | undefined;
    for (const e of this.#entries) if (timingSafeEqual(e.digest, d)) node = e.node; // no early exit: constant time
    return Promise.resolve(node);
  }
}

/** A short, non-reversible label for a token in logs and error messages. */
export function tokenFingerprint(token: string): string {
  return `sha256:${digest(token).toString('hex').slice(0, 8)}`;
}
