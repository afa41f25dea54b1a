// Parses Kubernetes objects (Namespace, Node, Pod, Service, EndpointSlice, ServiceAccount,
// weft.dev AuthorizationPolicy, PeerAuthentication, DestinationPolicy, RateLimitPolicy and FaultInjection, Gateway API HTTPRoute and GRPCRoute) into model objects. Pure: takes file contents or raw
// objects, returns objects plus every problem found, each naming file, object and field.
// One bad object rejects only itself (and, given the previous objects, keeps that
// object's last good version).

import { parseAllDocuments, type Document } from 'yaml';
import type {
  AuthorizationPolicyObject, EndpointSliceObject, PeerAuthenticationObject, MeshObjects, NamespaceObject, NodeObject, PodObject, RawObject,
  ServiceAccountObject, ServiceObject, SourceRef,
} from './types.ts';
import { WEFT_API_VERSION } from './types.ts';
import { FieldError, isRecord } from './fields.ts';
import { parseEndpointSlice, parseNamespace, parseNode, parsePod, parseService, parseServiceAccount } from './core-kinds.ts';
import { parseAuthorizationPolicy } from './policy-kind.ts';
import { parsePeerAuthentication } from './peer-authentication.ts';
import { parseRoute } from './route-kind.ts';
import { parseTrafficPolicy } from './traffic-policy-kinds.ts';
import type { DestinationPolicyObject, FaultInjectionObject, RateLimitPolicyObject, TrafficPolicyObject } from './traffic-policy-types.ts';
import { GATEWAY_API_VERSION, type GrpcRouteObject, type HttpRouteObject, type RouteObject } from './route-types.ts';
import { kubernetesSchemaIssues } from './k8s-schema.ts';
import type { SchemaIssue } from './schema-check.ts';
import { DEFAULT_MANIFEST_LIMITS, ManifestLimitCodes, documentDepth, formatBytes, type ManifestLimits } from './manifest-limits.ts';

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
  /** A stable code for input refused as a whole (ManifestLimitCodes), when there is one. */
  readonly code?: string;
  /** 1-based position in the file, when the problem has one (YAML syntax). */
  readonly line?: number;
  readonly column?: number;
}

