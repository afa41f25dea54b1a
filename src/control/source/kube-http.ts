// Requests to the Kubernetes API: one JSON call (GET, POST, PUT) and a watch stream (one
// JSON event a line). A non-2xx answer is an ApiStatusError carrying the HTTP status the
// callers branch on (404, 409, 410).

import http from 'node:http';
import https from 'node:https';
import type { KubeAccess } from './kube-access.ts';

/** A failed request, with the HTTP status the informer logic branches on (404, 410). */
export class ApiStatusError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

export interface KubeRequest {
  readonly method?: 'GET' | 'POST' | 'PUT';
  /** Path and query, e.g. `/api/v1/pods?limit=500`. */
  readonly path: string;
  readonly body?: unknown;
  readonly signal?: AbortSignal | undefined;
  readonly timeoutMs?: number;
  /** Largest response accepted (default 512 MiB). */
  readonly maxBytes?: number;
}

const MAX_BODY = 512 * 1024 * 1024;

async function open(access: KubeAccess, path: string, method: string, extra: http.OutgoingHttpHeaders, signal: AbortSignal | undefined): Promise<http.ClientRequest> {
  const opts = await access.requestOptions();
  const url = new URL(access.server + path);
  const request = url.protocol === 'https:' ? https.request : http.request;
  return request(url, { ...opts, method, headers: { ...opts.headers, accept: 'application/json', ...extra }, ...(signal === undefined ? {} : { signal }) });
}

/** One call; the parsed JSON answer. */
export async function kubeJson(access: KubeAccess, r: KubeRequest): Promise<unknown> {
  const method = r.method ?? 'GET';
  const payload = r.body === undefined ? undefined : Buffer.from(JSON.stringify(r.body));
  const what = `${method} ${r.path.replace(/\?.*/, '')}`;
  const max = r.maxBytes ?? MAX_BODY;
  const req = await open(access, r.path, method, payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length }, r.signal);
  return await new Promise((resolve, reject) => {
    if (r.timeoutMs !== undefined) req.setTimeout(r.timeoutMs, () => req.destroy(new Error(`${what}: no response within ${r.timeoutMs} ms`)));
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > max) req.destroy(new Error(`${what}: the response exceeds ${max} bytes`));
        else chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          reject(new ApiStatusError(status, `${method} ${r.path}: HTTP ${status} ${text.slice(0, 200)}`));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (err: unknown) {
          reject(new Error(`${what}: the response is not JSON`, { cause: err }));
        }
      });
    });
    req.end(payload);
  });
}

export interface WatchEvent {
  readonly type: string;
  readonly object: Record<string, unknown>;
}

/**
 * Watches `path` (query included) until the server ends the stream (resolves), the request
 * fails (rejects; an HTTP error as ApiStatusError), `signal` aborts, or nothing arrives for
 * `idleMs` (resolves: the caller resumes from its resourceVersion, as after a server close).
 */
export async function kubeWatch(access: KubeAccess, path: string, onEvent: (e: WatchEvent) => void, signal: AbortSignal, idleMs: number): Promise<void> {
  const req = await open(access, path, 'GET', {}, signal);
  await new Promise<void>((resolve, reject) => {
    let idle: NodeJS.Timeout | undefined;
    let settled = false;
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      req.destroy();
      if (err === undefined || signal.aborted) resolve();
      else reject(err);
    };
    const arm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => finish(), idleMs);
      idle.unref();
    };
    arm();
    req.on('error', (err) => finish(err));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => { if (chunks.length < 16) chunks.push(c); });
        res.on('end', () => finish(new ApiStatusError(status, `GET ${path}: HTTP ${status} ${Buffer.concat(chunks).toString('utf8').slice(0, 200)}`)));
        res.on('error', (err) => finish(err));
        return;
      }
      let rest = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        arm();
        const lines = (rest + chunk).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) {
          if (line.trim() === '') continue;
          let e: unknown;
          try {
            e = JSON.parse(line);
          } catch {
            continue; // as client-node: a line that is not JSON is skipped
          }
          const ev = e as { type?: unknown; object?: unknown };
          if (typeof ev.type === 'string' && typeof ev.object === 'object' && ev.object !== null) onEvent({ type: ev.type, object: ev.object as Record<string, unknown> });
        }
      });
      res.on('end', () => finish());
      res.on('close', () => finish());
      res.on('error', (err) => finish(err));
    });
    req.end();
  });
}
