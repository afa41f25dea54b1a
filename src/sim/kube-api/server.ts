// A small Kubernetes API server for the simulator (and the test double weft's Kubernetes
// source is tested against): objects kept in memory by kind, served over HTTP(S) with the
// protocol clients use — paginated lists with a resourceVersion, `?watch=true` streams of
// JSON lines from a resourceVersion with BOOKMARKs and 410 Gone, get / create / replace /
// delete with optimistic concurrency (409 on a stale resourceVersion), TokenReview, bearer
// authentication and, when asked, RBAC from the Roles and bindings it holds. A kind is served
// once it is built in or its CustomResourceDefinition is created, as on a real cluster.

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { BUILTIN_KINDS, groupOf, parseResourcePath, type ResourceKind } from './resources.ts';
import { rbacAllows, type RbacObjects } from './rbac.ts';
import { API_AUDIENCE, TOKEN_CLOCK_PATH, TokenAuthority, type ApiUser } from './tokens.ts';

/** A kind to serve, named by its cluster-wide collection path (`/api/v1/pods`). */
export interface ServedKind {
  readonly path: string;
  readonly kind: string;
  readonly apiVersion: string;
  /** Default: as the built-in kind of that name; otherwise namespaced. */
  readonly namespaced?: boolean;
}

type Body = Record<string, unknown>;
interface Event { readonly rv: number; readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'; readonly object: Body }
interface Collection { readonly kind: ResourceKind; readonly objects: Map<string, Body>; events: Event[] }
interface OpenWatch { readonly collection: Collection; readonly namespace: string | undefined; readonly res: http.ServerResponse; readonly bookmarks: boolean }

export interface RequestRecord {
  readonly method: string;
  readonly path: string;
  readonly watch: boolean;
  readonly query: Readonly<Record<string, string>>;
  /** Who made it (after authentication). */
  readonly user: string | undefined;
  /** The HTTP status answered. */
  status?: number;
}

export interface KubeApiOptions {
  /** Enforce RBAC from the stored Roles and bindings (the administrator token is always allowed). */
  readonly rbac?: boolean;
  /** Checks a custom object against its CRD; returns problems (empty: valid). */
  readonly validateCustom?: (crd: Body, version: string, object: Body) => string[];
}

export interface ListenOptions {
  readonly host?: string;
  readonly port?: number;
  /** Listen on this Unix socket instead of host:port (the simulator's own, administrator's door). */
  readonly socketPath?: string;
  /** Serve HTTPS with this key and certificate (PEM). */
  readonly tls?: { readonly keyPem: string; readonly certPem: string };
}

const ADMIN: ApiUser = Object.freeze({ username: 'kubernetes-admin', uid: 'admin', groups: ['system:masters', 'system:authenticated'], extra: {} });
const ADMIN_TOKEN = 'weft-test-token';

const keyOf = (namespace: string | undefined, name: string): string => `${namespace ?? ''}/${name}`;

export class KubeApiServer {
  /** The administrator's bearer token (group system:masters). */
  readonly token = ADMIN_TOKEN;
  readonly tokens = new TokenAuthority();
  readonly requests: RequestRecord[] = [];
  /** Answer watches of a too-old resourceVersion with HTTP 410 instead of an ERROR event. */
  goneAsHttpStatus = false;
  /** When false, changes are recorded but not pushed to open watches (as if the stream stalled). */
  live = true;
  readonly #options: KubeApiOptions;
  readonly #collections = new Map<string, Collection>();
  readonly #watches = new Set<OpenWatch>();
  readonly #failures = new Map<string, { status: number; remaining: number }>();
  readonly #pages = new Map<string, { items: Body[]; rv: number; offset: number }>();
  readonly #listeners = new Set<(type: Event['type'], object: Body) => void>();
  #rv = 1000;
  #compactedAt = 0;
  readonly #servers: http.Server[] = [];

  constructor(kinds: readonly ServedKind[] = [], options: KubeApiOptions = {}) {
    this.#options = options;
    this.tokens.addStatic(ADMIN_TOKEN, ADMIN);
    for (const k of kinds) this.serve(k);
  }

  /** Serves every built-in kind (what a fresh cluster has). */
  serveBuiltins(): this {
    for (const k of BUILTIN_KINDS) this.#serveKind(k);
    return this;
  }

