// Small helpers shared by the subcommands' flag parsing. Every refusal names the flag.
// Components' own flags (agent, control) are parsed in src/config with the same toolkit.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CLI_USAGE, usageError } from '../config/flags.ts';

export { CLI_USAGE, usageError };

type Options = NonNullable<ParseArgsConfig['options']>;

export function parseFlags<O extends Options>(argv: readonly string[], options: O, usage: string, allowPositionals = false) {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals, strict: true });
  } catch (err: unknown) {
    throw usageError(err instanceof Error ? err.message : String(err), usage);
  }
}

export function intFlag(value: string | undefined, flag: string, fallback: number | undefined, usage: string): number {
  if (value === undefined) {
    if (fallback === undefined) throw usageError(`${flag} is required`, usage);
    return fallback;
  }
  if (!/^\d+$/.test(value)) throw usageError(`${flag} must be a whole number, got ${JSON.stringify(value)}`, usage);
  return Number(value);
}

export function requiredFlag(value: string | undefined, flag: string, usage: string): string {
  if (value === undefined || value === '') throw usageError(`${flag} is required`, usage);
  return value;
}

export function oneOf<T extends string>(value: string | undefined, flag: string, allowed: readonly T[], fallback: T, usage: string): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw usageError(`${flag} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`, usage);
  return value as T;
}
