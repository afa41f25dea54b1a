// Lists one kind from the Kubernetes API as raw JSON, page by page. Raw on purpose: the
// model validates plain objects, and the watch stream delivers plain objects too, so list
// and watch items have the same shape. Auth and TLS come from the KubeConfig.

import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { sourceError, SourceErrors } from './errors.ts';

/** A failed request, with the HTTP status the informer logic branches on (404, 410). */
export class ApiStatusError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

export interface RawList {
  readonly metadata: { readonly resourceVersion: string };
  readonly items: Record<string, unknown>[];
}

const MAX_BODY = 512 * 1024 * 1024;

async function getJson(kc: KubeConfig, url: URL, signal: AbortSignal, timeoutMs: number): Promise<unknown> {
  const opts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  return await new Promise((resolve, reject) => {
    const get = url.protocol === 'https:' ? https.get : http.get;
    const req = get(url, { ...opts, headers: { ...opts.headers, accept: 'application/json' }, signal, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) req.destroy(new Error(`list response from ${url.pathname} exceeds ${MAX_BODY} bytes`));
        else chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          reject(new ApiStatusError(status, `GET ${url.pathname}${url.search}: HTTP ${status} ${text.slice(0, 200)}`));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (err: unknown) {
          reject(new Error(`GET ${url.pathname}: response is not JSON`, { cause: err }));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url.pathname}: no response within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface ListRequest {
  readonly kubeConfig: KubeConfig;
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
  const server = r.kubeConfig.getCurrentCluster()?.server;
  if (server === undefined) throw sourceError(SourceErrors.NO_CLUSTER, 'the kubeconfig has no current cluster');
  const items: Record<string, unknown>[] = [];
  let resourceVersion: string | undefined;
  let cont: string | undefined;
  do {
    const url = new URL(server.replace(/\/$/, '') + r.path);
    url.searchParams.set('limit', String(r.pageSize));
    if (cont !== undefined) url.searchParams.set('continue', cont);
    const page = await getJson(r.kubeConfig, url, r.signal, r.timeoutMs);
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
