// The control path of the same-node kernel splice (bpf/splice.bpf.c): probe that this kernel
// has what it needs (sockhash, sk_skb verdict programs and their helpers), load and pin the
// program and its maps under /sys/fs/bpf/weft-splice/<node>/, attach the verdict to the
// sockhash, and remove it all on close. A crashed agent's pins are reclaimed by the next
// start (sockets die with their process, so there is nothing to adopt). The data path —
// putting socket pairs into the map — is the proxy's, through the native addon.

import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Bpftool } from './bpftool.ts';
import { redirectError, RedirectErrors } from './errors.ts';
import { validateNode } from './options.ts';
import { removePinDir } from './pin-dirs.ts';
import { checkEbpf, type ProbeCheck } from './probe.ts';
import type { RedirectLog } from './redirector.ts';
import { silentLog } from './redirector.ts';

export const KERNEL_SPLICE_PIN_BASE = '/sys/fs/bpf/weft-splice';
export const KERNEL_SPLICE_OBJECT = join(import.meta.dirname, '..', '..', 'bpf', 'build', 'splice.bpf.o');

const PROGRAM = 'weft_splice_verdict';
export const SpliceMapNames = { socks: 'weft_splice_socks', pairs: 'weft_splice_pairs' } as const;

/** Where a worker finds the pinned maps (plain strings: it crosses to worker threads). */
export interface KernelSplicePins {
  readonly socks: string;
  readonly pairs: string;
}

export interface KernelSpliceDeps {
  readonly bpftool?: string;
  readonly objectPath?: string;
  readonly base?: string;
  readonly log?: RedirectLog;
}

/** What the kernel splice needs, as named checks; cgroup v2 is not among them. */
export async function checkKernelSplice(bpftool: Bpftool, objectPath: string, mountBpffs = true): Promise<ProbeCheck[]> {
  const r = await checkEbpf({ bpftool, objectPath, idsPath: join(objectPath, '..', 'bpf-ids.txt'), mountBpffs });
  return r.checks.filter((c) => c.id !== 'cgroup2');
}

/** The program and maps of one node, loaded, attached and pinned until close(). */
export class KernelSpliceProgram {
  readonly pins: KernelSplicePins;
  readonly #dir: string;
  #closed = false;

  private constructor(dir: string) {
    this.#dir = dir;
    this.pins = Object.freeze({ socks: join(dir, 'maps', SpliceMapNames.socks), pairs: join(dir, 'maps', SpliceMapNames.pairs) });
  }

  /**
   * Probes, reclaims what an earlier agent for `node` left, loads and attaches. Throws
   * WEFT_REDIRECT_KERNEL_SPLICE_UNAVAILABLE naming what is missing; the caller then splices
   * in user space.
   */
  static async start(node: string, deps: KernelSpliceDeps = {}): Promise<KernelSpliceProgram> {
    validateNode(node);
    const log = deps.log ?? silentLog;
    const bpftool = new Bpftool(deps.bpftool);
    const objectPath = deps.objectPath ?? KERNEL_SPLICE_OBJECT;
    const base = deps.base ?? KERNEL_SPLICE_PIN_BASE;
    const failed = (await checkKernelSplice(bpftool, objectPath)).filter((c) => !c.ok);
    if (failed.length > 0) {
      throw redirectError(RedirectErrors.KERNEL_SPLICE_UNAVAILABLE, `same-node kernel splice unavailable: ${failed.map((c) => c.detail ?? c.what).join('; ')}`);
    }
    const program = new KernelSpliceProgram(join(base, node));
    if (existsSync(program.#dir)) {
      rmSync(program.#dir, { recursive: true, force: true });
      log.warn({ node, pins: program.#dir }, 'removed the kernel splice pins an earlier agent left');
    }
    const progs = join(program.#dir, 'progs');
    const maps = join(program.#dir, 'maps');
    try {
      mkdirSync(program.#dir, { recursive: true });
      await bpftool.json(['prog', 'loadall', objectPath, progs, 'pinmaps', maps]);
      await bpftool.json(['prog', 'attach', 'pinned', join(progs, PROGRAM), 'sk_skb_verdict', 'pinned', program.pins.socks]);
    } catch (err: unknown) {
      program.close();
      throw redirectError(RedirectErrors.KERNEL_SPLICE_UNAVAILABLE, `same-node kernel splice unavailable: the kernel refused ${objectPath} (${err instanceof Error ? err.message : String(err)})`, err);
    }
    log.info({ node, pins: program.#dir }, 'loaded the same-node kernel splice');
    return program;
  }

  /**
   * Unpins everything. Workers that still hold the maps open keep using them until they let
   * go; the kernel frees program and maps then. Safe to call twice.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    removePinDir(this.#dir);
  }
}
