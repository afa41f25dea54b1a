// The pinned state of one node's eBPF capture under /sys/fs/bpf/weft/<node>/: programs
// in progs/, maps in maps/. Pins outlive the agent process, which is what lets a
// restarted agent keep capture in place (fail closed) and a later one reclaim it.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isWeftError } from '../core/errors.ts';
import type { AttachType, Bpftool, CgroupTreeEntry } from './bpftool.ts';
import { parseCgroupTree, parseProgInfo } from './bpftool.ts';
import { ProgNames, type ProgName } from './ebpf-maps.ts';
import { removePinDir } from './pin-dirs.ts';
import { redirectError, RedirectErrors, USE_IPTABLES_HINT } from './errors.ts';

export const PIN_BASE = '/sys/fs/bpf/weft';

export interface PinLayout {
  readonly dir: string;
  readonly progsDir: string;
  readonly mapsDir: string;
  /** sk_lookup links to pods' network namespaces, one pin per pod. */
  readonly linksDir: string;
  prog(name: ProgName): string;
  map(name: string): string;
  link(podId: string): string;
}

export function pinLayout(node: string, base = PIN_BASE): PinLayout {
  const dir = join(base, node);
  const progsDir = join(dir, 'progs');
  const mapsDir = join(dir, 'maps');
  const linksDir = join(dir, 'links');
  return Object.freeze({
    dir, progsDir, mapsDir, linksDir, prog: (name: ProgName) => join(progsDir, name), map: (name: string) => join(mapsDir, name),
    // A pod id holds '/', which a bpffs file name cannot.
    link: (podId: string) => join(linksDir, encodeURIComponent(podId)),
  });
}

/** Program ids of a node's pinned programs. */
export interface PinnedProgs {
  readonly connect4: number;
  readonly connect6: number;
  readonly sockops: number;
  readonly getpeername4: number;
  readonly getpeername6: number;
  readonly getsockopt: number;
  /** sk_lookup, linked to pods' network namespaces rather than attached to a cgroup. */
  readonly inbound: number;
}

const PROG_OF: Readonly<Record<keyof PinnedProgs, ProgName>> = {
  connect4: ProgNames.connect4, connect6: ProgNames.connect6, sockops: ProgNames.sockops, getpeername4: ProgNames.getpeername4,
  getpeername6: ProgNames.getpeername6, getsockopt: ProgNames.getsockopt, inbound: ProgNames.inbound,
};

/**
 * What a pod's cgroup gets, in attach order: sockops and the getpeername programs before
 * the connect ones, so no connection is rewritten without its records and its peer-name fix.
 * connect6 catches IPv4 destinations dialled from dual-stack (AF_INET6) sockets.
 */
export const POD_PROGRAMS: readonly (readonly [Exclude<keyof PinnedProgs, 'inbound'>, AttachType])[] = [
  ['sockops', 'sock_ops'],
  ['getpeername4', 'getpeername4'],
  ['getpeername6', 'getpeername6'],
  ['connect4', 'connect4'],
  ['connect6', 'connect6'],
];

export function progIds(progs: PinnedProgs): number[] {
  return (Object.keys(PROG_OF) as (keyof PinnedProgs)[]).map((k) => progs[k]);
}

/** The first four bytes of the object's SHA-256: tells whether pins came from this build. */
export async function objectBuildId(objectPath: string): Promise<number> {
  let bytes: Buffer;
  try {
    bytes = await readFile(objectPath);
  } catch (err: unknown) {
    throw redirectError(RedirectErrors.NO_OBJECT, `the BPF object ${objectPath} is missing; build it with: make -C bpf`, err);
  }
  return createHash('sha256').update(bytes).digest().readUInt32LE(0);
}

/** The ids of the pinned programs, or undefined when any pin is missing. */
export async function readPinnedProgs(bpftool: Bpftool, layout: PinLayout): Promise<PinnedProgs | undefined> {
  const ids: Partial<Record<keyof PinnedProgs, number>> = {};
  for (const key of Object.keys(PROG_OF) as (keyof PinnedProgs)[]) {
    const path = layout.prog(PROG_OF[key]);
    if (!existsSync(path)) return undefined;
    ids[key] = parseProgInfo(await bpftool.json(['prog', 'show', 'pinned', path])).id;
  }
  return ids as PinnedProgs;
}

