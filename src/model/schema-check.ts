// A small JSON-schema-like checker for weft's own kinds. Unlike the kind parsers, which stop
// at the first bad field, it walks the whole value and reports every problem with its path.

import { isRecord, show } from './fields.ts';

export type Schema =
  | {
    readonly type: 'object';
    readonly properties: Readonly<Record<string, Schema>>;
    readonly required?: readonly string[];
    /** Fields deliberately not supported, with the reason shown instead of "not a known field". */
    readonly unsupported?: Readonly<Record<string, string>>;
  }
  | { readonly type: 'map'; readonly values: Schema }
  | { readonly type: 'array'; readonly items: Schema; readonly minItems?: number; readonly maxItems?: number }
  | { readonly type: 'string'; readonly enum?: readonly string[]; readonly check?: (s: string) => string | undefined }
  | { readonly type: 'boolean' }
  /** Any value; `check` returns an error message or undefined. */
  | {
    readonly type: 'custom'; readonly what: string; readonly check: (v: unknown) => string | undefined;
    /** The structural OpenAPI schema for the CRD, when not int-or-string (crd-kinds.ts). */
    readonly openApi?: Readonly<Record<string, unknown>>;
  };

/** An integer in [min, max]. */
export function integer(min: number, max: number): Schema {
  return {
    type: 'custom', what: `an integer ${min}-${max}`,
    check: (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? undefined : `got ${JSON.stringify(v) ?? 'nothing'}`),
  };
}

/** An object whose every property is required except those named `optional`. */
export function requiredExcept(properties: Record<string, Schema>, optional: readonly string[] = []): Schema {
  return { type: 'object', properties, required: Object.keys(properties).filter((k) => !optional.includes(k)) };
}

export interface SchemaIssue {
  /** Dotted path, e.g. `spec.rules[0].from[1].source.principals[0]`. */
  readonly field: string;
  readonly message: string;
}

function join(base: string, key: string): string {
  return base === '' ? key : `${base}.${key}`;
}

/** Every way `value` breaks `schema`; empty when it conforms. */
export function checkSchema(schema: Schema, value: unknown, field: string): SchemaIssue[] {
  const issues: SchemaIssue[] = [];
  walk(schema, value, field, issues);
  return issues;
}

function walk(schema: Schema, value: unknown, field: string, out: SchemaIssue[]): void {
  switch (schema.type) {
    case 'object': {
      if (!isRecord(value)) {
        out.push({ field, message: `must be a mapping, got ${show(value)}` });
        return;
      }
      for (const key of schema.required ?? []) {
        if (value[key] === undefined) out.push({ field: join(field, key), message: 'is required' });
      }
      for (const [key, v] of Object.entries(value)) {
        const sub = schema.properties[key];
        if (sub !== undefined) {
          if (v !== undefined) walk(sub, v, join(field, key), out);
          continue;
        }
        const why = schema.unsupported?.[key];
        out.push({ field: join(field, key), message: why ?? `is not a known field (known: ${Object.keys(schema.properties).join(', ')})` });
      }
      return;
    }
    case 'map':
      if (!isRecord(value)) {
        out.push({ field, message: `must be a mapping, got ${show(value)}` });
        return;
      }
      for (const [key, v] of Object.entries(value)) walk(schema.values, v, join(field, key), out);
      return;
    case 'array':
      if (!Array.isArray(value)) {
        out.push({ field, message: `must be a list, got ${show(value)}` });
        return;
      }
      if (schema.minItems !== undefined && value.length < schema.minItems) {
        out.push({ field, message: `must have at least ${schema.minItems} item(s)` });
      }
      if (schema.maxItems !== undefined && value.length > schema.maxItems) {
        out.push({ field, message: `must have at most ${schema.maxItems} items, got ${value.length}` });
      }
      value.forEach((v: unknown, i) => walk(schema.items, v, `${field}[${i}]`, out));
      return;
    case 'string': {
      if (typeof value !== 'string') {
        out.push({ field, message: `must be a string, got ${show(value)}` });
        return;
      }
      if (schema.enum !== undefined && !schema.enum.includes(value)) {
        out.push({ field, message: `must be one of ${schema.enum.join(', ')}, got ${JSON.stringify(value)}` });
        return;
      }
      const bad = schema.check?.(value);
      if (bad !== undefined) out.push({ field, message: bad });
      return;
    }
    case 'boolean':
      if (typeof value !== 'boolean') out.push({ field, message: `must be true or false, got ${show(value)}` });
      return;
    case 'custom': {
      const bad = schema.check(value);
      if (bad !== undefined) out.push({ field, message: `must be ${schema.what}: ${bad}` });
      return;
    }
  }
}
