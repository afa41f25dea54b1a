// Parses Kubernetes objects (Namespace, Node, Pod, Service, EndpointSlice, ServiceAccount,
// weft.dev AuthorizationPolicy, Gateway API HTTPRoute and GRPCRoute) into model objects. Pure: takes file contents or raw
// objects, returns objects plus every problem found, each naming file, object and field.
// One bad object rejects only itself (and, given the previous objects, keeps that
// object's last good version).

import { parseAllDocuments } from 'yaml';
import type {
  AuthorizationPolicyObject, EndpointSliceObject, MeshObjects, NamespaceObject, NodeObject, PodObject, RawObject,
  ServiceAccountObject, ServiceObject, SourceRef,
} from './types.ts';
import { WEFT_API_VERSION } from './types.ts';
import { FieldError, isRecord } from './fields.ts';
import { parseEndpointSlice, parseNamespace, parseNode, parsePod, parseService, parseServiceAccount } from './core-kinds.ts';
import { parseAuthorizationPolicy } from './policy-kind.ts';
import { parseRoute } from './route-kind.ts';
import { GATEWAY_API_VERSION, type GrpcRouteObject, type HttpRouteObject, type RouteObject } from './route-types.ts';
import { kubernetesSchemaIssues } from './k8s-schema.ts';
import type { SchemaIssue } from './schema-check.ts';

export interface ManifestFile {
  readonly path: string;
  readonly text: string;
}

export interface ManifestProblem {
  readonly file: string;
  /** `Kind/namespace/name` when the object got that far. */
  readonly object: string | undefined;
  /** Dotted path of the offending field, e.g. `spec.ports[0].port`. */
  readonly field: string | undefined;
  readonly message: string;
}

export interface ParsedManifests extends MeshObjects {
  readonly routes: readonly RouteObject[];
  readonly problems: readonly ManifestProblem[];
  /** Documents of kinds this parser was told to leave to others (`knownOtherKinds`), with their source. */
  readonly others: readonly RawObject[];
  /** Where each accepted object came from, keyed `Kind/namespace/name` (namespace empty for Namespaces and Nodes). */
  readonly origins: ReadonlyMap<string, SourceRef>;
}

export interface ParseOptions {
  /** Kinds another parser owns: passed through in `others` even when this parser knows them. */
  readonly knownOtherKinds?: ReadonlySet<string>;
  /** The last good objects: an object that is now invalid keeps its previous version. */
  readonly previous?: MeshObjects;
  /**
   * Also check core kinds against the Kubernetes OpenAPI schemas. Default true in
   * parseObjects (the control plane, `weft vet`); false in parseManifests, whose callers
   * (the simulator) write pods without the containers Kubernetes requires.
   */
  readonly kubernetesSchema?: boolean;
}

export function formatProblem(p: ManifestProblem): string {
  const where = [p.file, p.object, p.field].filter((s) => s !== undefined).join(': ');
  return `${where}: ${p.message}`;
}

type Parsed =
  | { kind: 'Namespace'; value: NamespaceObject }
  | { kind: 'Node'; value: NodeObject }
  | { kind: 'Pod'; value: PodObject }
  | { kind: 'Service'; value: ServiceObject }
  | { kind: 'EndpointSlice'; value: EndpointSliceObject }
  | { kind: 'ServiceAccount'; value: ServiceAccountObject }
  | { kind: 'AuthorizationPolicy'; value: AuthorizationPolicyObject }
  | { kind: 'HTTPRoute'; value: HttpRouteObject }
  | { kind: 'GRPCRoute'; value: GrpcRouteObject };

export type Kind = Parsed['kind'];

const KINDS: Readonly<Record<Kind, { readonly apiVersion: string; readonly namespaced: boolean }>> = {
  Namespace: { apiVersion: 'v1', namespaced: false },
  Node: { apiVersion: 'v1', namespaced: false },
  Pod: { apiVersion: 'v1', namespaced: true },
  Service: { apiVersion: 'v1', namespaced: true },
  ServiceAccount: { apiVersion: 'v1', namespaced: true },
  EndpointSlice: { apiVersion: 'discovery.k8s.io/v1', namespaced: true },
  AuthorizationPolicy: { apiVersion: WEFT_API_VERSION, namespaced: true },
  HTTPRoute: { apiVersion: GATEWAY_API_VERSION, namespaced: true },
  GRPCRoute: { apiVersion: GATEWAY_API_VERSION, namespaced: true },
};

export const KNOWN_KINDS: readonly string[] = Object.keys(KINDS);

function isKind(k: string): k is Kind {
  return Object.hasOwn(KINDS, k);
}

