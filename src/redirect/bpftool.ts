// bpftool, driven as a child process with -j (JSON) output. This is the control path
// only: loading, pinning, attaching and filling maps; the data path never leaves the kernel.

import { run } from '../core/exec.ts';
import { redirectError, RedirectErrors } from './errors.ts';

/** The cgroup attach points weft uses, in bpftool's command-line spelling. */
export type AttachType = 'connect4' | 'connect6' | 'sock_ops' | 'getpeername4' | 'getpeername6' | 'getsockopt';

export interface ProgInfo {
  readonly id: number;
  readonly name: string;
  readonly type: string;
  readonly tag: string;
}

export interface CgroupAttachment {
  readonly id: number;
  /** undefined for attach types weft does not use. */
  readonly attachType: AttachType | undefined;
  readonly name: string;
}

export interface CgroupTreeEntry {
  readonly cgroup: string;
  readonly programs: readonly CgroupAttachment[];
}

export interface MapEntry {
  readonly key: unknown;
  readonly value: unknown;
}

// bpftool 7 prints libbpf's names (cgroup_inet4_connect); older ones printed the short
// names it also takes on its command line.
const ATTACH_TYPES: Readonly<Record<string, AttachType>> = {
  cgroup_inet4_connect: 'connect4',
  connect4: 'connect4',
  cgroup_inet6_connect: 'connect6',
  connect6: 'connect6',
  cgroup_sock_ops: 'sock_ops',
  sock_ops: 'sock_ops',
  cgroup_inet4_getpeername: 'getpeername4',
  getpeername4: 'getpeername4',
  cgroup_inet6_getpeername: 'getpeername6',
  getpeername6: 'getpeername6',
  cgroup_getsockopt: 'getsockopt',
  getsockopt: 'getsockopt',
};

function shape(what: string, json: unknown): never {
  throw redirectError(RedirectErrors.BPFTOOL_FAILED, `bpftool printed an unexpected ${what}: ${JSON.stringify(json)?.slice(0, 300)}`);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export interface LinkInfo {
  readonly id: number;
  readonly progId: number;
  /** The network namespace's inode for a netns link (sk_lookup); 0 once that namespace is gone. */
  readonly netnsIno: number | undefined;
}

/** `bpftool -j link show pinned PATH`. */
export function parseLinkInfo(json: unknown): LinkInfo {
  if (!isRecord(json) || typeof json.id !== 'number' || typeof json.prog_id !== 'number') shape('link description', json);
  return { id: json.id, progId: json.prog_id, netnsIno: typeof json.netns_ino === 'number' ? json.netns_ino : undefined };
}

export function parseProgInfo(json: unknown): ProgInfo {
  if (!isRecord(json) || typeof json.id !== 'number' || typeof json.type !== 'string') shape('program description', json);
  return {
    id: json.id,
    name: typeof json.name === 'string' ? json.name : '',
    type: json.type,
    tag: typeof json.tag === 'string' ? json.tag : '',
  };
}

function parseAttachment(json: unknown): CgroupAttachment {
  if (!isRecord(json) || typeof json.id !== 'number' || typeof json.attach_type !== 'string') shape('cgroup attachment', json);
  return { id: json.id, attachType: ATTACH_TYPES[json.attach_type], name: typeof json.name === 'string' ? json.name : '' };
}

/** `bpftool -j cgroup show CGROUP` (an empty cgroup prints nothing at all: undefined). */
export function parseCgroupShow(json: unknown): CgroupAttachment[] {
  if (json === undefined) return [];
  if (!Array.isArray(json)) shape('cgroup program list', json);
  return json.map(parseAttachment);
}

/** `bpftool -j cgroup tree ROOT`. */
export function parseCgroupTree(json: unknown): CgroupTreeEntry[] {
  if (json === undefined) return [];
  if (!Array.isArray(json)) shape('cgroup tree', json);
  return json.map((entry: unknown) => {
    if (!isRecord(entry) || typeof entry.cgroup !== 'string' || !Array.isArray(entry.programs)) shape('cgroup tree entry', entry);
    return { cgroup: entry.cgroup, programs: entry.programs.map(parseAttachment) };
  });
}

/** `bpftool -j map dump`: raw key/value byte arrays (decode with ebpf-maps.ts). */
export function parseMapDump(json: unknown): MapEntry[] {
  if (json === undefined) return [];
  if (!Array.isArray(json)) shape('map dump', json);
  return json.map((entry: unknown) => {
    if (!isRecord(entry) || !('key' in entry) || !('value' in entry)) shape('map entry', entry);
    return { key: entry.key, value: entry.value };
  });
}

/** The text of bpftool's own {"error": "..."} report, if it printed one. */
export function bpftoolErrorText(stdout: string, stderr: string): string {
  try {
    const parsed: unknown = JSON.parse(stdout);
    if (isRecord(parsed) && typeof parsed.error === 'string') return parsed.error;
  } catch {
    // not JSON: fall through to stderr
  }
  return (stderr.trim() || stdout.trim()).split('\n').slice(-8).join(' | ') || 'no output';
}

export class Bpftool {
  readonly #path: string;

  constructor(path = 'bpftool') {
    this.#path = path;
  }

  /** Runs `bpftool -j ARGS`; resolves the parsed JSON (undefined when it printed nothing). */
  async json(args: readonly string[]): Promise<unknown> {
    const r = await this.#run(['-j', ...args]);
    const text = r.stdout.trim();
    if (text === '') return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch (err: unknown) {
      throw redirectError(RedirectErrors.BPFTOOL_FAILED, `bpftool ${args.join(' ')} printed invalid JSON: ${text.slice(0, 200)}`, err);
    }
  }

  /** Runs many commands in one process (`bpftool batch file -`); lines are argument lists. */
  async batch(commands: readonly (readonly string[])[]): Promise<void> {
    if (commands.length === 0) return;
    await this.#run(['batch', 'file', '-'], commands.map((c) => c.join(' ')).join('\n') + '\n');
  }

  async #run(args: readonly string[], input?: string): Promise<{ stdout: string }> {
    let r;
    try {
      r = await run(this.#path, args, { okStatus: Array.from({ length: 256 }, (_, i) => i), code: RedirectErrors.NO_BPFTOOL, ...(input === undefined ? {} : { input }) });
    } catch (err: unknown) {
      // core/exec already says "cannot run <path>: <reason>".
      throw redirectError(RedirectErrors.NO_BPFTOOL, err instanceof Error ? err.message : String(err), err);
    }
    if (r.status !== 0) {
      const shown = args.join(' ');
      throw redirectError(RedirectErrors.BPFTOOL_FAILED, `bpftool ${shown.length > 240 ? `${shown.slice(0, 240)}...` : shown} failed: ${bpftoolErrorText(r.stdout, r.stderr)}`);
    }
    return r;
  }
}
