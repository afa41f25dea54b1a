// The few objects the control plane writes to the Kubernetes API: the CA Secret (read,
// created once, replaced with its resourceVersion) and the trust-bundle ConfigMap it
// publishes in every namespace, as istiod does with istio-ca-root-cert. Auth and TLS come
// from the KubeAccess (source/kube-access.ts).

import type { KubeAccess } from './source/kube-access.ts';
import { ApiStatusError, kubeJson } from './source/kube-http.ts';
import { describeError } from '../core/errors.ts';
import type { ControlLogger } from './logger.ts';

/** One Secret's decoded data, with conflicts flagged as `conflict: true` (the shape src/identity's SecretClient asks for). */
export interface KubernetesSecret {
  readonly name: string;
  read(): Promise<{ readonly data: Readonly<Record<string, string>>; readonly version: string } | undefined>;
  create(data: Readonly<Record<string, string>>): Promise<string>;
  replace(data: Readonly<Record<string, string>>, version: string): Promise<string>;
}

const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'weft' };

function status(err: unknown): number | undefined {
  return err instanceof ApiStatusError ? err.statusCode : undefined;
}

function conflict(err: unknown, what: string): Error {
  return Object.assign(new Error(`${what}: HTTP 409 Conflict`, { cause: err }), { conflict: true });
}

const encode = (data: Readonly<Record<string, string>>): Record<string, string> =>
  Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]));

interface ObjectBody {
  readonly metadata?: { readonly resourceVersion?: string };
  readonly data?: Readonly<Record<string, string>>;
}

const TIMEOUT_MS = 30_000;
const secretsPath = (namespace: string): string => `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`;
const configMapsPath = (namespace: string): string => `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps`;

export function kubernetesSecret(access: KubeAccess, namespace: string, name: string): KubernetesSecret {
  const call = async (method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<ObjectBody> => (await kubeJson(access, { method, path, body, timeoutMs: TIMEOUT_MS })) as ObjectBody;
  const one = `${secretsPath(namespace)}/${encodeURIComponent(name)}`;
  const where = `${namespace}/${name}`;
  return {
    name: where,
    async read() {
      try {
        const s = await call('GET', one);
        const data = Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
        return { data, version: s.metadata?.resourceVersion ?? '' };
      } catch (err: unknown) {
        if (status(err) === 404) return undefined;
        throw err;
      }
    },
    async create(data) {
      try {
        const s = await call('POST', secretsPath(namespace), { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name, namespace, labels: MANAGED_BY }, data: encode(data) });
        return s.metadata?.resourceVersion ?? '';
      } catch (err: unknown) {
        if (status(err) === 409) throw conflict(err, `creating Secret ${where}`);
        throw err;
      }
    },
    async replace(data, version) {
      try {
        const s = await call('PUT', one, { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name, namespace, labels: MANAGED_BY, resourceVersion: version }, data: encode(data) });
        return s.metadata?.resourceVersion ?? '';
      } catch (err: unknown) {
        if (status(err) === 409) throw conflict(err, `replacing Secret ${where}`);
        throw err;
      }
    },
  };
}

export const TRUST_BUNDLE_KEY = 'root-cert.pem';
const REPUBLISH_MS = 30_000;

/**
 * Keeps ConfigMap `name` (key root-cert.pem) holding the trust bundle in every namespace it
 * is told about, so any pod can mount the mesh's root. Each namespace is written when it is
 * new or its copy differs; failures (a namespace being deleted, a race with the other
 * replica) are retried on the next call or after 30 s.
 */
export class TrustBundlePublisher {
  readonly #access: KubeAccess;
  readonly #name: string;
  readonly #log: ControlLogger;
  /** Namespace -> the PEM we know it holds. */
  readonly #published = new Map<string, string>();
  #wanted: { namespaces: readonly string[]; pem: string } | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(access: KubeAccess, name: string, log: ControlLogger) {
    this.#access = access;
    this.#name = name;
    this.#log = log;
  }

  /** Asks for the bundle in exactly these namespaces; resolves when this round is done. */
  publish(namespaces: readonly string[], pem: string): Promise<void> {
    this.#wanted = { namespaces, pem };
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#loop().finally(() => { this.#running = undefined; });
    return this.#running;
  }

  async #loop(): Promise<void> {
    do {
      this.#again = false;
      const wanted = this.#wanted;
      if (wanted === undefined || this.#closed) return;
      let failed = 0;
      for (const ns of wanted.namespaces) {
        if (this.#closed) return;
        if (this.#published.get(ns) === wanted.pem) continue;
        try {
          await this.#write(ns, wanted.pem);
          this.#published.set(ns, wanted.pem);
        } catch (err: unknown) {
          failed++;
          this.#log.warn({ namespace: ns, configMap: this.#name, err: describeError(err) }, 'could not publish the trust bundle; will retry');
        }
      }
      const live = new Set(wanted.namespaces);
      for (const ns of this.#published.keys()) if (!live.has(ns)) this.#published.delete(ns);
      clearTimeout(this.#retry);
      if (failed > 0 && !this.#closed) {
        this.#retry = setTimeout(() => void this.publish(wanted.namespaces, wanted.pem), REPUBLISH_MS);
        this.#retry.unref();
      }
    } while (this.#again);
  }

  async #write(namespace: string, pem: string): Promise<void> {
    const body = (resourceVersion?: string): Record<string, unknown> => ({
      apiVersion: 'v1', kind: 'ConfigMap',
      metadata: { name: this.#name, namespace, labels: MANAGED_BY, ...(resourceVersion === undefined ? {} : { resourceVersion }) },
      data: { [TRUST_BUNDLE_KEY]: pem },
    });
    const one = `${configMapsPath(namespace)}/${encodeURIComponent(this.#name)}`;
    let current: ObjectBody | undefined;
    try {
      current = (await kubeJson(this.#access, { path: one, timeoutMs: TIMEOUT_MS })) as ObjectBody;
    } catch (err: unknown) {
      if (status(err) !== 404) throw err;
    }
    if (current === undefined) {
      await kubeJson(this.#access, { method: 'POST', path: configMapsPath(namespace), body: body(), timeoutMs: TIMEOUT_MS });
      this.#log.info({ namespace, configMap: this.#name }, 'published the trust bundle');
      return;
    }
    if (current.data?.[TRUST_BUNDLE_KEY] === pem) return;
    await kubeJson(this.#access, { method: 'PUT', path: one, body: body(current.metadata?.resourceVersion), timeoutMs: TIMEOUT_MS });
    this.#log.info({ namespace, configMap: this.#name }, 'updated the published trust bundle');
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
  }
}
