// A small stand-in for the Kubernetes API server on 127.0.0.1, speaking the list/watch
// protocol informers use: paginated lists with a resourceVersion, `?watch=true` streams of
// JSON lines from a resourceVersion, BOOKMARK events, and 410 Gone (as an ERROR event, or
// as an HTTP status) for a resourceVersion older than the retained history.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeKind {
  readonly path: string;
  readonly kind: string;
  readonly apiVersion: string;
}

interface Event { readonly rv: number; readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'; readonly object: Record<string, unknown> }

interface Collection {
  readonly kind: FakeKind;
  readonly objects: Map<string, Record<string, unknown>>;
  events: Event[];
}

interface OpenWatch { readonly path: string; readonly res: http.ServerResponse; readonly bookmarks: boolean; readonly kind: FakeKind }

export interface RequestRecord {
  readonly path: string;
  readonly watch: boolean;
  readonly query: Readonly<Record<string, string>>;
}

const TOKEN = 'weft-test-token';

export class FakeApiServer {
  readonly token = TOKEN;
  readonly requests: RequestRecord[] = [];
  /** Answer watches of a too-old resourceVersion with HTTP 410 instead of an ERROR event. */
  goneAsHttpStatus = false;
  /** When false, changes are recorded but not pushed to open watches (as if the stream stalled). */
  live = true;
  readonly #collections = new Map<string, Collection>();
  readonly #watches = new Set<OpenWatch>();
  readonly #failures = new Map<string, { status: number; remaining: number }>();
  readonly #pages = new Map<string, { items: Record<string, unknown>[]; rv: number; offset: number }>();
  #rv = 1000;
  /** Events at or below this resourceVersion have been compacted away. */
  #compactedAt = 0;
  #server: http.Server | undefined;

  constructor(kinds: readonly FakeKind[]) {
    for (const k of kinds) this.serve(k);
  }

  /** Starts serving a collection (e.g. a CRD installed later). */
  serve(kind: FakeKind): void {
    if (!this.#collections.has(kind.path)) this.#collections.set(kind.path, { kind, objects: new Map(), events: [] });
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  get openWatches(): number {
    return this.#watches.size;
  }

  lists(path: string): number {
    return this.requests.filter((r) => r.path === path && !r.watch).length;
  }

  watchesOf(path: string): RequestRecord[] {
    return this.requests.filter((r) => r.path === path && r.watch);
  }

  /** The next `times` requests (list or watch) to `path` fail with `status`. */
  fail(path: string, status: number, times: number): void {
    this.#failures.set(path, { status, remaining: times });
  }

  upsert(path: string, object: Record<string, unknown>): void {
    const c = this.#collection(path);
    const md = { ...(object.metadata as { namespace?: string; name: string }) } as { namespace?: string; name: string; resourceVersion?: string };
    const key = `${md.namespace ?? ''}/${md.name}`;
    const type = c.objects.has(key) ? 'MODIFIED' : 'ADDED';
    md.resourceVersion = String(++this.#rv);
    const stored = { ...object, metadata: md };
    c.objects.set(key, stored);
    this.#record(c, { rv: this.#rv, type, object: { ...stored, kind: c.kind.kind, apiVersion: c.kind.apiVersion } });
  }

  remove(path: string, namespace: string, name: string): void {
    const c = this.#collection(path);
    const key = `${namespace}/${name}`;
    const old = c.objects.get(key);
    if (old === undefined) throw new Error(`no ${key} in ${path}`);
    c.objects.delete(key);
    const md = { ...(old.metadata as Record<string, unknown>), resourceVersion: String(++this.#rv) };
    this.#record(c, { rv: this.#rv, type: 'DELETED', object: { ...old, metadata: md, kind: c.kind.kind, apiVersion: c.kind.apiVersion } });
  }

  /** Drops the event history: watches from an older resourceVersion now get 410 Gone. */
  compact(): void {
    this.#compactedAt = this.#rv;
    for (const c of this.#collections.values()) c.events = [];
  }

  /** Sends a BOOKMARK carrying the current resourceVersion to every watch that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.#watches) {
      if (w.bookmarks) this.#send(w.res, { type: 'BOOKMARK', object: { kind: w.kind.kind, apiVersion: w.kind.apiVersion, metadata: { resourceVersion: String(this.#rv) } } });
    }
  }

  /** Ends every open watch stream, as the API server does when a watch times out. */
  endWatches(): void {
    for (const w of this.#watches) w.res.end();
    this.#watches.clear();
  }

  async listen(): Promise<string> {
    const server = http.createServer((req, res) => this.#handle(req, res));
    this.#server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.endWatches();
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #collection(path: string): Collection {
    const c = this.#collections.get(path);
    if (c === undefined) throw new Error(`not serving ${path}`);
    return c;
  }

  #record(c: Collection, e: Event): void {
    c.events.push(e);
    if (!this.live) return;
    for (const w of this.#watches) if (w.path === c.kind.path) this.#send(w.res, { type: e.type, object: e.object });
  }

  #send(res: http.ServerResponse, event: unknown): void {
    res.write(`${JSON.stringify(event)}\n`);
  }

  #status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code }));
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const watch = query.watch === 'true';
    this.requests.push({ path: url.pathname, watch, query });
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return this.#status(res, 401, 'Unauthorized', 'bad token');
    const failure = this.#failures.get(url.pathname);
    if (failure !== undefined && failure.remaining > 0) {
      failure.remaining--;
      return this.#status(res, failure.status, 'InternalError', 'injected failure');
    }
    const c = this.#collections.get(url.pathname);
    if (c === undefined) return this.#status(res, 404, 'NotFound', `the server could not find the requested resource ${url.pathname}`);
    if (watch) this.#watch(c, query, res);
    else this.#list(c, query, res);
  }

  #list(c: Collection, query: Record<string, string>, res: http.ServerResponse): void {
    const limit = query.limit === undefined ? Infinity : Number(query.limit);
    let page: { items: Record<string, unknown>[]; rv: number; offset: number };
    if (query.continue !== undefined) {
      const p = this.#pages.get(query.continue);
      if (p === undefined) return this.#status(res, 410, 'Expired', 'continue token expired');
      page = p;
    } else {
      const items = [...c.objects.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, o]) => o);
      page = { items, rv: this.#rv, offset: 0 };
    }
    const items = page.items.slice(page.offset, page.offset + limit);
    const metadata: Record<string, string> = { resourceVersion: String(page.rv) };
    if (page.offset + limit < page.items.length) {
      const token = `t${this.#pages.size + 1}`;
      this.#pages.set(token, { ...page, offset: page.offset + limit });
      metadata.continue = token;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    // As the real server does, list items carry no kind or apiVersion.
    res.end(JSON.stringify({ kind: `${c.kind.kind}List`, apiVersion: c.kind.apiVersion, metadata, items }));
  }

  #watch(c: Collection, query: Record<string, string>, res: http.ServerResponse): void {
    const from = Number(query.resourceVersion ?? '0');
    if (from < this.#compactedAt) {
      if (this.goneAsHttpStatus) return this.#status(res, 410, 'Expired', `too old resource version: ${from} (${this.#compactedAt})`);
      res.writeHead(200, { 'content-type': 'application/json' });
      this.#send(res, { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: `too old resource version: ${from}` } });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    for (const e of c.events) if (e.rv > from) this.#send(res, { type: e.type, object: e.object });
    const w: OpenWatch = { path: c.kind.path, res, bookmarks: query.allowWatchBookmarks === 'true', kind: c.kind };
    this.#watches.add(w);
    res.on('close', () => this.#watches.delete(w));
  }
}