function objectName(kind: string, body: Record<string, unknown>): string {
  const md = isRecord(body.metadata) ? body.metadata : {};
  if (typeof md.name !== 'string') return `${kind}/?`;
  return typeof md.namespace === 'string' ? `${kind}/${md.namespace}/${md.name}` : `${kind}/${md.name}`;
}

/** kind/namespace/name, with Kubernetes' default namespace filled in; undefined without a name. */
function objectKey(kind: Kind, body: Record<string, unknown>): string | undefined {
  const md = isRecord(body.metadata) ? body.metadata : {};
  if (typeof md.name !== 'string') return undefined;
  const ns = KINDS[kind].namespaced ? (typeof md.namespace === 'string' ? md.namespace : 'default') : '';
  return `${kind}/${ns}/${md.name}`;
}

function parsedKey(p: Parsed): string {
  return `${p.kind}/${'namespace' in p.value ? p.value.namespace : ''}/${p.value.name}`;
}

function fieldIssues(parse: () => Parsed): { parsed?: Parsed; issues: SchemaIssue[] } {
  try {
    return { parsed: parse(), issues: [] };
  } catch (err: unknown) {
    if (!(err instanceof FieldError)) throw err;
    return { issues: [{ field: err.field, message: err.message }] };
  }
}

/** The key of `origins` for an object of the model. */
export function originKey(kind: Kind, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

/** Validates one object: weft's field checks, plus the Kubernetes schema for core kinds. */
function parseOne(kind: Kind, body: Record<string, unknown>, kubernetesSchema: boolean): { parsed?: Parsed; issues: SchemaIssue[] } {
  if (kind === 'AuthorizationPolicy') {
    const r = parseAuthorizationPolicy(body);
    return r.policy === undefined ? { issues: [...r.issues] } : { parsed: { kind, value: r.policy }, issues: [] };
  }
  if (kind === 'HTTPRoute' || kind === 'GRPCRoute') {
    const r = parseRoute(kind, body);
    if (r.route === undefined) return { issues: [...r.issues] };
    return { parsed: r.route.kind === 'HTTPRoute' ? { kind: 'HTTPRoute', value: r.route } : { kind: 'GRPCRoute', value: r.route }, issues: [] };
  }
  const own = fieldIssues((): Parsed => {
    switch (kind) {
      case 'Namespace': return { kind, value: parseNamespace(body) };
      case 'Node': return { kind, value: parseNode(body) };
      case 'Pod': return { kind, value: parsePod(body) };
      case 'Service': return { kind, value: parseService(body) };
      case 'EndpointSlice': return { kind, value: parseEndpointSlice(body) };
      case 'ServiceAccount': return { kind, value: parseServiceAccount(body) };
    }
  });
  const schema = kubernetesSchema ? kubernetesSchemaIssues(kind, body) : [];
  if (schema.length === 0) return own;
  // weft's own message is the more specific one where both flag the same field.
  const fields = new Set(own.issues.map((i) => i.field));
  return { issues: [...own.issues, ...schema.filter((i) => !fields.has(i.field))] };
}

function previousByKey(previous: MeshObjects | undefined): Map<string, Parsed> {
  const out = new Map<string, Parsed>();
  if (previous === undefined) return out;
  const add = (p: Parsed): void => void out.set(parsedKey(p), p);
  previous.namespaces.forEach((value) => add({ kind: 'Namespace', value }));
  previous.pods.forEach((value) => add({ kind: 'Pod', value }));
  previous.services.forEach((value) => add({ kind: 'Service', value }));
  previous.endpointSlices.forEach((value) => add({ kind: 'EndpointSlice', value }));
  previous.serviceAccounts.forEach((value) => add({ kind: 'ServiceAccount', value }));
  previous.policies.forEach((value) => add({ kind: 'AuthorizationPolicy', value }));
  previous.nodes.forEach((value) => add({ kind: 'Node', value }));
  (previous.routes ?? []).forEach((value) => add(value.kind === 'HTTPRoute' ? { kind: 'HTTPRoute', value } : { kind: 'GRPCRoute', value }));
  return out;
}

/** Phase one of applying config: validates every object on its own. */
export function parseObjects(objects: readonly RawObject[], options: ParseOptions = {}): ParsedManifests {
  const knownOtherKinds = options.knownOtherKinds ?? new Set<string>();
  const kubernetesSchema = options.kubernetesSchema ?? true;
  const previous = previousByKey(options.previous);
  const out = {
    namespaces: [] as NamespaceObject[], pods: [] as PodObject[], services: [] as ServiceObject[],
    endpointSlices: [] as EndpointSliceObject[], serviceAccounts: [] as ServiceAccountObject[],
    policies: [] as AuthorizationPolicyObject[], nodes: [] as NodeObject[], routes: [] as RouteObject[], problems: [] as ManifestProblem[], others: [] as RawObject[],
    origins: new Map<string, SourceRef>(),
  };
  const accept = (p: Parsed, source: SourceRef, object: string): void => {
    const key = parsedKey(p);
    const first = out.origins.get(key);
    if (first !== undefined) {
      out.problems.push({ file: source.file, object, field: 'metadata.name', message: `duplicates the object first defined in ${first.file}` });
      return;
    }
    out.origins.set(key, source);
    switch (p.kind) {
      case 'Namespace': out.namespaces.push(p.value); break;
      case 'Pod': out.pods.push(p.value); break;
      case 'Service': out.services.push(p.value); break;
      case 'EndpointSlice': out.endpointSlices.push(p.value); break;
      case 'ServiceAccount': out.serviceAccounts.push(p.value); break;
      case 'AuthorizationPolicy': out.policies.push(p.value); break;
      case 'Node': out.nodes.push(p.value); break;
      case 'HTTPRoute': case 'GRPCRoute': out.routes.push(p.value); break;
    }
  };

  for (const raw of objects) {
    const { kind, body } = raw;
    const file = raw.source.file;
    const object = objectName(kind, body);
    if (knownOtherKinds.has(kind)) {
      out.others.push(raw);
      continue;
    }
    if (!isKind(kind)) {
      out.problems.push({ file, object, field: 'kind', message: `unknown kind ${JSON.stringify(kind)} (known: ${[...KNOWN_KINDS, ...knownOtherKinds].join(', ')})` });
      continue;
    }
    const expected = KINDS[kind].apiVersion;
    const { parsed, issues } = body.apiVersion !== expected
      ? { parsed: undefined, issues: [{ field: 'apiVersion', message: `must be ${JSON.stringify(expected)} for ${kind}, got ${JSON.stringify(body.apiVersion) ?? 'nothing'}` }] }
      : parseOne(kind, body, kubernetesSchema);
    if (parsed !== undefined) {
      accept(parsed, raw.source, object);
      continue;
    }
    const key = objectKey(kind, body);
    const kept = key === undefined ? undefined : previous.get(key);
    const suffix = kept === undefined ? '' : ' (keeping the previous version of this object)';
    for (const i of issues) out.problems.push({ file, object, field: i.field === '' ? undefined : i.field, message: i.message + suffix });
    if (kept !== undefined) accept(kept, raw.source, object);
  }
  return out;
}

/** Splits YAML files into raw objects; YAML syntax errors and documents without a kind are problems. */
export function splitManifests(files: readonly ManifestFile[]): { objects: RawObject[]; problems: ManifestProblem[] } {
  const objects: RawObject[] = [];
  const problems: ManifestProblem[] = [];
  for (const file of files) {
    const docs = parseAllDocuments(file.text, { prettyErrors: true });
    if (!Array.isArray(docs)) continue; // an empty stream
    docs.forEach((doc, index) => {
      const docName = `document ${index + 1}`;
      if (doc.errors.length > 0) {
        for (const e of doc.errors) problems.push({ file: file.path, object: docName, field: undefined, message: `invalid YAML: ${e.message.split('\n')[0]}` });
        return;
      }
      const body: unknown = doc.toJS();
      if (body === null || body === undefined) return; // an empty document between ---
      if (!isRecord(body)) {
        problems.push({ file: file.path, object: docName, field: undefined, message: 'must be a mapping with apiVersion, kind and metadata' });
        return;
      }
      if (typeof body.kind !== 'string') {
        problems.push({ file: file.path, object: docName, field: 'kind', message: 'is missing' });
        return;
      }
      const source: SourceRef = { file: file.path, doc: index };
      objects.push({ kind: body.kind, body, source });
    });
  }
  return { objects, problems };
}

/**
 * Parses every document of every file. `knownOtherKinds` are kinds another parser owns
 * (passed through in `others`); any kind outside both sets is a problem.
 */
export function parseManifests(
  files: readonly ManifestFile[],
  knownOtherKinds: ReadonlySet<string> = new Set(),
  options: Omit<ParseOptions, 'knownOtherKinds'> = {},
): ParsedManifests {
  const split = splitManifests(files);
  const parsed = parseObjects(split.objects, { kubernetesSchema: false, ...options, knownOtherKinds });
  return { ...parsed, problems: [...split.problems, ...parsed.problems] };
}
