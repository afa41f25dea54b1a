// The Kubernetes API as a config source: one informer (informer.ts) per kind.
// Each informer lists (paginated), then watches from the list's resourceVersion with
// bookmarks; it relists on 410 Gone. This class adds what the informer leaves to
// its caller: restarting after errors with capped exponential backoff, waiting for every
// kind's first list before the first snapshot, treating a kind the API does not serve
// (CRD not installed) as a reported problem instead of a hang, a close() that really
// ends every request, and, for Nodes, ignoring status updates the mesh does not read.
//
// At scale (startChanges, what the control plane uses): each object's change is delivered
// on its own (added, changed, gone; coalesced per object within the debounce window), not
// the whole cache again; Pods and Nodes are cut down to what the mesh reads as they arrive,
// so the informer's cache holds that and not the full objects; a watch that ends or fails
// resumes from its resourceVersion, relisting only on 410 Gone.

import type { ManifestProblem } from '../../model/manifests.ts';
import type { RawObject } from '../../model/types.ts';
import { WEFT_API_VERSION } from '../../model/types.ts';
import { isRecord } from '../../model/fields.ts';
import { GATEWAY_API_VERSION } from '../../model/route-types.ts';
import { describeError } from '../../core/errors.ts';
import { silentLogger, type ChangeListener, type ConfigSource, type SnapshotListener, type SourceLogger } from './contract.ts';
import { Debouncer } from './debounce.ts';
import { sourceError, SourceErrors } from './errors.ts';
import { ApiStatusError, listAll } from './kube-list.ts';
import type { KubeAccess } from './kube-access.ts';
import { Informer } from './informer.ts';

type KubernetesObject = Record<string, unknown>;

export interface WatchedKind {
  readonly kind: string;
  readonly apiVersion: string;
  /** Cluster-wide collection path. */
  readonly path: string;
  /**
   * The part of an object the mesh reads. When given, snapshots carry only that part and
   * an update that leaves it unchanged makes no snapshot.
   */
  readonly relevant?: (body: Record<string, unknown>) => Record<string, unknown>;
  /**
   * Keep only `relevant` (plus name, namespace and resourceVersion) in the informer's cache:
   * for kinds with many big objects (Pods) whose full form the control plane never needs.
   */
  readonly compact?: boolean;
  /**
   * A kind a cluster may well not serve (Gateway API routes need their CRDs): a 404 counts
   * as an empty list, said once in the log rather than as a problem on every snapshot.
   */
  readonly optional?: boolean;
}

/**
 * A Node as the model reads it: name, labels, addresses. The kubelet rewrites a Node's
 * status (conditions, images) every few minutes; those updates must not rebuild the mesh.
 */
export function nodeFields(body: Record<string, unknown>): Record<string, unknown> {
  const md = isRecord(body.metadata) ? body.metadata : {};
  const status = isRecord(body.status) ? body.status : {};
  const metadata: Record<string, unknown> = { name: md.name };
  if (md.labels !== undefined) metadata.labels = md.labels;
  return { metadata, status: status.addresses === undefined ? {} : { addresses: status.addresses } };
}

function pick(from: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (from[k] !== undefined) out[k] = from[k];
  return out;
}

/**
 * A Pod as the model reads it: identity, labels, where it runs, its service account, its
 * containers' names, images and ports, its IP and phase. A real Pod is mostly status and
 * spec the mesh never reads (kilobytes each): at 50,000 pods that is most of the memory.
 */
export function podFields(body: Record<string, unknown>): Record<string, unknown> {
  const md = isRecord(body.metadata) ? body.metadata : {};
  const spec = isRecord(body.spec) ? body.spec : {};
  const status = isRecord(body.status) ? body.status : {};
  const out: Record<string, unknown> = { metadata: pick(md, ['name', 'namespace', 'labels', 'uid']) };
  const containers = Array.isArray(spec.containers) ? spec.containers.map((c: unknown) => (isRecord(c) ? pick(c, ['name', 'image', 'ports']) : c)) : spec.containers;
  out.spec = pick({ ...spec, containers }, ['nodeName', 'serviceAccountName', 'hostNetwork', 'containers']);
  out.status = pick(status, ['podIP', 'phase']);
  return out;
}

