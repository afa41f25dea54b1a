// How the kubelet names pod cgroups, by pod UID and QoS class, under either cgroup driver:
//   systemd:  kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
//   cgroupfs: kubepods/burstable/pod<uid>/<id>
// (Guaranteed pods sit directly under kubepods; the systemd driver writes the UID with '_'
// for '-', since '-' nests slices.) The agent finds an enrolled pod's cgroup from its UID
// with these names; the simulator lays pods out with them. Pure: existence is asked of the
// caller, so every rule is tested with tables.

export type CgroupDriver = 'systemd' | 'cgroupfs';
export const CGROUP_DRIVERS: readonly CgroupDriver[] = Object.freeze(['systemd', 'cgroupfs']);
export type QosClass = 'Guaranteed' | 'Burstable' | 'BestEffort';
const QOS_CLASSES: readonly QosClass[] = ['Guaranteed', 'Burstable', 'BestEffort'];

/** The directory under a node's cgroup root that holds every pod: `kubepods.slice` or `kubepods`. */
export function kubepodsDir(driver: CgroupDriver): string {
  return driver === 'systemd' ? 'kubepods.slice' : 'kubepods';
}

/** The pod's cgroup, relative to the node's cgroup root. */
export function podCgroupRelative(driver: CgroupDriver, qos: QosClass, uid: string): string {
  const tier = qos === 'Guaranteed' ? undefined : qos.toLowerCase();
  if (driver === 'cgroupfs') return ['kubepods', ...(tier === undefined ? [] : [tier]), `pod${uid}`].join('/');
  const escaped = uid.replaceAll('-', '_');
  return tier === undefined
    ? `kubepods.slice/kubepods-pod${escaped}.slice`
    : `kubepods.slice/kubepods-${tier}.slice/kubepods-${tier}-pod${escaped}.slice`;
}

/** A container's cgroup inside its pod's (containerd's names). */
export function containerCgroupName(driver: CgroupDriver, containerId: string): string {
  return driver === 'systemd' ? `cri-containerd-${containerId}.scope` : containerId;
}

/** Every place the pod may be, both drivers and all three QoS classes (the agent does not know either). */
export function podCgroupCandidates(uid: string): string[] {
  return CGROUP_DRIVERS.flatMap((d) => QOS_CLASSES.map((q) => podCgroupRelative(d, q, uid)));
}

/**
 * The node's cgroup root as seen from a process's own cgroup path (from /proc/self/cgroup):
 * the part above `kubepods[.slice]`, or undefined when the process is not in a pod (or sits
 * in a cgroup namespace that hides its real path). The simulator nests every node's root in
 * one hierarchy, which is how one host holds several nodes.
 */
export function nodeRootFromOwnCgroup(ownPath: string): string | undefined {
  const parts = ownPath.split('/');
  const at = parts.findIndex((p) => p === 'kubepods.slice' || p === 'kubepods');
  if (at < 0) return undefined;
  const root = parts.slice(0, at).join('/');
  return root === '' ? '/' : root;
}

export interface ContainerResources {
  readonly requests?: Readonly<Record<string, unknown>>;
  readonly limits?: Readonly<Record<string, unknown>>;
}

const SUFFIX: Readonly<Record<string, number>> = {
  '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Kubernetes quantity (`250m`, `1.5Gi`, `1e3`) as a number; undefined when it does not parse. */
export function parseQuantity(q: unknown): number | undefined {
  if (typeof q === 'number') return Number.isFinite(q) ? q : undefined;
  if (typeof q !== 'string') return undefined;
  const m = /^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(q.trim());
  if (m === null) return undefined;
  return Number(m[1]) * (SUFFIX[m[2] ?? ''] ?? 1);
}

/**
 * The pod's QoS class as the kubelet computes it (cpu and memory of every container and
 * init container): Guaranteed when each has limits for both with requests equal to them
 * (an unset request takes its limit), BestEffort when none sets any, else Burstable.
 */
export function qosClass(containers: readonly ContainerResources[]): QosClass {
  let any = false;
  let guaranteed = containers.length > 0;
  for (const c of containers) {
    for (const r of ['cpu', 'memory']) {
      const limit = parseQuantity(c.limits?.[r]);
      const request = parseQuantity(c.requests?.[r]) ?? limit;
      if ((request ?? 0) !== 0 || (limit ?? 0) !== 0) any = true;
      if (limit === undefined || limit === 0 || request !== limit) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}