/** Loads the object and pins its programs and maps; the directory must not exist yet. */
export async function loadPins(bpftool: Bpftool, layout: PinLayout, objectPath: string): Promise<PinnedProgs> {
  mkdirSync(layout.dir, { recursive: true });
  try {
    await bpftool.json(['prog', 'loadall', objectPath, layout.progsDir, 'pinmaps', layout.mapsDir]);
  } catch (err: unknown) {
    removePinDir(layout.dir);
    // libbpf says "failed to load" when the kernel (verifier, missing type or helper) refused.
    if (isWeftError(err, RedirectErrors.BPFTOOL_FAILED) && /failed to load|verifier|Invalid argument|not supported/i.test(err.message)) {
      throw redirectError(RedirectErrors.KERNEL_UNSUPPORTED, `the kernel refused weft's BPF programs, which need Linux 5.8 or later (cgroup getpeername4/6 hooks) with BTF (${err.message}); ${USE_IPTABLES_HINT}`, err);
    }
    throw err;
  }
  const progs = await readPinnedProgs(bpftool, layout);
  if (progs === undefined) {
    throw redirectError(RedirectErrors.BPFTOOL_FAILED, `bpftool prog loadall did not pin every program under ${layout.progsDir}`);
  }
  return progs;
}

/** `bpftool cgroup tree` over the whole hierarchy; a cgroup removed mid-walk can fail it, so retry. */
export async function cgroupTree(bpftool: Bpftool, cgroupRoot: string): Promise<CgroupTreeEntry[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return parseCgroupTree(await bpftool.json(['cgroup', 'tree', cgroupRoot]));
    } catch (err: unknown) {
      if (attempt >= 3) throw err;
    }
  }
}

/** Detaches the given program ids from every cgroup; resolves how many attachments went. */
export async function detachEverywhere(bpftool: Bpftool, cgroupRoot: string, ids: ReadonlySet<number>): Promise<number> {
  let detached = 0;
  for (const entry of await cgroupTree(bpftool, cgroupRoot)) {
    for (const prog of entry.programs) {
      if (!ids.has(prog.id) || prog.attachType === undefined) continue;
      await detachIfPresent(bpftool, entry.cgroup, prog.attachType, prog.id);
      detached++;
    }
  }
  return detached;
}

/** Detaches one program; a cgroup that disappeared meanwhile took the attachment with it. */
export async function detachIfPresent(bpftool: Bpftool, cgroup: string, type: AttachType, id: number): Promise<void> {
  try {
    await bpftool.json(['cgroup', 'detach', cgroup, type, 'id', String(id)]);
  } catch (err: unknown) {
    if (existsSync(cgroup)) throw err;
  }
}

/** Ids of every program pinned by any node under `base` (used to spot orphans). */
async function allPinnedIds(bpftool: Bpftool, base: string): Promise<Set<number>> {
  const ids = new Set<number>();
  let nodes: string[];
  try {
    nodes = readdirSync(base);
  } catch {
    return ids;
  }
  for (const node of nodes) {
    try {
      const progs = await readPinnedProgs(bpftool, pinLayout(node, base));
      if (progs !== undefined) for (const id of progIds(progs)) ids.add(id);
    } catch {
      // a node being torn down concurrently
    }
  }
  return ids;
}

/**
 * Undoes what an agent for `node` left: detaches its pinned programs from every cgroup,
 * detaches weft programs that no node has pinned any more (orphans), removes the pins.
 */
export async function reclaimPins(bpftool: Bpftool, cgroupRoot: string, node: string, base = PIN_BASE): Promise<{ detached: number }> {
  const layout = pinLayout(node, base);
  const ours = new Set<number>();
  if (existsSync(layout.progsDir)) {
    for (const name of Object.values(ProgNames)) {
      const path = layout.prog(name);
      if (existsSync(path)) ours.add(parseProgInfo(await bpftool.json(['prog', 'show', 'pinned', path])).id);
    }
  }
  const pinnedByAnyone = await allPinnedIds(bpftool, base);
  const weftNames = new Set<string>(Object.values(ProgNames));
  let detached = 0;
  for (const entry of await cgroupTree(bpftool, cgroupRoot)) {
    for (const prog of entry.programs) {
      if (prog.attachType === undefined) continue;
      const orphan = weftNames.has(prog.name) && !pinnedByAnyone.has(prog.id);
      if (!ours.has(prog.id) && !orphan) continue;
      await detachIfPresent(bpftool, entry.cgroup, prog.attachType, prog.id);
      detached++;
    }
  }
  removePinDir(layout.dir);
  return { detached };
}
