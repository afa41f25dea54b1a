// Validates core objects against the Kubernetes OpenAPI schemas shipped in
// kubernetes-models, in addition to weft's own field checks (which cover what weft
// uses; the schemas catch what `kubectl apply` would refuse).

// One module per kind, not the `kubernetes-models/v1` index: the index loads every core
// model with its compiled schema, some 130 MB of memory for the six weft reads. Each is
// loaded on first use (require: the packages ship CommonJS too), so a process that never
// checks a schema (the control plane reading from the API server, which already did) never
// loads them and their validators (~8 MB of RSS).
import { createRequire } from 'node:module';
import type { SchemaIssue } from './schema-check.ts';

const require = createRequire(import.meta.url);

interface AjvError {
  readonly instancePath: string;
  readonly keyword: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly message?: string;
}

interface Validatable {
  validate(): void;
}

type Model = new (data: never) => Validatable;

const MODULES: Readonly<Record<string, string>> = {
  Namespace: 'kubernetes-models/v1/Namespace', Node: 'kubernetes-models/v1/Node', Pod: 'kubernetes-models/v1/Pod',
  Service: 'kubernetes-models/v1/Service', ServiceAccount: 'kubernetes-models/v1/ServiceAccount',
  EndpointSlice: 'kubernetes-models/discovery.k8s.io/v1/EndpointSlice',
};

/** The model class of a kind (require caches the module), or undefined when weft has no schema for it. */
function modelOf(kind: string): Model | undefined {
  const id = MODULES[kind];
  return id === undefined ? undefined : (require(id) as Record<string, Model>)[kind];
}

/** `/spec/containers/0/name` -> `spec.containers[0].name` */
export function pointerToField(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    out += /^[0-9]+$/.test(part) ? `[${part}]` : out === '' ? part : `.${part}`;
  }
  return out;
}

function issue(e: AjvError): SchemaIssue {
  const at = pointerToField(e.instancePath);
  if (e.keyword === 'required' && typeof e.params.missingProperty === 'string') {
    return { field: at === '' ? e.params.missingProperty : `${at}.${e.params.missingProperty}`, message: 'is required (Kubernetes schema)' };
  }
  if (e.keyword === 'enum' && Array.isArray(e.params.allowedValues)) {
    return { field: at, message: `must be one of ${e.params.allowedValues.map((v) => JSON.stringify(v)).join(', ')} (Kubernetes schema)` };
  }
  return { field: at, message: `${e.message ?? `fails ${e.keyword}`} (Kubernetes schema)` };
}

function isAjvErrors(v: unknown): v is readonly AjvError[] {
  return Array.isArray(v) && v.every((e) => typeof e === 'object' && e !== null && 'instancePath' in e);
}

/** Schema problems of a core object; empty when it conforms or the kind has no schema here. */
export function kubernetesSchemaIssues(kind: string, body: Record<string, unknown>): SchemaIssue[] {
  const Model = modelOf(kind);
  if (Model === undefined) return [];
  try {
    new Model(body as never).validate();
    return [];
  } catch (err: unknown) {
    const errors = typeof err === 'object' && err !== null ? (err as { errors?: unknown }).errors : undefined;
    if (!isAjvErrors(errors)) throw err;
    return errors.map(issue);
  }
}
