// weft.dev/v1alpha1 PeerAuthentication, in Istio's shape: whether a workload takes plaintext
// connections that did not come through the mesh (PERMISSIVE) or only mTLS (STRICT). Scope:
// mesh-wide (in the root namespace, no selector), namespace-wide (no selector) or workload
// (spec.selector.matchLabels). The most specific policy with a mode wins; UNSET (or no mtls)
// inherits from the scope above; the default is PERMISSIVE. Two policies at one scope for one
// workload: the first by name is used, and `weft vet` names the conflict. Pure.

import type { Labels, MtlsMode, PeerAuthenticationObject, Workload } from './types.ts';
import { ROOT_NAMESPACE } from './types.ts';
import { checkSchema, type Schema, type SchemaIssue } from './schema-check.ts';
import { FieldError, labels, metadata, onlyKeys, record } from './fields.ts';
import { selects } from './labels.ts';

export const DEFAULT_MTLS_MODE: MtlsMode = 'PERMISSIVE';

export const PEER_AUTHENTICATION_SPEC: Schema = {
  type: 'object',
  properties: {
    selector: { type: 'object', properties: { matchLabels: { type: 'map', values: { type: 'string' } } } },
    mtls: {
      type: 'object',
      properties: {
        mode: {
          type: 'string',
          enum: ['STRICT', 'PERMISSIVE', 'UNSET'],
        },
      },
    },
  },
  unsupported: {
    portLevelMtls: 'per-port modes are not supported; weft applies one mode to every port of the workload',
    targetRef: 'use selector.matchLabels', targetRefs: 'use selector.matchLabels',
  },
};

interface RawSpec { selector?: { matchLabels?: Record<string, string> }; mtls?: { mode?: 'STRICT' | 'PERMISSIVE' | 'UNSET' } }

export interface PeerAuthenticationParse {
  readonly policy: PeerAuthenticationObject | undefined;
  readonly issues: readonly SchemaIssue[];
}

/** Checks the whole object and converts it when it has no problem. */
export function parsePeerAuthentication(body: Record<string, unknown>): PeerAuthenticationParse {
  const issues: SchemaIssue[] = [];
  let md: ReturnType<typeof metadata> | undefined;
  try {
    onlyKeys(body, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], '');
    md = metadata(body, true);
  } catch (err: unknown) {
    if (!(err instanceof FieldError)) throw err;
    issues.push({ field: err.field, message: err.message });
  }
  const spec = body.spec === undefined ? {} : body.spec;
  for (const issue of checkSchema(PEER_AUTHENTICATION_SPEC, spec, 'spec')) {
    // DISABLE is Istio's, and meaningful there; here it would silently open what STRICT closes.
    if (issue.field === 'spec.mtls.mode' && (spec as RawSpec).mtls?.mode === ('DISABLE' as string)) {
      issues.push({ field: issue.field, message: 'DISABLE is not supported: weft always speaks mTLS between agents; use PERMISSIVE to also accept plaintext' });
    } else {
      issues.push(issue);
    }
  }
  if (issues.length > 0 || md === undefined) return { policy: undefined, issues };
  const raw = spec as RawSpec;
  let selector: Labels;
  try {
    selector = labels(record(raw.selector, 'spec.selector', true).matchLabels, 'spec.selector.matchLabels');
  } catch (err: unknown) {
    if (!(err instanceof FieldError)) throw err;
    return { policy: undefined, issues: [{ field: err.field, message: err.message }] };
  }
  const mode = raw.mtls?.mode === undefined || raw.mtls.mode === 'UNSET' ? undefined : raw.mtls.mode;
  return { issues, policy: Object.freeze({ name: md.name, namespace: md.namespace, selector, ...(mode === undefined ? {} : { mode }) }) };
}

export type PeerAuthenticationScope = 'workload' | 'namespace' | 'mesh';

/** The scope a policy has by where it lives and whether it selects. */
export function peerAuthenticationScope(p: PeerAuthenticationObject): PeerAuthenticationScope {
  if (Object.keys(p.selector).length > 0) return 'workload';
  return p.namespace === ROOT_NAMESPACE ? 'mesh' : 'namespace';
}

/** Does the policy apply to the workload (at its own scope)? */
export function peerAuthenticationApplies(p: PeerAuthenticationObject, w: Workload): boolean {
  switch (peerAuthenticationScope(p)) {
    case 'mesh': return true;
    case 'namespace': return p.namespace === w.namespace;
    case 'workload': return p.namespace === w.namespace && selects(p.selector, w.labels);
  }
}

export interface MtlsDecision {
  readonly mode: MtlsMode;
  /** `namespace/name` of the policy that set the mode; undefined for the default. */
  readonly policy?: string;
  readonly scope?: PeerAuthenticationScope;
}

const DEFAULT_DECISION: MtlsDecision = Object.freeze({ mode: DEFAULT_MTLS_MODE });
const SCOPES: readonly PeerAuthenticationScope[] = ['workload', 'namespace', 'mesh'];

const byName = (a: PeerAuthenticationObject, b: PeerAuthenticationObject): number => {
  const ka = `${a.namespace}/${a.name}`;
  const kb = `${b.namespace}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

/**
 * The mode for a workload: the most specific scope whose policy sets one (first by name
 * within a scope). `policies` may hold any policies; only those applying count.
 */
export function mtlsModeFor(policies: readonly PeerAuthenticationObject[], w: Workload): MtlsDecision {
  const applying = policies.filter((p) => peerAuthenticationApplies(p, w)).sort(byName);
  for (const scope of SCOPES) {
    const first = applying.find((p) => peerAuthenticationScope(p) === scope);
    if (first?.mode !== undefined) return Object.freeze({ mode: first.mode, policy: `${first.namespace}/${first.name}`, scope });
  }
  return DEFAULT_DECISION;
}

/** The policies a workload's decision can depend on: every one that applies to it. */
export function peerAuthenticationsFor(policies: readonly PeerAuthenticationObject[], w: Workload): PeerAuthenticationObject[] {
  return policies.filter((p) => peerAuthenticationApplies(p, w));
}
