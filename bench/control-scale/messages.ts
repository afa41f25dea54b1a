// What the scale benchmark and its agent hosts say to each other over IPC.

export interface NodeToken {
  readonly node: string;
  readonly token: string;
}

export type HostRequest =
  | {
    readonly type: 'start'; readonly address: string; readonly caPem: string;
    readonly light: readonly NodeToken[]; readonly full: readonly NodeToken[];
    /** Bootstraps in flight at once. */
    readonly concurrency: number;
  }
  /** Change `id`: every agent must come to hold resource `key` (the endpoint the moved pod became). */
  | { readonly type: 'expect'; readonly id: number; readonly key: string }
  | { readonly type: 'phase'; readonly phase: 'sync' | 'churn' | 'idle' }
  | { readonly type: 'report' }
  | { readonly type: 'stop' };

/** When the agents of one host held change `id` (epoch ms, high resolution). */
export interface Arrival {
  readonly id: number;
  readonly count: number;
  readonly first: number;
  readonly last: number;
}

export interface HostReport {
  readonly agents: number;
  readonly syncBytes: number;
  readonly syncBodyBytes: number;
  readonly syncResources: number;
  readonly churnBytes: number;
  readonly churnBodyBytes: number;
  readonly churnResponses: number;
  readonly churnResources: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  /** When each agent's first sync completed (epoch ms). */
  readonly syncedAt: readonly number[];
  /** Changes not yet held by every agent here. */
  readonly unfinished: readonly Arrival[];
  readonly full: {
    readonly agents: number;
    /** Config updates applied after the first sync, and how long each took (decode + MeshState). */
    readonly applies: number;
    readonly applyP50Ms: number;
    readonly applyP99Ms: number;
    readonly applyMaxMs: number;
    readonly firstApplyMs: readonly number[];
    /** CPU of this host during the churn (its light agents included, when it has any). */
    readonly churnCpuMs: number;
  } | undefined;
}

export type HostMessage =
  | { readonly type: 'started'; readonly agents: number; readonly cpuMs: number }
  | { readonly type: 'synced' }
  | { readonly type: 'arrived'; readonly items: readonly Arrival[] }
  | { readonly type: 'report'; readonly report: HostReport }
  | { readonly type: 'failed'; readonly error: string };