  /** Starts serving a collection (a CRD installed later, say). */
  serve(kind: ServedKind): void {
    const plural = kind.path.split('/').at(-1) ?? '';
    const builtin = BUILTIN_KINDS.find((b) => b.kind === kind.kind && b.apiVersion === kind.apiVersion);
    this.#serveKind({ kind: kind.kind, apiVersion: kind.apiVersion, plural, namespaced: kind.namespaced ?? builtin?.namespaced ?? true });
  }

  #serveKind(k: ResourceKind): void {
    const id = `${k.apiVersion}/${k.plural}`;
    if (!this.#collections.has(id)) this.#collections.set(id, { kind: k, objects: new Map(), events: [] });
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  get openWatches(): number {
    return this.#watches.size;
  }

  lists(path: string): number {
    return this.requests.filter((r) => r.method === 'GET' && r.path === path && !r.watch).length;
  }

  watchesOf(path: string): RequestRecord[] {
    return this.requests.filter((r) => r.path === path && r.watch);
  }

  /** The next `times` requests to `path` fail with `status`. */
  fail(path: string, status: number, times: number): void {
    this.#failures.set(path, { status, remaining: times });
  }

  /** Called after every change (the simulator's controllers react to it). */
  onChange(listener: (type: 'ADDED' | 'MODIFIED' | 'DELETED', object: Body) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- direct access (as an administrator) --------------------------------------------------

  /** Creates or replaces an object in the collection at `path` (its cluster-wide path). */
  upsert(path: string, object: Body): Body {
    return this.#put(this.#byPath(path), object);
  }

  /** Creates or replaces an object of whatever kind it says it is. */
  apply(object: Body): Body {
    const c = this.#byKind(String(object.apiVersion), String(object.kind));
    if (c === undefined) throw new Error(`the API serves no ${String(object.kind)} (${String(object.apiVersion)}); is its CRD installed?`);
    return this.#put(c, object);
  }

  get(path: string, namespace: string, name: string): Body | undefined {
    return this.#byPath(path).objects.get(keyOf(this.#byPath(path).kind.namespaced ? namespace : undefined, name));
  }

  /** Every object of a kind (by cluster-wide path). */
  list(path: string): Body[] {
    return [...this.#byPath(path).objects.values()];
  }

  remove(path: string, namespace: string, name: string): void {
    const c = this.#byPath(path);
    const key = keyOf(c.kind.namespaced ? namespace : undefined, name);
    if (!this.#delete(c, key)) throw new Error(`no ${key} in ${path}`);
  }

  /** Drops the event history: watches from an older resourceVersion now get 410 Gone. */
  compact(): void {
    this.#compactedAt = this.#rv;
    for (const c of this.#collections.values()) c.events = [];
  }

  bookmark(): void {
    for (const w of this.#watches) {
      if (w.bookmarks) this.#send(w.res, { type: 'BOOKMARK', object: { kind: w.collection.kind.kind, apiVersion: w.collection.kind.apiVersion, metadata: { resourceVersion: String(this.#rv) } } });
    }
  }

  /** Ends every open watch stream, as the API server does when a watch times out. */
  endWatches(): void {
    for (const w of this.#watches) w.res.end();
    this.#watches.clear();
  }

  async listen(options: ListenOptions = {}): Promise<string> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => void this.#handle(req, res);
    const server = options.tls === undefined ? http.createServer(handler) : https.createServer({ key: options.tls.keyPem, cert: options.tls.certPem }, handler);
    this.#servers.push(server);
    const host = options.host ?? '127.0.0.1';
    const socketPath = options.socketPath;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (socketPath !== undefined) server.listen(socketPath, () => resolve());
      else server.listen(options.port ?? 0, host, () => resolve());
    });
    if (socketPath !== undefined) return `unix:${socketPath}`;
    const { port } = server.address() as AddressInfo;
    return `${options.tls === undefined ? 'http' : 'https'}://${host}:${port}`;
  }

  async close(): Promise<void> {
    this.endWatches();
    for (const server of this.#servers.splice(0)) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  // ---- storage --------------------------------------------------------------------------

  #byPath(path: string): Collection {
    const r = parseResourcePath(path);
    const c = r === undefined ? undefined : this.#collections.get(`${r.apiVersion}/${r.plural}`);
    if (c === undefined) throw new Error(`not serving ${path}`);
    return c;
  }

  #byKind(apiVersion: string, kind: string): Collection | undefined {
    for (const c of this.#collections.values()) if (c.kind.kind === kind && c.kind.apiVersion === apiVersion) return c;
    return undefined;
  }

  #put(c: Collection, object: Body): Body {
    const md = { ...(object.metadata as Body | undefined) };
    const name = String(md.name);
    const namespace = c.kind.namespaced ? (typeof md.namespace === 'string' ? md.namespace : 'default') : undefined;
    const key = keyOf(namespace, name);
    const old = c.objects.get(key);
    const oldMd = old?.metadata as Body | undefined;
    md.uid ??= oldMd?.uid ?? randomUUID();
    md.creationTimestamp ??= oldMd?.creationTimestamp ?? new Date().toISOString();
    if (namespace !== undefined) md.namespace = namespace;
    md.resourceVersion = String(++this.#rv);
    const stored: Body = { ...object, apiVersion: c.kind.apiVersion, kind: c.kind.kind, metadata: md };
    c.objects.set(key, stored);
    if (c.kind.kind === 'CustomResourceDefinition') this.#serveCrd(stored);
    this.#record(c, { rv: this.#rv, type: old === undefined ? 'ADDED' : 'MODIFIED', object: stored });
    return stored;
  }

  #delete(c: Collection, key: string): Body | undefined {
    const old = c.objects.get(key);
    if (old === undefined) return undefined;
    c.objects.delete(key);
    const gone = { ...old, metadata: { ...(old.metadata as Body), resourceVersion: String(++this.#rv) } };
    this.#record(c, { rv: this.#rv, type: 'DELETED', object: gone });
    return gone;
  }

  #serveCrd(crd: Body): void {
    const spec = (crd.spec ?? {}) as { group?: string; scope?: string; names?: { kind?: string; plural?: string }; versions?: { name?: string; served?: boolean }[] };
    for (const v of spec.versions ?? []) {
      if (v.served === false || spec.group === undefined || spec.names?.kind === undefined || spec.names.plural === undefined) continue;
      this.#serveKind({ kind: spec.names.kind, apiVersion: `${spec.group}/${v.name}`, plural: spec.names.plural, namespaced: spec.scope !== 'Cluster' });
    }
  }

  #crdOf(k: ResourceKind): Body | undefined {
    const crds = this.#collections.get('apiextensions.k8s.io/v1/customresourcedefinitions');
    return crds?.objects.get(keyOf(undefined, `${k.plural}.${groupOf(k.apiVersion)}`));
  }

  #record(c: Collection, e: Event): void {
    c.events.push(e);
    for (const l of this.#listeners) l(e.type, e.object);
    if (!this.live) return;
    for (const w of this.#watches) {
      if (w.collection !== c) continue;
      if (w.namespace !== undefined && (e.object.metadata as Body).namespace !== w.namespace) continue;
      this.#send(w.res, { type: e.type, object: e.object });
    }
  }

  // ---- HTTP -----------------------------------------------------------------------------

  #send(res: http.ServerResponse, event: unknown): void {
    res.write(`${JSON.stringify(event)}\n`);
  }

  #status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason, message, code }));
  }

  #json(res: http.ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? 'GET';
    const watch = query.watch === 'true' || query.watch === '1';
    const auth = req.headers.authorization;
    const user = auth?.startsWith('Bearer ') === true ? this.tokens.authenticate(auth.slice(7).trim()) : undefined;
    const record: RequestRecord = { method, path: url.pathname, watch, query, user: user?.username };
    this.requests.push(record);
    res.on('finish', () => { record.status = res.statusCode; });
    if (url.pathname === '/healthz' || url.pathname === '/readyz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }
    if (user === undefined) return this.#status(res, 401, 'Unauthorized', 'Unauthorized');
    const failure = this.#failures.get(url.pathname);
    if (failure !== undefined && failure.remaining > 0) {
      failure.remaining--;
      return this.#status(res, failure.status, 'InternalError', 'injected failure');
    }
    const body = method === 'POST' || method === 'PUT' ? await readJson(req) : undefined;
    if (method === 'POST' && url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews') return this.#tokenReview(res, user, body);
    if (method === 'POST' && url.pathname === TOKEN_CLOCK_PATH) return this.#advanceTokenClock(res, user, body);

    const r = parseResourcePath(url.pathname);
    if (method === 'POST' && r?.plural === 'serviceaccounts' && r.subresource === 'token' && r.namespace !== undefined && r.name !== undefined) {
      return this.#tokenRequest(res, user, r.namespace, r.name, body);
    }
    const c = r === undefined ? undefined : this.#collections.get(`${r.apiVersion}/${r.plural}`);
    if (r === undefined || c === undefined || (r.namespace !== undefined && !c.kind.namespaced)) {
      return this.#status(res, 404, 'NotFound', `the server could not find the requested resource ${url.pathname}`);
    }
    const verb = method === 'GET' ? (r.name !== undefined ? 'get' : watch ? 'watch' : 'list')
      : method === 'POST' ? 'create' : method === 'PUT' ? 'update' : method === 'DELETE' ? 'delete' : method === 'PATCH' ? 'patch' : method.toLowerCase();
    if (!this.#allowed(user, verb, c.kind, r.plural, r.subresource, r.namespace, r.name)) {
      const scope = r.namespace === undefined ? 'at the cluster scope' : `in the namespace "${r.namespace}"`;
      return this.#status(res, 403, 'Forbidden', `${r.plural}${r.name === undefined ? '' : ` "${r.name}"`} is forbidden: User "${user.username}" cannot ${verb} resource "${r.plural}" in API group "${groupOf(c.kind.apiVersion)}" ${scope}`);
    }
    switch (verb) {
      case 'list': return this.#list(c, r.namespace, query, res);
      case 'watch': return this.#watch(c, r.namespace, query, res);
      case 'get': {
        const o = c.objects.get(keyOf(r.namespace, r.name ?? ''));
        return o === undefined ? this.#status(res, 404, 'NotFound', `${r.plural} "${r.name}" not found`) : this.#json(res, 200, o);
      }
      case 'create': return this.#create(c, r.namespace, body, res);
      case 'update': return this.#update(c, r.namespace, r.name ?? '', body, res, r.subresource);
      case 'delete': {
        const gone = this.#delete(c, keyOf(r.namespace, r.name ?? ''));
        return gone === undefined ? this.#status(res, 404, 'NotFound', `${r.plural} "${r.name}" not found`) : this.#json(res, 200, gone);
      }
      default: return this.#status(res, 405, 'MethodNotAllowed', `${method} is not supported here`);
    }
  }

  #allowed(user: ApiUser, verb: string, k: ResourceKind, resource: string, subresource: string | undefined, namespace: string | undefined, name: string | undefined): boolean {
    if (this.#options.rbac !== true) return true;
    return rbacAllows(this.#rbacObjects(), user, { verb, apiGroup: groupOf(k.apiVersion), resource, subresource, namespace, name });
  }

  #rbacObjects(): RbacObjects {
    const all = (plural: string): Body[] => [...(this.#collections.get(`rbac.authorization.k8s.io/v1/${plural}`)?.objects.values() ?? [])];
    return { roles: all('roles'), clusterRoles: all('clusterroles'), roleBindings: all('rolebindings'), clusterRoleBindings: all('clusterrolebindings') };
  }

  #tokenReview(res: http.ServerResponse, user: ApiUser, body: unknown): void {
    if (!this.#allowed(user, 'create', { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', plural: 'tokenreviews', namespaced: false }, 'tokenreviews', undefined, undefined, undefined)) {
      return this.#status(res, 403, 'Forbidden', `tokenreviews.authentication.k8s.io is forbidden: User "${user.username}" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope`);
    }
    const spec = ((body as Body | undefined)?.spec ?? {}) as { token?: unknown; audiences?: unknown };
    if (typeof spec.token !== 'string') return this.#status(res, 400, 'BadRequest', 'spec.token is required');
    const audiences = Array.isArray(spec.audiences) ? spec.audiences.filter((a): a is string => typeof a === 'string') : undefined;
    const status = this.tokens.review(spec.token, audiences);
    this.#json(res, 201, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: { creationTimestamp: null }, spec, status });
  }

  /** The simulator's own verb (administrator only): token time moves on by `{seconds}`, so tokens expire without waiting an hour. */
  #advanceTokenClock(res: http.ServerResponse, user: ApiUser, body: unknown): void {
    if (user.username !== ADMIN.username) return this.#status(res, 403, 'Forbidden', `User "${user.username}" cannot move the token clock`);
    const seconds = (body as Body | undefined)?.seconds;
    if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds <= 0) return this.#status(res, 400, 'BadRequest', 'seconds must be a positive number');
    this.tokens.advance(seconds);
    this.#json(res, 200, { advancedSeconds: seconds });
  }

  /** TokenRequest (`POST .../serviceaccounts/NAME/token`), what the kubelet calls for a projected token: bound to a pod and its node when `boundObjectRef` names a Pod. */
  #tokenRequest(res: http.ServerResponse, user: ApiUser, namespace: string, name: string, body: unknown): void {
    const kind: ResourceKind = { kind: 'ServiceAccount', apiVersion: 'v1', plural: 'serviceaccounts', namespaced: true };
    if (!this.#allowed(user, 'create', kind, 'serviceaccounts', 'token', namespace, name)) {
      return this.#status(res, 403, 'Forbidden', `serviceaccounts "${name}" is forbidden: User "${user.username}" cannot create resource "serviceaccounts/token" in API group "" in the namespace "${namespace}"`);
    }
    if (this.#collections.get('v1/serviceaccounts')?.objects.has(keyOf(namespace, name)) !== true) {
      return this.#status(res, 404, 'NotFound', `serviceaccounts "${name}" not found`);
    }
    const spec = ((body as Body | undefined)?.spec ?? {}) as { audiences?: unknown; expirationSeconds?: unknown; boundObjectRef?: { kind?: unknown; name?: unknown; uid?: unknown } };
    const audiences = Array.isArray(spec.audiences) && spec.audiences.length > 0 ? spec.audiences.map(String) : [API_AUDIENCE];
    const expirationSeconds = typeof spec.expirationSeconds === 'number' ? spec.expirationSeconds : 3600;
    if (expirationSeconds < 600) return this.#status(res, 422, 'Invalid', 'spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes');
    let pod: { name: string; uid: string } | undefined;
    let node: { name: string } | undefined;
    const ref = spec.boundObjectRef;
    if (ref !== undefined) {
      const bound = ref.kind === 'Pod' ? this.#collections.get('v1/pods')?.objects.get(keyOf(namespace, String(ref.name))) : undefined;
      const md = bound?.metadata as Body | undefined;
      if (bound === undefined || (ref.uid !== undefined && md?.uid !== ref.uid)) return this.#status(res, 404, 'NotFound', `the bound object ${String(ref.kind)} "${String(ref.name)}" was not found`);
      pod = { name: String(ref.name), uid: String(md?.uid) };
      const nodeName = (bound.spec as Body | undefined)?.nodeName;
      if (typeof nodeName === 'string') node = { name: nodeName };
    }
    const token = this.tokens.issue({ namespace, serviceAccount: name, audiences, expirationSeconds, ...(pod === undefined ? {} : { pod }), ...(node === undefined ? {} : { node }) });
    const expirationTimestamp = new Date(Date.now() + expirationSeconds * 1000).toISOString();
    this.#json(res, 201, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', metadata: { name, namespace }, spec: { ...spec, audiences, expirationSeconds }, status: { token, expirationTimestamp } });
  }

  #create(c: Collection, namespace: string | undefined, body: unknown, res: http.ServerResponse): void {
    if (typeof body !== 'object' || body === null) return this.#status(res, 400, 'BadRequest', 'the body must be a JSON object');
    const o = body as Body;
    const md = (o.metadata ?? {}) as Body;
    if (typeof md.name !== 'string' || md.name === '') return this.#status(res, 422, 'Invalid', 'metadata.name: Required value');
    if (namespace !== undefined && md.namespace !== undefined && md.namespace !== namespace) {
      return this.#status(res, 400, 'BadRequest', `the namespace of the provided object (${JSON.stringify(md.namespace)}) does not match the namespace sent on the request (${namespace})`);
    }
    if (c.kind.namespaced && namespace === undefined) return this.#status(res, 404, 'NotFound', 'a namespaced object is created in its namespace\'s collection');
    if (c.objects.has(keyOf(namespace, md.name))) return this.#status(res, 409, 'AlreadyExists', `${c.kind.plural} "${md.name}" already exists`);
    const invalid = this.#invalid(c, o);
    if (invalid !== undefined) return this.#status(res, 422, 'Invalid', invalid);
    const rest = { ...md };
    delete rest.resourceVersion; // a create starts the object's history
    this.#json(res, 201, this.#put(c, { ...o, metadata: { ...rest, ...(namespace === undefined ? {} : { namespace }) } }));
  }

