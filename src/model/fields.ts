// Field checks shared by the kind parsers. A parser throws FieldError naming the dotted
// path of the first bad field; the caller turns it into a problem for that object only.

import { isIPv4 } from 'node:net';
import type { Labels } from './types.ts';

// DNS-1123 label (up to 63) and subdomain (dot-separated labels; str() caps the length at 253).
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Thrown inside one object's parse; caught per object and turned into a problem. */
export class FieldError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function show(v: unknown): string {
  return JSON.stringify(v) ?? 'nothing';
}

export function record(v: unknown, field: string, optional = false): Record<string, unknown> {
  if (v === undefined && optional) return {};
  if (!isRecord(v)) throw new FieldError(field, `must be a mapping, got ${show(v)}`);
  return v;
}

export function list(v: unknown, field: string, optional = false): readonly unknown[] {
  if (v === undefined && optional) return [];
  if (!Array.isArray(v)) throw new FieldError(field, `must be a list, got ${show(v)}`);
  return v;
}

export function str(v: unknown, field: string, pattern?: RegExp, what = 'a string'): string {
  if (typeof v !== 'string' || v === '') throw new FieldError(field, `must be ${what}, got ${show(v)}`);
  if (pattern && (!pattern.test(v) || v.length > 253)) throw new FieldError(field, `must be ${what}, got ${JSON.stringify(v)}`);
  return v;
}

export function ipv4(v: unknown, field: string): string {
  const s = str(v, field);
  if (!isIPv4(s)) throw new FieldError(field, `must be an IPv4 address, got ${JSON.stringify(s)}`);
  return s;
}

export function port(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new FieldError(field, `must be a port number 1-65535, got ${show(v)}`);
  }
  return v;
}

export function labels(v: unknown, field: string): Labels {
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

export function annotations(v: unknown, field: string): Readonly<Record<string, string>> {
  const r = record(v, field, true);
  for (const [k, val] of Object.entries(r)) {
    if (typeof val !== 'string') throw new FieldError(`${field}.${k}`, `must be a string, got ${show(val)}`);
  }
  return r as Record<string, string>;
}

/** Refuses keys outside `allowed`, so a misspelt field is an error instead of silently ignored. */
export function onlyKeys(r: Record<string, unknown>, allowed: readonly string[], field: string): void {
  for (const k of Object.keys(r)) {
    if (!allowed.includes(k)) {
      const at = field === '' ? k : `${field}.${k}`;
      throw new FieldError(at, `is not a known field (known: ${allowed.join(', ')})`);
    }
  }
}

export interface Metadata {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Labels;
  readonly annotations: Readonly<Record<string, string>>;
}

export function metadata(body: Record<string, unknown>, namespaced: boolean): Metadata {
  const md = record(body.metadata, 'metadata');
  const name = str(md.name, 'metadata.name', DNS_SUBDOMAIN, 'a DNS name (lowercase letters, digits, -, .)');
  const namespace = namespaced
    ? md.namespace === undefined
      ? 'default'
      : str(md.namespace, 'metadata.namespace', DNS_LABEL, 'a DNS label')
    : '';
  return { name, namespace, labels: labels(md.labels, 'metadata.labels'), annotations: annotations(md.annotations, 'metadata.annotations') };
}