export interface ParsedManifests extends MeshObjects {
  readonly routes: readonly RouteObject[];
  readonly trafficPolicies: readonly TrafficPolicyObject[];
  readonly peerAuthentications: readonly PeerAuthenticationObject[];
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
  const file = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.column ?? 1}`;
  const where = [file, p.object, p.field].filter((s) => s !== undefined).join(': ');
  return `${where}: ${p.message}${p.code === undefined ? '' : ` [${p.code}]`}`;
}

/** One validated object with its kind. */
export type ParsedObject =
  | { kind: 'Namespace'; value: NamespaceObject }
  | { kind: 'Node'; value: NodeObject }
  | { kind: 'Pod'; value: PodObject }
  | { kind: 'Service'; value: ServiceObject }
  | { kind: 'EndpointSlice'; value: EndpointSliceObject }
  | { kind: 'ServiceAccount'; value: ServiceAccountObject }
  | { kind: 'AuthorizationPolicy'; value: AuthorizationPolicyObject }
  | { kind: 'PeerAuthentication'; value: PeerAuthenticationObject }
  | { kind: 'HTTPRoute'; value: HttpRouteObject }
  | { kind: 'GRPCRoute'; value: GrpcRouteObject }
  | { kind: 'DestinationPolicy'; value: DestinationPolicyObject }
  | { kind: 'RateLimitPolicy'; value: RateLimitPolicyObject }
  | { kind: 'FaultInjection'; value: FaultInjectionObject };

export type Kind = ParsedObject['kind'];
type Parsed = ParsedObject;

const KINDS: Readonly<Record<Kind, { readonly apiVersion: string; readonly namespaced: boolean }>> = {
  Namespace: { apiVersion: 'v1', namespaced: false },
  Node: { apiVersion: 'v1', namespaced: false },
  Pod: { apiVersion: 'v1', namespaced: true },
  Service: { apiVersion: 'v1', namespaced: true },
  ServiceAccount: { apiVersion: 'v1', namespaced: true },
  EndpointSlice: { apiVersion: 'discovery.k8s.io/v1', namespaced: true },
  AuthorizationPolicy: { apiVersion: WEFT_API_VERSION, namespaced: true },
  PeerAuthentication: { apiVersion: WEFT_API_VERSION, namespaced: true },
  HTTPRoute: { apiVersion: GATEWAY_API_VERSION, namespaced: true },
  GRPCRoute: { apiVersion: GATEWAY_API_VERSION, namespaced: true },
  DestinationPolicy: { apiVersion: WEFT_API_VERSION, namespaced: true },
  RateLimitPolicy: { apiVersion: WEFT_API_VERSION, namespaced: true },
  FaultInjection: { apiVersion: WEFT_API_VERSION, namespaced: true },
};

export const KNOWN_KINDS: readonly string[] = Object.keys(KINDS);

/** The apiVersion a known kind is served under. */
export function kindApiVersion(kind: string): string | undefined {
  return isKind(kind) ? KINDS[kind].apiVersion : undefined;
}

export function isKind(k: string): k is Kind {
  return Object.hasOwn(KINDS, k);
}

function objectName(kind: string, body: Record<string, unknown>): string {
  const md = isRecord(body.metadata) ? body.metadata : {};
  if (typeof md.name !== 'string') return `${kind}/?`;
  return typeof md.namespace === 'string' ? `${kind}/${md.namespace}/${md.name}` : `${kind}/${md.name}`;
}

/** kind/namespace/name, with Kubernetes' default namespace filled in; undefined without a name. */
export function objectKey(kind: Kind, body: Record<string, unknown>): string | undefined {
  const md = isRecord(body.metadata) ? body.metadata : {};
  if (typeof md.name !== 'string') return undefined;
  const ns = KINDS[kind].namespaced ? (typeof md.namespace === 'string' ? md.namespace : 'default') : '';
  return `${kind}/${ns}/${md.name}`;
}

/** The objectKey of a parsed object. */
export function parsedKey(p: Parsed): string {
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
  if (kind === 'PeerAuthentication') {
    const r = parsePeerAuthentication(body);
    return r.policy === undefined ? { issues: [...r.issues] } : { parsed: { kind, value: r.policy }, issues: [] };
  }
  if (kind === 'DestinationPolicy' || kind === 'RateLimitPolicy' || kind === 'FaultInjection') {
    const r = parseTrafficPolicy(kind, body);
    return r.policy === undefined ? { issues: [...r.issues] } : { parsed: trafficParsed(r.policy), issues: [] };
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

function trafficParsed(value: TrafficPolicyObject): Parsed {
  switch (value.kind) {
    case 'DestinationPolicy': return { kind: value.kind, value };
    case 'RateLimitPolicy': return { kind: value.kind, value };
    case 'FaultInjection': return { kind: value.kind, value };
  }
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
  (previous.peerAuthentications ?? []).forEach((value) => add({ kind: 'PeerAuthentication', value }));
  (previous.routes ?? []).forEach((value) => add(value.kind === 'HTTPRoute' ? { kind: 'HTTPRoute', value } : { kind: 'GRPCRoute', value }));
  (previous.trafficPolicies ?? []).forEach((value) => add(trafficParsed(value)));
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
    policies: [] as AuthorizationPolicyObject[], nodes: [] as NodeObject[], routes: [] as RouteObject[],
    peerAuthentications: [] as PeerAuthenticationObject[], trafficPolicies: [] as TrafficPolicyObject[], problems: [] as ManifestProblem[], others: [] as RawObject[],
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
      case 'PeerAuthentication': out.peerAuthentications.push(p.value); break;
      case 'Node': out.nodes.push(p.value); break;
      case 'HTTPRoute': case 'GRPCRoute': out.routes.push(p.value); break;
      case 'DestinationPolicy': case 'RateLimitPolicy': case 'FaultInjection': out.trafficPolicies.push(p.value); break;
    }
  };

  const results: { raw: RawObject; one: RawParse }[] = [];
  for (const raw of objects) {
    if (knownOtherKinds.has(raw.kind)) out.others.push(raw);
    else results.push({ raw, one: parseRawObject(raw, kubernetesSchema, knownOtherKinds) });
  }
  // The first valid version of each object wins; with none valid, the first one keeps the
  // object's previous version (if any). Either way the rest are problems.
  const valid = new Set<string>();
  for (const { one } of results) if (one.parsed !== undefined && one.key !== undefined) valid.add(one.key);
  const seen = new Set<string>();
  for (const { raw, one } of results) {
    const first = one.key !== undefined && !seen.has(one.key);
    if (one.key !== undefined) seen.add(one.key);
    if (one.parsed !== undefined) {
      accept(one.parsed, raw.source, one.object);
      continue;
    }
    const kept = one.key === undefined || !first || valid.has(one.key) ? undefined : previous.get(one.key);
    const suffix = kept === undefined ? '' : KEEPING_PREVIOUS;
    for (const pr of one.problems) out.problems.push({ ...pr, message: pr.message + suffix });
    if (kept !== undefined) accept(kept, raw.source, one.object);
  }
  return out;
}

/** Appended to the problems of an invalid object whose last good version stays. */
export const KEEPING_PREVIOUS = ' (keeping the previous version of this object)';

/** One raw object, validated on its own. */
export interface RawParse {
  /** `Kind/namespace/name` when the kind is known and the object has a name. */
  readonly key: string | undefined;
  readonly kind: Kind | undefined;
  /** How problems name it: `Kind/namespace/name` as written. */
  readonly object: string;
  readonly parsed: ParsedObject | undefined;
  /** Empty when parsed. */
  readonly problems: readonly ManifestProblem[];
}

/** Validates one object (phase one for one object; parseObjects and the live object store share it). */
export function parseRawObject(raw: RawObject, kubernetesSchema: boolean, knownOtherKinds: ReadonlySet<string> = new Set()): RawParse {
  const { kind, body } = raw;
  const file = raw.source.file;
  const object = objectName(kind, body);
  if (!isKind(kind)) {
    return {
      key: undefined, kind: undefined, object, parsed: undefined,
      problems: [{ file, object, field: 'kind', message: `unknown kind ${JSON.stringify(kind)} (known: ${[...KNOWN_KINDS, ...knownOtherKinds].join(', ')})` }],
    };
  }
  const expected = KINDS[kind].apiVersion;
  const { parsed, issues } = body.apiVersion !== expected
    ? { parsed: undefined, issues: [{ field: 'apiVersion', message: `must be ${JSON.stringify(expected)} for ${kind}, got ${JSON.stringify(body.apiVersion) ?? 'nothing'}` }] }
    : parseOne(kind, body, kubernetesSchema);
  const key = parsed === undefined ? objectKey(kind, body) : parsedKey(parsed);
  return {
    key, kind, object, parsed,
    problems: parsed !== undefined ? [] : issues.map((i) => ({ file, object, field: i.field === '' ? undefined : i.field, message: i.message })),
  };
}


export interface SplitOptions {
  readonly limits?: ManifestLimits;
}

export interface SplitFile {
  readonly objects: RawObject[];
  readonly problems: ManifestProblem[];
  /** The file was refused as a whole (a limit); `objects` is then empty. */
  readonly refused: boolean;
}

// The YAML library words its messages "<what> at line L, column C:\n\n<excerpt>"; the
// position is given in its own fields.
function yamlMessage(message: string): string {
  return (message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
}

function refuse(path: string, code: string, message: string): SplitFile {
  return { objects: [], problems: [{ file: path, object: undefined, field: undefined, message, code }], refused: true };
}

/**
 * Splits one YAML file into raw objects. A file over a limit is refused as a whole with one
 * problem naming the limit; a YAML error is one problem (the first of its document, with
 * line and column: later ones mostly follow from it); so is a document that is not a
 * mapping or has no kind.
 */
export function splitManifestFile(file: ManifestFile, options: SplitOptions = {}): SplitFile {
  const limits = options.limits ?? DEFAULT_MANIFEST_LIMITS;
  const bytes = Buffer.byteLength(file.text);
  if (bytes > limits.maxFileBytes) {
    return refuse(file.path, ManifestLimitCodes.FILE_TOO_LARGE, `refused: ${formatBytes(bytes)} is over the limit of ${formatBytes(limits.maxFileBytes)} per manifest file`);
  }
  const objects: RawObject[] = [];
  const problems: ManifestProblem[] = [];
  let docs: Document.Parsed[];
  try {
    const parsed = parseAllDocuments(file.text, { prettyErrors: true });
    docs = Array.isArray(parsed) ? parsed : []; // not an array: an empty stream
  } catch (err: unknown) {
    // The parser catches its own stack overflows; anything else thrown is still this file's problem.
    return refuse(file.path, ManifestLimitCodes.BAD_YAML, `cannot be parsed: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (docs.length > limits.maxObjectsPerFile) {
    return refuse(file.path, ManifestLimitCodes.TOO_MANY_OBJECTS, `refused: ${docs.length} documents is over the limit of ${limits.maxObjectsPerFile} objects per manifest file`);
  }
  for (const [index, doc] of docs.entries()) {
    const docName = `document ${index + 1}`;
    const first = doc.errors[0];
    if (first !== undefined) {
      if (/Maximum call stack size exceeded/.test(first.message)) {
        return refuse(file.path, ManifestLimitCodes.TOO_DEEP, `refused: ${docName} nests deeper than the YAML parser can follow (the limit is ${limits.maxDepth} levels)`);
      }
      const more = doc.errors.length - 1;
      const pos = first.linePos?.[0];
      problems.push({
        file: file.path, object: docName, field: undefined, code: ManifestLimitCodes.BAD_YAML,
        message: `invalid YAML: ${yamlMessage(first.message)}${more > 0 ? ` (and ${more} more in this document)` : ''}`,
        ...(pos === undefined ? {} : { line: pos.line, column: pos.col }),
      });
      continue;
    }
    const depth = documentDepth(doc, limits.maxDepth);
    if (depth > limits.maxDepth) {
      return refuse(file.path, ManifestLimitCodes.TOO_DEEP, `refused: ${docName} nests more than ${limits.maxDepth} levels deep (the limit per document)`);
    }
    let body: unknown;
    try {
      body = doc.toJS({ maxAliasCount: limits.maxAliases });
    } catch (err: unknown) {
      // yaml throws a ReferenceError once aliases would expand past maxAliasCount (a "billion laughs").
      if (err instanceof ReferenceError) {
        return refuse(file.path, ManifestLimitCodes.ALIAS_LIMIT, `refused: ${docName} expands YAML aliases past the limit of ${limits.maxAliases} (${err.message})`);
      }
      problems.push({ file: file.path, object: docName, field: undefined, code: ManifestLimitCodes.BAD_YAML, message: `invalid YAML: ${err instanceof Error ? err.message : String(err)}` });
      continue;
    }
    if (body === null || body === undefined) continue; // an empty document between ---
    if (!isRecord(body)) {
      problems.push({ file: file.path, object: docName, field: undefined, message: 'must be a mapping with apiVersion, kind and metadata' });
      continue;
    }
    if (typeof body.kind !== 'string') {
      problems.push({ file: file.path, object: docName, field: 'kind', message: 'is missing' });
      continue;
    }
    const source: SourceRef = { file: file.path, doc: index };
    objects.push({ kind: body.kind, body, source });
  }
  return { objects, problems, refused: false };
}

