// The messages between the agent's main thread and its proxy workers.

import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { MeshContent } from '../model/resolve.ts';
import type { CredentialSet } from './credentials.ts';

export type ToWorker =
  | { readonly type: 'mesh'; readonly content: MeshContent }
  | { readonly type: 'credentials'; readonly set: CredentialSet }
  | { readonly type: 'metrics'; readonly id: number }
  /** Collect garbage and trim the heap (a flood is over: memory-reclaim.ts). */
  | { readonly type: 'reclaim'; readonly id: number }
  /** Open the listeners (sent after the first mesh and credentials, which arrive in order before it). */
  | { readonly type: 'listen' }
  /** Serve a pod's inbound socket (a file descriptor of this process, eBPF capture); the worker owns it from now. */
  | { readonly type: 'inbound-socket'; readonly pod: string; readonly fd: number }
  | { readonly type: 'inbound-release'; readonly pod: string }
  | { readonly type: 'drain'; readonly deadlineMs: number };

export interface WorkerStats {
  readonly tunnelSessions: number;
  readonly tunnelStreams: number;
  readonly pool: object;
}

export type FromWorker =
  | { readonly type: 'listening' }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'metrics'; readonly id: number; readonly metrics: MetricObjectWithValues<MetricValue<string>>[]; readonly stats: WorkerStats }
  /** `ms`: how long the worker's thread was stalled by its collection and trim. */
  | { readonly type: 'reclaimed'; readonly id: number; readonly ms: number }
  | { readonly type: 'drained' };
