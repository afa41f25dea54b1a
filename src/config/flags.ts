// The one flag-reading toolkit every component's config uses (agent, control plane): parse
// argv against the component's declared table, then typed readers that refuse a bad value
// naming the flag, the value and what was expected.

import { isIPv4 } from 'node:net';
import { parseArgs } from 'node:util';
import { WeftError } from '../core/errors.ts';

/** A flag's value is wrong (the message names the flag and the value). */
export const CONFIG_ERROR = 'WEFT_CONFIG_INVALID';
/** The command line itself is wrong: an unknown flag, a missing value. */
export const CLI_USAGE = 'WEFT_CLI_USAGE';

export interface FlagValues {
  readonly [flag: string]: string | boolean | undefined;
}

export type FlagTable = Readonly<Record<string, { readonly type: 'string' | 'boolean' }>>;

export function usageError(message: string, usage: string): WeftError {
  return new WeftError(CLI_USAGE, `${message}\nusage: ${usage}`);
}

/** argv -> values by the table; an unknown flag or a missing value is a usage error. */
export function parseFlagArgs(argv: readonly string[], table: FlagTable, usage: string): FlagValues {
  try {
    return parseArgs({ args: [...argv], options: table, allowPositionals: false, strict: true }).values;
  } catch (err: unknown) {
    throw usageError(err instanceof Error ? err.message : String(err), usage);
  }
}

export function badFlag(flag: string, value: unknown, why: string): never {
  throw new WeftError(CONFIG_ERROR, `--${flag} ${value === undefined ? '(not given)' : JSON.stringify(value)}: ${why}`);
}

export function str(flags: FlagValues, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function bool(flags: FlagValues, name: string): boolean {
  return flags[name] === true;
}

export function required(flags: FlagValues, name: string, why = 'is required'): string {
  const v = str(flags, name);
  if (v === undefined || v === '') badFlag(name, v, why);
  return v;
}

export function ip(flags: FlagValues, name: string, fallback?: string): string {
  const v = str(flags, name) ?? fallback;
  if (v === undefined) badFlag(name, v, 'is required');
  if (!isIPv4(v)) badFlag(name, v, 'must be an IPv4 address');
  return v;
}

export function int(flags: FlagValues, name: string, fallback: number, min: number, max: number): number {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) badFlag(name, v, `must be a whole number from ${min} to ${max}`);
  return Number(v);
}

/** A decimal number from `min` to `max` (e.g. a share, 0.8). */
export function decimal(flags: FlagValues, name: string, fallback: number, min: number, max: number): number {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  if (!/^\d+(\.\d+)?$/.test(v) || Number(v) < min || Number(v) > max) badFlag(name, v, `must be a number from ${min} to ${max}`);
  return Number(v);
}

/** A comma-separated list; empty entries dropped. */
export function list(flags: FlagValues, name: string): string[] {
  const v = str(flags, name);
  return v === undefined || v === '' ? [] : v.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

export function oneOf<T extends string>(flags: FlagValues, name: string, allowed: readonly T[], fallback: T): T {
  const v = str(flags, name) ?? fallback;
  if (!(allowed as readonly string[]).includes(v)) badFlag(name, v, `must be one of ${allowed.join(', ')}`);
  return v as T;
}

export function matching(flags: FlagValues, name: string, pattern: RegExp, what: string, fallback?: string): string {
  const v = str(flags, name) ?? fallback;
  if (v === undefined) badFlag(name, v, `is required: ${what}`);
  if (!pattern.test(v)) badFlag(name, v, `must be ${what}`);
  return v;
}

/** HOST:PORT, as a dialled or bound address. */
export function hostPort(flags: FlagValues, name: string, fallback?: string): string {
  const v = str(flags, name) ?? fallback;
  if (v === undefined) badFlag(name, v, 'is required: HOST:PORT');
  const m = /^([^:\s]+):(\d{1,5})$/.exec(v);
  if (m === null || Number(m[2]) > 65535) badFlag(name, v, 'must be HOST:PORT');
  return v;
}

export interface BindAddress {
  readonly host: string;
  readonly port: number;
}

/** PORT or HOST:PORT (port 0 picks a free one); `defaultHost` when only a port is given. */
export function bindAddress(flags: FlagValues, name: string, fallback: string, defaultHost: string): BindAddress {
  const v = str(flags, name) ?? fallback;
  const m = /^(?:([^:\s]+):)?(\d{1,5})$/.exec(v);
  if (m === null || Number(m[2]) > 65535) badFlag(name, v, 'must be PORT or HOST:PORT');
  return Object.freeze({ host: m[1] ?? defaultHost, port: Number(m[2]) });
}

export const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;

export function trustDomain(flags: FlagValues, fallback: string): string {
  return matching(flags, 'trust-domain', TRUST_DOMAIN, "lowercase letters, digits, '.', '-' or '_'", fallback);
}

/** A Kubernetes object name (DNS-1123 subdomain). */
export const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function logLevel(flags: FlagValues): string {
  return oneOf(flags, 'log-level', LOG_LEVELS, 'info');
}
