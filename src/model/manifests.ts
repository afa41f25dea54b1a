// Parses Kubernetes YAML (Namespace, Pod, Service) into model objects. Pure: takes file
// contents, returns objects plus every problem found, each naming file, object and field.
// One bad object rejects only itself.

import { parseAllDocuments } from 'yaml';
import { isIPv4 } from 'node:net';
import type { Labels, NamespaceObject, PodObject, ServiceObject, ServicePort, SourceRef } from './types.ts';

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

export interface ParsedManifests {
  readonly namespaces: readonly NamespaceObject[];
  readonly pods: readonly PodObject[];
  readonly services: readonly ServiceObject[];
  readonly problems: readonly ManifestProblem[];
  /** Documents of kinds this parser does not model (left for other parsers), with their source. */
  readonly others: readonly { readonly kind: string; readonly body: Record<string, unknown>; readonly source: SourceRef }[];
}

export function formatProblem(p: ManifestProblem): string {
  const where = [p.file, p.object, p.field].filter((s) => s !== undefined).join(': ');
  return `${where}: ${p.message}`;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Thrown inside one object's parse; caught per object and turned into a problem. */
class FieldError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function record(v: unknown, field: string, optional = false): Record<string, unknown> {
  if (v === undefined && optional) return {};
  if (!isRecord(v)) throw new FieldError(field, `must be a mapping, got ${JSON.stringify(v) ?? 'nothing'}`);
  return v;
}

function str(v: unknown, field: string, pattern?: RegExp, what = 'a string'): string {
  if (typeof v !== 'string' || v === '') throw new FieldError(field, `must be ${what}, got ${JSON.stringify(v) ?? 'nothing'}`);
  if (pattern && (!pattern.test(v) || v.length > 253)) throw new FieldError(field, `must be ${what}, got ${JSON.stringify(v)}`);
  return v;
}

function port(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new FieldError(field, `must be a port number 1-65535, got ${JSON.stringify(v) ?? 'nothing'}`);
  }
  return v;
}

function labels(v: unknown, field: string): Labels {
  const r = record(v, field, true);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(r)) {
    if (typeof val !== 'string' || !LABEL_VALUE.test(val) || val.length > 63) {
      throw new FieldError(`${field}.${k}`, `must be a label value (string of up to 63 letters, digits, '-', '_', '.'), got ${JSON.stringify(val)}`);
    }
    out[k] = val;
  }
  return Object.freeze(out);
}

function metadata(body: Record<string, unknown>, namespaced: boolean): { name: string; namespace: string; labels: Labels } {
  const md = record(body.metadata, 'metadata');
  const name = str(md.name, 'metadata.name', DNS_SUBDOMAIN, 'a DNS name (lowercase letters, digits, -, .)');
  const namespace = namespaced
    ? md.namespace === undefined
      ? 'default'
      : str(md.namespace, 'metadata.namespace', DNS_LABEL, 'a DNS label')
    : '';
  return { name, namespace, labels: labels(md.labels, 'metadata.labels') };
}

function parseNamespace(body: Record<string, unknown>): NamespaceObject {
  const md = metadata(body, false);
  return Object.freeze({ name: md.name, labels: md.labels });
}

function parsePod(body: Record<string, unknown>): PodObject {
  const md = metadata(body, true);
  const spec = record(body.spec, 'spec', true);
  const status = record(body.status, 'status', true);
  const serviceAccount = spec.serviceAccountName === undefined
    ? 'default'
    : str(spec.serviceAccountName, 'spec.serviceAccountName', DNS_SUBDOMAIN, 'a DNS name');
  const nodeName = spec.nodeName === undefined ? undefined : str(spec.nodeName, 'spec.nodeName', DNS_SUBDOMAIN, 'a DNS name');
  let ip: string | undefined;
  if (status.podIP !== undefined) {
    ip = str(status.podIP, 'status.podIP');
    if (!isIPv4(ip)) throw new FieldError('status.podIP', `must be an IPv4 address, got ${JSON.stringify(ip)}`);
  }
  const containerPorts: number[] = [];
  if (spec.containers !== undefined) {
    if (!Array.isArray(spec.containers)) throw new FieldError('spec.containers', 'must be a list');
    spec.containers.forEach((c: unknown, i) => {
      const cr = record(c, `spec.containers[${i}]`);
      if (cr.ports === undefined) return;
      if (!Array.isArray(cr.ports)) throw new FieldError(`spec.containers[${i}].ports`, 'must be a list');
      cr.ports.forEach((p: unknown, j) => {
        const f = `spec.containers[${i}].ports[${j}]`;
        containerPorts.push(port(record(p, f).containerPort, `${f}.containerPort`));
      });
    });
  }
  return Object.freeze({
    name: md.name, namespace: md.namespace, labels: md.labels, serviceAccount, nodeName, ip,
    containerPorts: Object.freeze(containerPorts),
  });
}

