// weft's own kinds (group weft.dev) with the spec schemas the model checks them against, and
// their conversion to CustomResourceDefinitions with OpenAPI v3 schemas: the chart's CRDs are
// generated from this (scripts/gen-crds.ts), and a test fails when a weft.dev kind the model
// knows is missing here or a committed CRD no longer matches, so new kinds stay in step.

import { AUTHORIZATION_POLICY_SPEC } from './policy-kind.ts';
import { PEER_AUTHENTICATION_SPEC } from './peer-authentication.ts';
import { DESTINATION_POLICY_SPEC, FAULT_INJECTION_SPEC, RATE_LIMIT_POLICY_SPEC } from './traffic-policy-kinds.ts';
import type { Schema } from './schema-check.ts';
import { WEFT_API_VERSION } from './types.ts';

export interface WeftKind {
  readonly kind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortNames?: readonly string[];
  readonly spec: Schema;
  readonly description: string;
}

export const WEFT_KINDS: readonly WeftKind[] = Object.freeze([
  { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', singular: 'authorizationpolicy', shortNames: ['wap'], spec: AUTHORIZATION_POLICY_SPEC, description: 'Which sources may reach the selected workloads, Istio semantics: ALLOW/DENY on principals, namespaces, IP blocks, ports, and for HTTP methods, paths, hosts and request-header conditions.' },
  { kind: 'PeerAuthentication', plural: 'peerauthentications', singular: 'peerauthentication', shortNames: ['wpa'], spec: PEER_AUTHENTICATION_SPEC, description: 'Whether the selected workloads accept plaintext (PERMISSIVE) or only mesh mutual TLS (STRICT).' },
  { kind: 'DestinationPolicy', plural: 'destinationpolicies', singular: 'destinationpolicy', shortNames: ['wdp'], spec: DESTINATION_POLICY_SPEC, description: 'Circuit breaking and outlier detection for calls to a Service (the fields of Istio DestinationRule trafficPolicy: connectionPool, outlierDetection).' },
  { kind: 'RateLimitPolicy', plural: 'ratelimitpolicies', singular: 'ratelimitpolicy', shortNames: ['wrl'], spec: RATE_LIMIT_POLICY_SPEC, description: 'Token-bucket rate limits enforced at the destination agent for a Service or selected workloads: total, per source identity, new connections; Enforce or Shadow.' },
  { kind: 'FaultInjection', plural: 'faultinjections', singular: 'faultinjection', shortNames: ['wfi'], spec: FAULT_INJECTION_SPEC, description: 'Delays and aborts for a percentage of requests, applied where an HTTPRoute or GRPCRoute ExtensionRef filter names it.' },
]);

type OpenApi = Record<string, unknown>;

/**
 * A structural OpenAPI v3 schema for a model Schema. Fields the model refuses with a reason
 * (`unsupported`) are kept, unpruned, so the control plane can name them; checks the model
 * runs in code (SPIFFE ids, CIDRs, ports as number or string) are left to it.
 */
export function toOpenApi(schema: Schema): OpenApi {
  switch (schema.type) {
    case 'object': {
      const properties: Record<string, OpenApi> = {};
      for (const [k, v] of Object.entries(schema.properties)) properties[k] = toOpenApi(v);
      for (const [k, why] of Object.entries(schema.unsupported ?? {})) {
        properties[k] = { description: `Not supported: ${why}`, 'x-kubernetes-preserve-unknown-fields': true };
      }
      return { type: 'object', properties, ...(schema.required === undefined || schema.required.length === 0 ? {} : { required: [...schema.required] }) };
    }
    case 'map':
      return { type: 'object', additionalProperties: toOpenApi(schema.values) };
    case 'array':
      return { type: 'array', items: toOpenApi(schema.items), ...(schema.minItems === undefined ? {} : { minItems: schema.minItems }) };
    case 'string':
      return { type: 'string', ...(schema.enum === undefined ? {} : { enum: [...schema.enum] }) };
    case 'boolean':
      return { type: 'boolean' };
    case 'custom':
      return { description: `Must be ${schema.what} (checked by weft).`, ...(schema.openApi ?? { 'x-kubernetes-int-or-string': true }) };
  }
}

export function customResourceDefinition(k: WeftKind): Record<string, unknown> {
  const [group, version] = WEFT_API_VERSION.split('/');
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${k.plural}.${group}`, labels: { 'app.kubernetes.io/part-of': 'weft' } },
    spec: {
      group,
      scope: 'Namespaced',
      names: { kind: k.kind, listKind: `${k.kind}List`, plural: k.plural, singular: k.singular, ...(k.shortNames === undefined ? {} : { shortNames: [...k.shortNames] }) },
      versions: [{
        name: version, served: true, storage: true,
        schema: {
          openAPIV3Schema: {
            description: k.description,
            type: 'object',
            properties: {
              apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' },
              spec: toOpenApi(k.spec),
              status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
            },
          },
        },
      }],
    },
  };
}
