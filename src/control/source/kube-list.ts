// Lists one kind from the Kubernetes API as raw JSON, page by page. Raw on purpose: the
// model validates plain objects, and the watch stream delivers plain objects too, so list
// and watch items have the same shape. Auth and TLS come from the KubeAccess.

import type { KubeAccess } from './kube-access.ts';
import { kubeJson } from './kube-http.ts';
import { sourceError, SourceErrors } from './errors.ts';

export { ApiStatusError } from './kube-http.ts';

export interface RawList {
  readonly metadata: { readonly resourceVersion: string };
  readonly items: Record<string, unknown>[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface ListRequest {
  readonly access: KubeAccess;
  /** Collection path, e.g. `/api/v1/pods`. */
  readonly path: string;
  readonly kind: string;
  readonly apiVersion: string;
  readonly pageSize: number;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  /** What of each item to keep (default: all of it). */
  readonly keep?: (item: Record<string, unknown>) => Record<string, unknown>;
}

/** Every item of a collection, following `continue` tokens; items get the kind and apiVersion lists leave out. */
export async function listAll(r: ListRequest): Promise<RawList> {
  const items: Record<string, unknown>[] = [];
  let resourceVersion: string | undefined;
  let cont: string | undefined;
  do {
    const query = new URLSearchParams({ limit: String(r.pageSize) });
    if (cont !== undefined) query.set('continue', cont);
    const page = await kubeJson(r.access, { path: `${r.path}?${query.toString()}`, signal: r.signal, timeoutMs: r.timeoutMs });
    if (!isRecord(page) || !isRecord(page.metadata) || !Array.isArray(page.items)) {
      throw sourceError(SourceErrors.LIST_FAILED, `GET ${r.path}: not a Kubernetes list`);
    }
    // A paginated list is one consistent snapshot at the first page's resourceVersion.
    resourceVersion ??= typeof page.metadata.resourceVersion === 'string' ? page.metadata.resourceVersion : '';
    for (const item of page.items) if (isRecord(item)) items.push({ ...(r.keep === undefined ? item : r.keep(item)), kind: r.kind, apiVersion: r.apiVersion });
    cont = typeof page.metadata.continue === 'string' && page.metadata.continue !== '' ? page.metadata.continue : undefined;
  } while (cont !== undefined);
  return { metadata: { resourceVersion: resourceVersion ?? '' }, items };
}