function parseService(body: Record<string, unknown>): ServiceObject {
  const md = metadata(body, true);
  const spec = record(body.spec, 'spec');
  const vip = str(spec.clusterIP, 'spec.clusterIP');
  if (!isIPv4(vip)) throw new FieldError('spec.clusterIP', `must be an IPv4 address, got ${JSON.stringify(vip)}`);
  if (!Array.isArray(spec.ports) || spec.ports.length === 0) throw new FieldError('spec.ports', 'must be a non-empty list');
  const seen = new Set<number>();
  const ports: ServicePort[] = spec.ports.map((p: unknown, i): ServicePort => {
    const f = `spec.ports[${i}]`;
    const pr = record(p, f);
    const number = port(pr.port, `${f}.port`);
    if (seen.has(number)) throw new FieldError(`${f}.port`, `duplicates port ${number}`);
    seen.add(number);
    const targetPort = pr.targetPort === undefined ? number : port(pr.targetPort, `${f}.targetPort`);
    if (pr.protocol !== undefined && pr.protocol !== 'TCP') {
      throw new FieldError(`${f}.protocol`, `only TCP is supported, got ${JSON.stringify(pr.protocol)}`);
    }
    const name = pr.name === undefined ? undefined : str(pr.name, `${f}.name`, DNS_LABEL, 'a DNS label');
    return Object.freeze({ name, port: number, targetPort, protocol: 'TCP' });
  });
  return Object.freeze({
    name: md.name, namespace: md.namespace, vip, ports: Object.freeze(ports),
    selector: labels(spec.selector, 'spec.selector'),
  });
}

const PARSERS = {
  Namespace: { apiVersion: 'v1', parse: parseNamespace },
  Pod: { apiVersion: 'v1', parse: parsePod },
  Service: { apiVersion: 'v1', parse: parseService },
} as const;

function objectName(kind: string, body: Record<string, unknown>): string | undefined {
  const md = isRecord(body.metadata) ? body.metadata : {};
  if (typeof md.name !== 'string') return `${kind}/?`;
  return typeof md.namespace === 'string' ? `${kind}/${md.namespace}/${md.name}` : `${kind}/${md.name}`;
}

/**
 * Parses every document of every file. `knownOtherKinds` are kinds another parser owns
 * (passed through in `others`); any kind outside both sets is a problem.
 */
export function parseManifests(files: readonly ManifestFile[], knownOtherKinds: ReadonlySet<string> = new Set()): ParsedManifests {
  const namespaces: NamespaceObject[] = [];
  const pods: PodObject[] = [];
  const services: ServiceObject[] = [];
  const problems: ManifestProblem[] = [];
  const others: { kind: string; body: Record<string, unknown>; source: SourceRef }[] = [];
  const seen = new Map<string, string>();

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
      const kind = body.kind;
      if (typeof kind !== 'string') {
        problems.push({ file: file.path, object: docName, field: 'kind', message: 'is missing' });
        return;
      }
      const object = objectName(kind, body);
      if (knownOtherKinds.has(kind)) {
        others.push({ kind, body, source: { file: file.path, doc: index } });
        return;
      }
      const parser = (PARSERS as Record<string, (typeof PARSERS)[keyof typeof PARSERS] | undefined>)[kind];
      if (parser === undefined) {
        problems.push({ file: file.path, object, field: 'kind', message: `unknown kind ${JSON.stringify(kind)} (known: ${[...Object.keys(PARSERS), ...knownOtherKinds].join(', ')})` });
        return;
      }
      if (body.apiVersion !== parser.apiVersion) {
        problems.push({ file: file.path, object, field: 'apiVersion', message: `must be ${JSON.stringify(parser.apiVersion)} for ${kind}, got ${JSON.stringify(body.apiVersion) ?? 'nothing'}` });
        return;
      }
      try {
        const parsed = parser.parse(body);
        const key = `${kind}/${'namespace' in parsed ? parsed.namespace : ''}/${parsed.name}`;
        const first = seen.get(key);
        if (first !== undefined) {
          problems.push({ file: file.path, object, field: 'metadata.name', message: `duplicates the object first defined in ${first}` });
          return;
        }
        seen.set(key, file.path);
        if (kind === 'Namespace') namespaces.push(parsed as NamespaceObject);
        else if (kind === 'Pod') pods.push(parsed as PodObject);
        else services.push(parsed as ServiceObject);
      } catch (err: unknown) {
        if (!(err instanceof FieldError)) throw err;
        problems.push({ file: file.path, object, field: err.field, message: err.message });
      }
    });
  }
  return { namespaces, pods, services, problems, others };
}
