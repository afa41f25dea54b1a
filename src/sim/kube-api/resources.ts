// The simulated API server's map of resources: which kinds it serves, under which group,
// version and plural, cluster-scoped or namespaced, and how a request path names one of
// them (`/api/v1/namespaces/shop/pods/web-1`). Pure, so it is tested with tables.

export interface ResourceKind {
  readonly kind: string;
  /** `v1` for the core group, else `group/version`. */
  readonly apiVersion: string;
  /** Lowercase plural, as in the path. */
  readonly plural: string;
  readonly namespaced: boolean;
}

/** The built-in kinds a cluster running weft holds (what the chart and the mesh use). */
export const BUILTIN_KINDS: readonly ResourceKind[] = Object.freeze([
  { kind: 'Namespace', apiVersion: 'v1', plural: 'namespaces', namespaced: false },
  { kind: 'Node', apiVersion: 'v1', plural: 'nodes', namespaced: false },
  { kind: 'Pod', apiVersion: 'v1', plural: 'pods', namespaced: true },
  { kind: 'Service', apiVersion: 'v1', plural: 'services', namespaced: true },
  { kind: 'ServiceAccount', apiVersion: 'v1', plural: 'serviceaccounts', namespaced: true },
  { kind: 'Secret', apiVersion: 'v1', plural: 'secrets', namespaced: true },
  { kind: 'ConfigMap', apiVersion: 'v1', plural: 'configmaps', namespaced: true },
  { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', plural: 'endpointslices', namespaced: true },
  { kind: 'Deployment', apiVersion: 'apps/v1', plural: 'deployments', namespaced: true },
  { kind: 'DaemonSet', apiVersion: 'apps/v1', plural: 'daemonsets', namespaced: true },
  { kind: 'PodDisruptionBudget', apiVersion: 'policy/v1', plural: 'poddisruptionbudgets', namespaced: true },
  { kind: 'PriorityClass', apiVersion: 'scheduling.k8s.io/v1', plural: 'priorityclasses', namespaced: false },
  { kind: 'ClusterRole', apiVersion: 'rbac.authorization.k8s.io/v1', plural: 'clusterroles', namespaced: false },
  { kind: 'ClusterRoleBinding', apiVersion: 'rbac.authorization.k8s.io/v1', plural: 'clusterrolebindings', namespaced: false },
  { kind: 'Role', apiVersion: 'rbac.authorization.k8s.io/v1', plural: 'roles', namespaced: true },
  { kind: 'RoleBinding', apiVersion: 'rbac.authorization.k8s.io/v1', plural: 'rolebindings', namespaced: true },
  { kind: 'CustomResourceDefinition', apiVersion: 'apiextensions.k8s.io/v1', plural: 'customresourcedefinitions', namespaced: false },
]);

/** The API group of an apiVersion (`''` for the core group). */
export function groupOf(apiVersion: string): string {
  return apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
}

/** Where a kind's collection lives, cluster-wide: `/api/v1/pods`, `/apis/apps/v1/deployments`. */
export function collectionPath(k: Pick<ResourceKind, 'apiVersion' | 'plural'>): string {
  return `${k.apiVersion.includes('/') ? '/apis' : '/api'}/${k.apiVersion}/${k.plural}`;
}

/** The path of one object (or of its namespaced collection when `name` is undefined). */
export function objectPath(k: ResourceKind, namespace: string | undefined, name?: string): string {
  const base = `${k.apiVersion.includes('/') ? '/apis' : '/api'}/${k.apiVersion}`;
  const scope = k.namespaced && namespace !== undefined ? `/namespaces/${namespace}` : '';
  return `${base}${scope}/${k.plural}${name === undefined ? '' : `/${name}`}`;
}

export interface ResourceRequest {
  /** `v1` or `group/version`. */
  readonly apiVersion: string;
  readonly plural: string;
  /** The namespace of a namespaced request; undefined for cluster-wide and cluster-scoped ones. */
  readonly namespace: string | undefined;
  /** The object's name; undefined for a collection. */
  readonly name: string | undefined;
  /** `status` for /status; undefined otherwise. */
  readonly subresource: string | undefined;
}

/** Splits a request path; undefined when it names no resource (`/`, `/api`, `/version`). */
export function parseResourcePath(path: string): ResourceRequest | undefined {
  const parts = path.split('/').filter((p) => p !== '').map(decodeURIComponent);
  let apiVersion: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 3) {
    apiVersion = parts[1] ?? '';
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 4) {
    apiVersion = `${parts[1]}/${parts[2]}`;
    rest = parts.slice(3);
  } else {
    return undefined;
  }
  // namespaces/<ns>/<plural>[/<name>[/<sub>]] is namespaced; namespaces[/<name>] is the Namespace kind itself.
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    return { apiVersion, namespace: rest[1], plural: rest[2] ?? '', name: rest[3], subresource: rest[4] };
  }
  if (rest.length > 3) return undefined;
  return { apiVersion, namespace: undefined, plural: rest[0] ?? '', name: rest[1], subresource: rest[2] };
}