/** The problem for a file that would take the directory past its total objects or bytes, if it does. */
export function totalLimitProblem(path: string, totals: { bytes: number; objects: number }, limits: ManifestLimits): ManifestProblem | undefined {
  if (totals.bytes > limits.maxTotalBytes) {
    return {
      file: path, object: undefined, field: undefined, code: ManifestLimitCodes.TOTAL_TOO_LARGE,
      message: `refused: with this file the manifests come to ${formatBytes(totals.bytes)}, over the limit of ${formatBytes(limits.maxTotalBytes)} in total`,
    };
  }
  if (totals.objects > limits.maxObjectsTotal) {
    return {
      file: path, object: undefined, field: undefined, code: ManifestLimitCodes.TOTAL_TOO_MANY_OBJECTS,
      message: `refused: with this file the manifests come to ${totals.objects} objects, over the limit of ${limits.maxObjectsTotal} in total`,
    };
  }
  return undefined;
}

/**
 * Splits YAML files into raw objects (splitManifestFile per file). A file that would take
 * the total past maxTotalBytes or maxObjectsTotal is refused, as are the ones after it.
 */
export function splitManifests(files: readonly ManifestFile[], options: SplitOptions = {}): { objects: RawObject[]; problems: ManifestProblem[] } {
  const limits = options.limits ?? DEFAULT_MANIFEST_LIMITS;
  const objects: RawObject[] = [];
  const problems: ManifestProblem[] = [];
  const totals = { bytes: 0, objects: 0 };
  for (const file of files) {
    const one = splitManifestFile(file, { limits });
    if (one.refused) {
      problems.push(...one.problems);
      continue;
    }
    totals.bytes += Buffer.byteLength(file.text);
    totals.objects += one.objects.length;
    const over = totalLimitProblem(file.path, totals, limits);
    if (over !== undefined) {
      problems.push(over);
      continue;
    }
    objects.push(...one.objects);
    problems.push(...one.problems);
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
  options: Omit<ParseOptions, 'knownOtherKinds'> & SplitOptions = {},
): ParsedManifests {
  const split = splitManifests(files, options.limits === undefined ? {} : { limits: options.limits });
  const parsed = parseObjects(split.objects, { kubernetesSchema: false, ...options, knownOtherKinds });
  return { ...parsed, problems: [...split.problems, ...parsed.problems] };
}
