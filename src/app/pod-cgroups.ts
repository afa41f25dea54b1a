// Finds an enrolled pod's cgroup on this node from its UID, where the kubelet put it, under
// either cgroup driver and any QoS class: no template to configure. The node's cgroup root
// is the cgroup2 mount, or, when the agent itself runs in a pod cgroup (the simulator nests
// each node's root in one hierarchy), whatever lies above its own kubepods directory.
// `--pod-cgroup TEMPLATE` stays as an override for layouts the kubelet does not make.

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { nodeRootFromOwnCgroup, podCgroupCandidates } from '../core/kubelet-cgroups.ts';
import { WeftError } from '../core/errors.ts';

export interface PodRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string | undefined;
}

export const NO_POD_CGROUP = 'WEFT_AGENT_NO_POD_CGROUP';

/** This process's cgroup path inside the cgroup2 hierarchy, from /proc/self/cgroup (`/` when hidden by a cgroup namespace). */
export function ownCgroupPath(procSelfCgroup: string = readFileSync('/proc/self/cgroup', 'utf8')): string {
  return procSelfCgroup.split('\n').find((l) => l.startsWith('0::'))?.slice(3) ?? '/';
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export class PodCgroupLocator {
  /** Absolute directories searched for kubepods, nearest first. */
  readonly roots: readonly string[];
  readonly #template: string;
  readonly #exists: (path: string) => boolean;

  constructor(opts: { readonly mount: string; readonly ownCgroup: string; readonly template?: string; readonly exists?: (path: string) => boolean }) {
    const nested = nodeRootFromOwnCgroup(opts.ownCgroup);
    const roots = [nested === undefined ? undefined : join(opts.mount, nested), opts.mount].filter((r): r is string => r !== undefined);
    this.roots = Object.freeze([...new Set(roots)]);
    this.#template = opts.template ?? '';
    this.#exists = opts.exists ?? isDirectory;
  }

  /** The pod's cgroup directory; throws WEFT_AGENT_NO_POD_CGROUP naming where it looked. */
  locate(pod: PodRef): string {
    if (this.#template !== '') {
      const path = this.#template.replaceAll('{namespace}', pod.namespace).replaceAll('{name}', pod.name).replaceAll('{uid}', pod.uid ?? '');
      if (pod.uid === undefined && this.#template.includes('{uid}')) throw new WeftError(NO_POD_CGROUP, `pod ${pod.namespace}/${pod.name} has no metadata.uid for --pod-cgroup ${this.#template}`);
      if (!this.#exists(path)) throw new WeftError(NO_POD_CGROUP, `pod ${pod.namespace}/${pod.name}: no cgroup at ${path} (--pod-cgroup ${this.#template})`);
      return path;
    }
    if (pod.uid === undefined) throw new WeftError(NO_POD_CGROUP, `pod ${pod.namespace}/${pod.name} has no metadata.uid, so its cgroup cannot be found (the API server always sets one; a hand-written manifest may not)`);
    for (const root of this.roots) {
      for (const rel of podCgroupCandidates(pod.uid)) {
        const path = join(root, rel);
        if (this.#exists(path)) return path;
      }
    }
    throw new WeftError(NO_POD_CGROUP, `pod ${pod.namespace}/${pod.name}: no cgroup for uid ${pod.uid} under ${this.roots.map((r) => join(r, 'kubepods{.slice,}')).join(' or ')} (systemd or cgroupfs driver, any QoS class); not started yet, or the kubelet uses another --cgroup-root`);
  }
}
