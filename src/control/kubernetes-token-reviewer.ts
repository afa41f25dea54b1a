// Bootstrap authentication on Kubernetes: the agent presents its projected service-account
// token (audience `weft-control`), and the API server's TokenReview says whose it is. A
// pod-bound token reviewed by Kubernetes 1.30+ carries the node the pod runs on in
// `user.extra["authentication.kubernetes.io/node-name"]`.
//
// Tested against the simulator's API server (src/sim/kube-api), which answers TokenReview
// as Kubernetes does (audiences intersected, the bound pod's node in `extra`); not against a
// real one (no cluster in this environment).

import type { KubeAccess } from './source/kube-access.ts';
import { kubeJson } from './source/kube-http.ts';
import { describeError } from '../core/errors.ts';
import { AGENT_SERVICE_ACCOUNT, SYSTEM_NAMESPACE } from './channel-identity.ts';
import type { TokenReviewer } from './token-reviewer.ts';

export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
export const DEFAULT_TOKEN_AUDIENCE = 'weft-control';

export interface KubernetesTokenReviewerOptions {
  readonly access: KubeAccess;
  /** The audience agents' projected tokens are minted for; `weft-control` by default. */
  readonly audience?: string;
  /** The only account allowed to bootstrap; `system:serviceaccount:weft-system:weft-agent` by default. */
  readonly username?: string;
}

interface TokenReviewStatus {
  readonly authenticated?: boolean;
  readonly audiences?: readonly string[];
  readonly user?: { readonly username?: string; readonly extra?: Readonly<Record<string, readonly string[]>> };
}

export class KubernetesTokenReviewer implements TokenReviewer {
  readonly #access: KubeAccess;
  readonly #audience: string;
  readonly #username: string;
  readonly refusalHint: string;

  constructor(options: KubernetesTokenReviewerOptions) {
    this.#access = options.access;
    this.#audience = options.audience ?? DEFAULT_TOKEN_AUDIENCE;
    this.#username = options.username ?? `system:serviceaccount:${SYSTEM_NAMESPACE}:${AGENT_SERVICE_ACCOUNT}`;
    this.refusalHint = `TokenReview did not accept it as ${this.#username} for audience ${JSON.stringify(this.#audience)} on a node-bound token (Kubernetes 1.30+); check the agent's projected token (audience, service account)`;
  }

  async review(token: string): Promise<string | undefined> {
    let status: TokenReviewStatus | undefined;
    try {
      ({ status } = (await kubeJson(this.#access, {
        method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews', timeoutMs: 30_000,
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.#audience] } },
      })) as { status?: TokenReviewStatus });
    } catch (err: unknown) {
      throw new Error(`TokenReview failed: ${describeError(err)}`, { cause: err });
    }
    if (status?.authenticated !== true || status.user?.username !== this.#username) return undefined;
    if (status.audiences !== undefined && !status.audiences.includes(this.#audience)) return undefined;
    return status.user.extra?.[NODE_NAME_EXTRA]?.[0];
  }
}
