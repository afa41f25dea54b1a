// Writes HTTPRoute and GRPCRoute status back through the API's status subresource, as
// Gateway API asks of every implementation: weft's entries in status.parents (controllerName
// weft.dev/mesh) replaced, other controllers' entries kept as they are, a condition's
// lastTransitionTime kept while its status stays. Read-modify-write on the informer's copy
// with its resourceVersion; a conflict (someone wrote meanwhile) is retried from the fresh
// copy. Writes go one at a time; nothing is written when weft's entries already say it.

import type { KubeAccess } from './source/kube-access.ts';
import { ApiStatusError, kubeJson } from './source/kube-http.ts';
import { describeError } from '../core/errors.ts';
import type { RouteParentStatus } from '../model/route-check.ts';
import { GATEWAY_GROUP, WEFT_CONTROLLER_NAME } from '../model/route-types.ts';
import type { ControlLogger } from './logger.ts';

type Body = Record<string, unknown>;

/** Where the writer reads each route as last listed or watched (KubernetesSource.object). */
export interface RouteObjectCache {
  object(kind: string, namespace: string, name: string): Body | undefined;
}

/** The one call the writer makes to the API; a test double or kubernetesStatusPut. */
export type StatusPut = (route: { kind: string; namespace: string; name: string }, body: Body) => Promise<void>;

export interface RouteStatusWriterOptions {
  readonly objects: RouteObjectCache;
  readonly put: StatusPut;
  readonly log: ControlLogger;
  /** Delay before retrying after a conflict or an error (default 1 s). */
  readonly retryMs?: number;
  readonly now?: () => Date;
}

const PLURAL: Readonly<Record<string, string>> = { HTTPRoute: 'httproutes', GRPCRoute: 'grpcroutes' };

/** The status subresource PUT for Gateway API routes. */
export function kubernetesStatusPut(access: KubeAccess): StatusPut {
  return async (route, body) => {
    const path = `/apis/${GATEWAY_GROUP}/v1/namespaces/${encodeURIComponent(route.namespace)}/${PLURAL[route.kind] ?? ''}/${encodeURIComponent(route.name)}/status`;
    await kubeJson(access, { method: 'PUT', path, body, timeoutMs: 30_000 });
  };
}

function isRecord(v: unknown): v is Body {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A parentRef as the status repeats it: only the fields the spec's entry sets, group "" kept. */
function parentRefBody(p: RouteParentStatus['parentRef']): Body {
  const out: Body = { group: p.group, kind: p.kind, namespace: p.namespace, name: p.name };
  if (p.port !== undefined) out.port = p.port;
  if (p.sectionName !== undefined) out.sectionName = p.sectionName;
  return out;
}

const sameRef = (a: Body, b: Body): boolean => ['group', 'kind', 'namespace', 'name', 'port', 'sectionName'].every((k) => a[k] === b[k]);

/** status.parents with weft's entries replaced by `ours`; the same array (by value) when nothing changes. */
export function mergeParents(current: readonly Body[], ours: readonly RouteParentStatus[], generation: number | undefined, now: string): Body[] {
  const others = current.filter((p) => p.controllerName !== WEFT_CONTROLLER_NAME);
  const previous = current.filter((p) => p.controllerName === WEFT_CONTROLLER_NAME);
  const mine = ours.map((s): Body => {
    const ref = parentRefBody(s.parentRef);
    const before = previous.find((p) => isRecord(p.parentRef) && sameRef(p.parentRef, ref));
    const oldConditions = Array.isArray(before?.conditions) ? before.conditions.filter(isRecord) : [];
    const conditions = s.conditions.map((c) => {
      const old = oldConditions.find((o) => o.type === c.type);
      const since = old !== undefined && old.status === c.status && typeof old.lastTransitionTime === 'string' ? old.lastTransitionTime : now;
      const cond: Body = { type: c.type, status: c.status, reason: c.reason, message: c.message, lastTransitionTime: since };
      if (generation !== undefined) cond.observedGeneration = generation;
      return cond;
    });
    return { parentRef: ref, controllerName: WEFT_CONTROLLER_NAME, conditions };
  });
  return [...others, ...mine];
}

export class RouteStatusWriter {
  readonly #objects: RouteObjectCache;
  readonly #put: StatusPut;
  readonly #log: ControlLogger;
  readonly #retryMs: number;
  readonly #now: () => Date;
  /** The latest desired entries, by `Kind/namespace/name`. */
  #desired = new Map<string, readonly RouteParentStatus[]>();
  /** What was last written per route, against which resourceVersion: not written again before the watch brings it back. */
  readonly #written = new Map<string, { readonly from: unknown; readonly parents: string }>();
  #running: Promise<void> | undefined;
  #again = false;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: RouteStatusWriterOptions) {
    this.#objects = options.objects;
    this.#put = options.put;
    this.#log = options.log;
    this.#retryMs = options.retryMs ?? 1000;
    this.#now = options.now ?? (() => new Date());
  }

  /** The status weft wants for every route it knows; writes what differs, in the background. */
  update(desired: ReadonlyMap<string, readonly RouteParentStatus[]>): void {
    this.#desired = new Map(desired);
    for (const key of [...this.#written.keys()]) if (!desired.has(key)) this.#written.delete(key);
    this.#kick();
  }

  /** Resolves when the writes asked for so far are done (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  close(): void {
    this.#closed = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
  }

  #kick(): void {
    if (this.#closed) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    this.#running = this.#writeAll().finally(() => {
      this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        this.#kick();
      }
    });
  }

  async #writeAll(): Promise<void> {
    let failed = false;
    for (const [key, ours] of this.#desired) {
      if (this.#closed) return;
      const [kind = '', namespace = '', name = ''] = key.split('/');
      const current = this.#objects.object(kind, namespace, name);
      if (current === undefined) continue; // gone, or not listed yet: nothing to write to
      const md = isRecord(current.metadata) ? current.metadata : {};
      const status = isRecord(current.status) ? current.status : {};
      const parents = Array.isArray(status.parents) ? status.parents.filter(isRecord) : [];
      const merged = mergeParents(parents, ours, typeof md.generation === 'number' ? md.generation : undefined, this.#now().toISOString());
      const text = JSON.stringify(merged);
      if (text === JSON.stringify(parents)) continue;
      const last = this.#written.get(key);
      if (last !== undefined && last.from === md.resourceVersion && last.parents === text) continue;
      try {
        await this.#put({ kind, namespace, name }, { ...current, status: { ...status, parents: merged } });
        this.#written.set(key, { from: md.resourceVersion, parents: text });
      } catch (err: unknown) {
        failed = true;
        const conflict = err instanceof ApiStatusError && err.statusCode === 409;
        // A conflict is normal (the object changed under us): the next try starts from the informer's fresh copy.
        if (conflict) this.#log.info({ route: key }, 'route status write conflicted; retrying from the newer copy');
        else this.#log.warn({ route: key, err: describeError(err) }, 'could not write route status; retrying');
      }
    }
    if (failed && !this.#closed) {
      if (this.#retry !== undefined) clearTimeout(this.#retry);
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        this.#kick();
      }, this.#retryMs);
      this.#retry.unref();
    }
  }
}
