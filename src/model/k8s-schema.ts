// Validates core objects against the Kubernetes OpenAPI schemas shipped in
// kubernetes-models, in addition to weft's own field checks (which cover what weft
// uses; the schemas catch what `kubectl apply` would refuse).

// One module per kind, not the `kubernetes-models/v1` index: the index loads every core
// model with its compiled schema, some 130 MB of memory for the six weft reads.
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Node } from 'kubernetes-models/v1/Node';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { EndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1/EndpointSlice';
import type { SchemaIssue } from './schema-check.ts';

interface AjvError {
  readonly instancePath: string;
  readonly keyword: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly message?: string;
}

interface Validatable {
  validate(): void;
}

const MODELS: Readonly<Record<string, new (data: never) => Validatable>> = {
  Namespace, Node, Pod, Service, ServiceAccount, EndpointSlice,
};

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
  const Model = MODELS[kind];
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
