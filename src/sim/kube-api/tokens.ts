// Service-account tokens for the simulated API server, as the kubelet asks for them for a
// projected volume: bound to an audience, a pod and its node, with an expiry. Reviewed the
// way the TokenReview API answers (audiences intersected, the bound pod and node in
// `extra`), and accepted as API credentials only when minted for the API's own audience.

import { randomBytes, randomUUID } from 'node:crypto';

/** The audience of the default (kube-api-access) token: the API server's own. */
export const API_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';

/** Not a Kubernetes path: the test double's door (administrator only) for moving token time on. */
export const TOKEN_CLOCK_PATH = '/sim/v1/token-clock';

export interface ApiUser {
  readonly username: string;
  readonly uid: string;
  readonly groups: readonly string[];
  readonly extra: Readonly<Record<string, readonly string[]>>;
}

export interface TokenRequest {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly audiences: readonly string[];
  readonly expirationSeconds: number;
  readonly pod?: { readonly name: string; readonly uid: string };
  readonly node?: { readonly name: string };
}

export interface TokenReviewStatus {
  readonly authenticated: boolean;
  readonly user?: ApiUser;
  readonly audiences?: readonly string[];
  readonly error?: string;
}

interface Issued {
  readonly user: ApiUser;
  readonly audiences: readonly string[];
  readonly expiresAt: number;
}

export class TokenAuthority {
  readonly #tokens = new Map<string, Issued>();
  readonly #clock: () => number;
  /** How far `advance` moved token time past the clock's. */
  #skewMs = 0;

  constructor(now: () => number = Date.now) {
    this.#clock = now;
  }

  #now(): number {
    return this.#clock() + this.#skewMs;
  }

  /**
   * Moves token time on by `seconds` (what an hour-long token lifetime needs in a test):
   * tokens issued before expire as they would after that long, new ones count from then.
   */
  advance(seconds: number): void {
    this.#skewMs += seconds * 1000;
  }

  issue(r: TokenRequest): string {
    const token = `sim.${randomBytes(24).toString('base64url')}`;
    const extra: Record<string, string[]> = { 'authentication.kubernetes.io/credential-id': [`JTI=${randomUUID()}`] };
    if (r.pod !== undefined) {
      extra['authentication.kubernetes.io/pod-name'] = [r.pod.name];
      extra['authentication.kubernetes.io/pod-uid'] = [r.pod.uid];
    }
    if (r.node !== undefined) extra['authentication.kubernetes.io/node-name'] = [r.node.name];
    this.#tokens.set(token, {
      user: {
        username: `system:serviceaccount:${r.namespace}:${r.serviceAccount}`, uid: randomUUID(),
        groups: ['system:serviceaccounts', `system:serviceaccounts:${r.namespace}`, 'system:authenticated'], extra,
      },
      audiences: [...r.audiences],
      expiresAt: this.#now() + r.expirationSeconds * 1000,
    });
    return token;
  }

  /** A static credential (an administrator's, say) valid for the API until the process ends. */
  addStatic(token: string, user: ApiUser): void {
    this.#tokens.set(token, { user, audiences: [API_AUDIENCE], expiresAt: Number.POSITIVE_INFINITY });
  }

  /** Forgets every token bound to this pod, as the API does once the pod is deleted. */
  revokePod(podUid: string): void {
    for (const [token, t] of this.#tokens) if (t.user.extra['authentication.kubernetes.io/pod-uid']?.[0] === podUid) this.#tokens.delete(token);
  }

  /** TokenReview: empty `audiences` means the API server's own. */
  review(token: string, audiences: readonly string[] | undefined): TokenReviewStatus {
    const wanted = audiences === undefined || audiences.length === 0 ? [API_AUDIENCE] : audiences;
    const t = this.#tokens.get(token);
    if (t === undefined) return { authenticated: false, error: 'invalid bearer token' };
    if (this.#now() >= t.expiresAt) return { authenticated: false, error: 'invalid bearer token, token has expired' };
    const common = wanted.filter((a) => t.audiences.includes(a));
    if (common.length === 0) return { authenticated: false, error: `invalid bearer token, token audiences ${JSON.stringify(t.audiences)} is invalid for the target audiences ${JSON.stringify(wanted)}` };
    return { authenticated: true, user: t.user, audiences: common };
  }

  /** The user of an API request's bearer token, or undefined. */
  authenticate(token: string): ApiUser | undefined {
    const r = this.review(token, [API_AUDIENCE]);
    return r.authenticated ? r.user : undefined;
  }
}