  /** PUT of an object, or of its `status` subresource (only status is taken from the body, as for a CRD with the status subresource). */
  #update(c: Collection, namespace: string | undefined, name: string, body: unknown, res: http.ServerResponse, subresource?: string): void {
    if (subresource !== undefined && subresource !== 'status') return this.#status(res, 404, 'NotFound', `${c.kind.plural} has no subresource ${subresource}`);
    if (typeof body !== 'object' || body === null) return this.#status(res, 400, 'BadRequest', 'the body must be a JSON object');
    const o = body as Body;
    const md = (o.metadata ?? {}) as Body;
    if (md.name !== name) return this.#status(res, 400, 'BadRequest', `the name of the object (${String(md.name)}) does not match the name on the URL (${name})`);
    const old = c.objects.get(keyOf(namespace, name));
    if (old === undefined) return this.#status(res, 404, 'NotFound', `${c.kind.plural} "${name}" not found`);
    const current = (old.metadata as Body).resourceVersion;
    if (md.resourceVersion !== undefined && md.resourceVersion !== current) {
      return this.#status(res, 409, 'Conflict', `Operation cannot be fulfilled on ${c.kind.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
    }
    if (subresource === 'status') {
      this.#json(res, 200, this.#put(c, { ...old, status: o.status, metadata: { ...(old.metadata as Body) } }));
      return;
    }
    const invalid = this.#invalid(c, o);
    if (invalid !== undefined) return this.#status(res, 422, 'Invalid', invalid);
    this.#json(res, 200, this.#put(c, { ...o, metadata: { ...md, ...(namespace === undefined ? {} : { namespace }) } }));
  }