/**
 * A route as the model reads it: identity, age, generation and spec. Status is left out, so
 * the status weft writes back (and other controllers' entries) makes no snapshot.
 */
export function routeFields(body: Record<string, unknown>): Record<string, unknown> {
  const md = isRecord(body.metadata) ? body.metadata : {};
  const metadata: Record<string, unknown> = {};
  for (const k of ['name', 'namespace', 'labels', 'annotations', 'creationTimestamp', 'generation']) if (md[k] !== undefined) metadata[k] = md[k];
  return { metadata, spec: body.spec };
}

export const WATCHED_KINDS: readonly WatchedKind[] = Object.freeze([
  { kind: 'Namespace', apiVersion: 'v1', path: '/api/v1/namespaces' },
  { kind: 'Pod', apiVersion: 'v1', path: '/api/v1/pods', relevant: podFields, compact: true },
  { kind: 'Service', apiVersion: 'v1', path: '/api/v1/services' },
  { kind: 'ServiceAccount', apiVersion: 'v1', path: '/api/v1/serviceaccounts' },
  { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', path: '/apis/discovery.k8s.io/v1/endpointslices' },
  { kind: 'AuthorizationPolicy', apiVersion: WEFT_API_VERSION, path: `/apis/${WEFT_API_VERSION}/authorizationpolicies` },
  // Where other nodes' agents listen (the tunnel on 15008).
  { kind: 'Node', apiVersion: 'v1', path: '/api/v1/nodes', relevant: nodeFields, compact: true },
  // Gateway API (GAMMA): routes whose parent is a Service.
  { kind: 'HTTPRoute', apiVersion: GATEWAY_API_VERSION, path: `/apis/${GATEWAY_API_VERSION}/httproutes`, relevant: routeFields, optional: true },
  { kind: 'GRPCRoute', apiVersion: GATEWAY_API_VERSION, path: `/apis/${GATEWAY_API_VERSION}/grpcroutes`, relevant: routeFields, optional: true },
  // weft's own; optional so that a cluster without its CRD yet still runs (nothing is STRICT then).
  { kind: 'PeerAuthentication', apiVersion: WEFT_API_VERSION, path: `/apis/${WEFT_API_VERSION}/peerauthentications`, optional: true },
  { kind: 'DestinationPolicy', apiVersion: WEFT_API_VERSION, path: `/apis/${WEFT_API_VERSION}/destinationpolicies`, optional: true },
  { kind: 'RateLimitPolicy', apiVersion: WEFT_API_VERSION, path: `/apis/${WEFT_API_VERSION}/ratelimitpolicies`, optional: true },
  { kind: 'FaultInjection', apiVersion: WEFT_API_VERSION, path: `/apis/${WEFT_API_VERSION}/faultinjections`, optional: true },
]);

export interface KubernetesSourceOptions {
  readonly access: KubeAccess;
  readonly kinds?: readonly WatchedKind[];
  /** Quiet time after the last event before a snapshot (default 50 ms). */
  readonly debounceMs?: number;
  /** Under steady churn, the longest an event waits to be delivered (default 200 ms). */
  readonly maxDelayMs?: number;
  /** Items per list page (default 500). */
  readonly pageSize?: number;
  /** Restart delay after an error: initialMs doubling up to maxMs (default 1 s .. 30 s). Also caps the informers' re-watch delay. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** How long start() waits for every kind's first list (default 60 s). */
  readonly syncTimeoutMs?: number;
  /** Timeout of one list request (default 60 s). */
  readonly requestTimeoutMs?: number;
  readonly log?: SourceLogger;
}

interface KindState {
  readonly kind: WatchedKind;
  readonly informer: Informer;
  synced: boolean;
  /** Set while the API answers 404 for the kind: reported as a problem. */
  unavailable: string | undefined;
  failures: number;
  retry: NodeJS.Timeout | undefined;
  /** For kinds with `relevant`: the relevant part of each cached object, as JSON, by namespace/name (snapshot mode). */
  readonly seen: Map<string, string>;
}

/** An object delivered in changes mode, or gone. */
interface Pending {
  readonly body: Record<string, unknown>;
  readonly gone: boolean;
}

/** What a compact kind keeps of an object: `relevant`, and what the informer needs (name, namespace, resourceVersion). */
function compactor(kind: WatchedKind): (o: Record<string, unknown>) => Record<string, unknown> {
  const relevant = kind.relevant;
  if (kind.compact !== true || relevant === undefined) return (o) => o;
  return (o) => {
    const md = isRecord(o.metadata) ? o.metadata : {};
    const r = relevant(o);
    return { ...r, metadata: { ...(isRecord(r.metadata) ? r.metadata : {}), ...pick(md, ['name', 'namespace', 'resourceVersion']) } };
  };
}

function objectKey(o: KubernetesObject): string {
  const md = isRecord(o.metadata) ? o.metadata : {};
  return `${typeof md.namespace === 'string' ? md.namespace : ''}/${typeof md.name === 'string' ? md.name : ''}`;
}

/** Objects that are valid in a cluster but have no place in the mesh model, dropped without a problem. */
function outOfModel(kind: string, body: Record<string, unknown>): boolean {
  if (kind !== 'Service') return false;
  const spec = body.spec as { clusterIP?: unknown; type?: unknown } | undefined;
  // Headless and ExternalName Services have no virtual IP to capture.
  return spec?.type === 'ExternalName' || spec?.clusterIP === undefined || spec.clusterIP === 'None' || spec.clusterIP === '';
}

export class KubernetesSource implements ConfigSource {
  readonly #access: KubeAccess;
  readonly #kinds: readonly WatchedKind[];
  readonly #pageSize: number;
  readonly #backoff: { readonly initialMs: number; readonly maxMs: number };
  readonly #syncTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  readonly #log: SourceLogger;
  readonly #debouncer: Debouncer;
  readonly #abort = new AbortController();
  readonly #states: KindState[] = [];
  #listener: SnapshotListener | undefined;
  #changes: ChangeListener | undefined;
  /** Changes mode: what to deliver next, per kind and namespace/name (the newest event of each object wins). */
  readonly #pending = new Map<string, Pending>();
  #onSynced: (() => void) | undefined;
  #phase: 'new' | 'syncing' | 'running' | 'closed' = 'new';

  constructor(options: KubernetesSourceOptions) {
    this.#access = options.access;
    this.#kinds = options.kinds ?? WATCHED_KINDS;
    this.#pageSize = options.pageSize ?? 500;
    this.#backoff = options.backoff ?? { initialMs: 1000, maxMs: 30_000 };
    this.#syncTimeoutMs = options.syncTimeoutMs ?? 60_000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
    this.#log = options.log ?? silentLogger;
    this.#debouncer = new Debouncer(options.debounceMs ?? 50, () => Promise.resolve().then(() => this.#emit()), (err) => {
      this.#log.warn({ err: describeError(err) }, 'kubernetes snapshot failed');
    }, options.maxDelayMs ?? 200);
  }

  /** Snapshot mode: every delivery is the whole cache. */
  start(onSnapshot: SnapshotListener): Promise<void> {
    return this.#start(() => { this.#listener = onSnapshot; });
  }

  /** Changes mode: the first delivery is every object, then each change of an object, O(the change). */
  startChanges(onChange: ChangeListener): Promise<void> {
    return this.#start(() => { this.#changes = onChange; });
  }

  async #start(listen: () => void): Promise<void> {
    if (this.#phase !== 'new') throw sourceError(SourceErrors.BAD_STATE, 'this Kubernetes source was already started or closed');
    this.#phase = 'syncing';
    listen();
    const synced = new Promise<void>((resolve) => { this.#onSynced = resolve; });
    for (const kind of this.#kinds) this.#states.push(this.#informer(kind));
    for (const st of this.#states) this.#run(st);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#syncTimeoutMs);
      timer.unref();
    });
    const outcome = await Promise.race([synced, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      const pending = this.#states.filter((s) => !s.synced).map((s) => s.kind.kind);
      await this.close();
      throw sourceError(SourceErrors.SYNC_TIMEOUT, `no complete list of ${pending.join(', ')} from the Kubernetes API within ${this.#syncTimeoutMs} ms`);
    }
    if (this.#phase !== 'syncing') return; // closed meanwhile
    this.#phase = 'running';
    this.#emit();
  }

  #informer(kind: WatchedKind): KindState {
    const keep = compactor(kind);
    // The closures below run only after start() has this state in hand.
    const list = async () => {
      const result = await listAll({
        access: this.#access, path: kind.path, kind: kind.kind, apiVersion: kind.apiVersion,
        pageSize: this.#pageSize, signal: this.#abort.signal, timeoutMs: this.#requestTimeoutMs, keep,
      });
      if (this.#phase === 'closed') throw new Error('source closed');
      this.#listed(state);
      return result;
    };
    const informer = new Informer({ access: this.#access, path: kind.path, list, keep, maxDelayMs: this.#backoff.maxMs });
    const changed = (): void => {
      state.failures = 0;
      if (this.#phase === 'running') this.#debouncer.trigger();
    };
    const relevant = kind.relevant;
    const state: KindState = { kind, informer, synced: false, unavailable: undefined, failures: 0, retry: undefined, seen: new Map() };
    if (this.#changes !== undefined) {
      // Changes mode: each object's event is queued (the newest per object wins) and delivered on the debounce.
      const file = `kubernetes:${kind.path}`;
      const queue = (o: KubernetesObject, gone: boolean): void => {
        const raw: Record<string, unknown> = o;
        const body = { ...(relevant === undefined || kind.compact === true ? raw : relevant(raw)), kind: kind.kind, apiVersion: kind.apiVersion };
        this.#pending.set(`${file}\0${objectKey(o)}`, { body, gone: gone || outOfModel(kind.kind, body) });
        changed();
      };
      informer.on('add', (o: KubernetesObject) => queue(o, false));
      informer.on('update', (o: KubernetesObject) => queue(o, false));
      informer.on('delete', (o: KubernetesObject) => queue(o, true));
      informer.onError((err: unknown) => this.#failed(state, err));
      return state;
    }
    if (relevant === undefined) {
      informer.on('add', changed);
      informer.on('update', changed);
    } else {
      const upsert = (o: KubernetesObject): void => {
        const key = objectKey(o);
        const now = JSON.stringify(relevant(o));
        if (state.seen.get(key) === now) return;
        state.seen.set(key, now);
        changed();
      };
      informer.on('add', upsert);
      informer.on('update', upsert);
      informer.on('delete', (o: KubernetesObject) => void state.seen.delete(objectKey(o)));
    }
    informer.on('delete', changed);
    informer.onError((err: unknown) => this.#failed(state, err));
    return state;
  }

  #run(state: KindState): void {
    state.informer.start().catch((err: unknown) => this.#failed(state, err));
  }

  #listed(state: KindState): void {
    state.failures = 0;
    const wasUnavailable = state.unavailable !== undefined;
    state.unavailable = undefined;
    if (wasUnavailable && this.#phase === 'running') this.#debouncer.trigger();
    // Called from inside the list function: the informer fills its cache right after it
    // returns (in a microtask), so count the kind as synced only after that has run.
    setImmediate(() => this.#markSynced(state));
  }

  #markSynced(state: KindState): void {
    state.synced = true;
    if (this.#phase === 'syncing' && this.#states.every((s) => s.synced)) this.#onSynced?.();
  }

  #failed(state: KindState, err: unknown): void {
    if (this.#phase === 'closed') return;
    const status = err instanceof ApiStatusError ? err.statusCode : undefined;
    if (status === 404 && state.kind.optional === true) {
      // Not installed, and fine without: empty; said once, looked for again now and then.
      if (!state.synced) this.#log.info({ kind: state.kind.kind, path: state.kind.path }, 'the API does not serve this kind (its CustomResourceDefinition is not installed); treating it as empty');
      this.#markSynced(state);
    } else if (status === 404) {
      // The API does not serve this kind (e.g. weft's CRD is not installed): nothing to wait for.
      const message = `the API serves no ${state.kind.path} (HTTP 404); is the ${state.kind.kind} CustomResourceDefinition installed? Retrying.`;
      if (state.unavailable !== message) {
        state.unavailable = message;
        if (this.#phase === 'running') this.#debouncer.trigger();
      }
      this.#markSynced(state);
    }
    const delay = Math.min(this.#backoff.initialMs * 2 ** state.failures, this.#backoff.maxMs);
    state.failures++;
    if (!(status === 404 && state.kind.optional === true)) {
      this.#log.warn({ kind: state.kind.kind, err: describeError(err), retryInMs: delay }, 'kubernetes informer failed; restarting');
    }
    if (state.retry !== undefined) clearTimeout(state.retry);
    state.retry = setTimeout(() => {
      state.retry = undefined;
      if (this.#phase !== 'closed') this.#run(state);
    }, delay);
    state.retry.unref();
  }

  #emit(): void {
    if (this.#phase !== 'running') return;
    if (this.#changes !== undefined) {
      this.#emitChanges(this.#changes);
      return;
    }
    if (this.#listener === undefined) return;
    const objects: RawObject[] = [];
    const problems: ManifestProblem[] = [];
    for (const st of this.#states) {
      const file = `kubernetes:${st.kind.path}`;
      if (st.unavailable !== undefined) problems.push({ file, object: undefined, field: undefined, message: st.unavailable });
      const relevant = st.kind.relevant ?? ((b: Record<string, unknown>) => b);
      const items = st.informer.list().map((o) => ({ ...relevant(o), kind: st.kind.kind, apiVersion: st.kind.apiVersion }));
      const key = (b: Record<string, unknown>): string => {
        const md = (b.metadata ?? {}) as { namespace?: string; name?: string };
        return `${md.namespace ?? ''}/${md.name ?? ''}`;
      };
      items.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
      for (const body of items) if (!outOfModel(st.kind.kind, body)) objects.push({ kind: st.kind.kind, body, source: { file, doc: 0 } });
    }
    this.#listener(objects, problems);
  }

  #emitChanges(onChange: ChangeListener): void {
    const upserted: RawObject[] = [];
    const removed: RawObject[] = [];
    for (const [id, p] of this.#pending) {
      const raw: RawObject = { kind: String(p.body.kind), body: p.body, source: { file: id.slice(0, id.indexOf('\0')), doc: 0 } };
      (p.gone ? removed : upserted).push(raw);
    }
    this.#pending.clear();
    onChange({ upserted, removed, problems: this.#problems() });
  }

  #problems(): ManifestProblem[] {
    const problems: ManifestProblem[] = [];
    for (const st of this.#states) {
      if (st.unavailable !== undefined) problems.push({ file: `kubernetes:${st.kind.path}`, object: undefined, field: undefined, message: st.unavailable });
    }
    return problems;
  }

  /** The cached object as the API last gave it (status included), for writers such as the route status. */
  object(kind: string, namespace: string, name: string): Record<string, unknown> | undefined {
    const st = this.#states.find((s) => s.kind.kind === kind);
    return st?.informer.get(name, namespace === '' ? undefined : namespace);
  }

  async close(): Promise<void> {
    if (this.#phase === 'closed') return;
    this.#phase = 'closed';
    this.#onSynced?.();
    this.#abort.abort();
    for (const st of this.#states) {
      if (st.retry !== undefined) clearTimeout(st.retry);
      await st.informer.stop();
    }
    await this.#debouncer.close();
  }
}