  #invalid(c: Collection, o: Body): string | undefined {
    const validate = this.#options.validateCustom;
    const crd = validate === undefined ? undefined : this.#crdOf(c.kind);
    if (validate === undefined || crd === undefined) return undefined;
    const problems = validate(crd, c.kind.apiVersion.split('/')[1] ?? '', o);
    return problems.length === 0 ? undefined : `${c.kind.kind} "${String((o.metadata as Body | undefined)?.name)}" is invalid: ${problems.join('; ')}`;
  }

  #list(c: Collection, namespace: string | undefined, query: Record<string, string>, res: http.ServerResponse): void {
    const limit = query.limit === undefined ? Infinity : Number(query.limit);
    let page: { items: Body[]; rv: number; offset: number };
    if (query.continue !== undefined) {
      const p = this.#pages.get(query.continue);
      if (p === undefined) return this.#status(res, 410, 'Expired', 'continue token expired');
      page = p;
    } else {
      const items = [...c.objects.entries()].filter(([k]) => namespace === undefined || k.startsWith(`${namespace}/`)).sort(([a], [b]) => (a < b ? -1 : 1)).map(([, o]) => o);
      page = { items, rv: this.#rv, offset: 0 };
    }
    const items = page.items.slice(page.offset, page.offset + limit).map(({ kind: _k, apiVersion: _a, ...rest }) => rest);
    const metadata: Record<string, string> = { resourceVersion: String(page.rv) };
    if (page.offset + limit < page.items.length) {
      const token = `t${this.#pages.size + 1}`;
      this.#pages.set(token, { ...page, offset: page.offset + limit });
      metadata.continue = token;
    }
    // As the real server does, list items carry no kind or apiVersion.
    this.#json(res, 200, { kind: `${c.kind.kind}List`, apiVersion: c.kind.apiVersion, metadata, items });
  }

  #watch(c: Collection, namespace: string | undefined, query: Record<string, string>, res: http.ServerResponse): void {
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
    for (const e of c.events) {
      if (e.rv > from && (namespace === undefined || (e.object.metadata as Body).namespace === namespace)) this.#send(res, { type: e.type, object: e.object });
    }
    const w: OpenWatch = { collection: c, namespace, res, bookmarks: query.allowWatchBookmarks === 'true' };
    this.#watches.add(w);
    res.on('close', () => this.#watches.delete(w));
  }
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 16 * 1024 * 1024) return undefined;
    chunks.push(c);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

