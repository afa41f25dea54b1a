// The simulator's kubelet for installed workloads: makes a pod's volumes real (tokens by
// TokenRequest, ConfigMaps and Secrets from the API — waiting for them as the kubelet does —,
// hostPaths in the node's own directory, emptyDirs), writes its /etc/hosts (the cluster DNS
// names of Services), and starts its container in the pod's cgroup and network namespace, in
// a mount namespace of its own where every volume sits at its mountPath, with the user and
// capabilities of its securityContext. The command line is the pod spec's, untouched.

import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../../core/exec.ts';
import { WeftError } from '../../core/errors.ts';
import { SimErrors } from '../errors.ts';
import { makeCgroup } from '../cgroups.ts';
import { startDetached, type Placement } from '../processes.ts';
import type { SimApiClient } from './api-client.ts';
import type { PodRun, VolumeSource } from './pod-spec.ts';

type Body = Record<string, unknown>;

/** One pod of an installed workload, placed on a node. */
export interface InstalledPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly node: string;
  readonly podIP: string;
  readonly hostIP: string;
  /** Where its container runs: the container's cgroup (absolute) and the pod's (or, hostNetwork, the node's) netns. */
  readonly placement: Placement;
}

export interface KubeletPaths {
  /** The pod's own directory (volumes, hosts file). */
  readonly podDir: string;
  /** The node's file system root for hostPath volumes (the sim's nodes share the machine's). */
  readonly nodeRoot: string;
  /** The node's part of bpffs, mounted at /sys/fs/bpf (each simulated node has its own pins). */
  readonly nodeBpffs: string;
  /** The API server's CA certificate (ca.crt of the API access volume). */
  readonly apiCaFile: string;
}

export interface Mount {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

const VOLUME_WAIT_MS = 60_000;
/** The kubelet's default mode for projected, ConfigMap and Secret files. */
const FILE_MODE = 0o644;

const CLI = join(import.meta.dirname, '..', '..', 'cli', 'main.ts');

async function waitObject(api: SimApiClient, path: string, optional: boolean, what: string): Promise<Body | undefined> {
  const deadline = Date.now() + VOLUME_WAIT_MS;
  for (;;) {
    const o = await api.get(path);
    if (o !== undefined || optional) return o;
    if (Date.now() > deadline) throw new WeftError(SimErrors.WORKLOAD_NOT_READY, `${what}: ${path} did not appear within ${VOLUME_WAIT_MS / 1000} s (the kubelet keeps such a pod in ContainerCreating)`);
    await sleep(100);
  }
}

async function writeSource(api: SimApiClient, pod: InstalledPod, serviceAccount: string, s: VolumeSource, dir: string, paths: KubeletPaths, what: string): Promise<void> {
  const put = (file: string, text: string): void => {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), text, { mode: FILE_MODE });
  };
  switch (s.type) {
    case 'token':
      put(s.path, await api.token(pod.namespace, serviceAccount, s.audience === undefined ? [] : [s.audience], s.expirationSeconds, pod));
      return;
    case 'apiAccess':
      put('token', await api.token(pod.namespace, serviceAccount, [], 3607, pod));
      put('namespace', pod.namespace);
      put('ca.crt', readFileSync(paths.apiCaFile, 'utf8'));
      return;
    case 'configMap': {
      const cm = await waitObject(api, `/api/v1/namespaces/${pod.namespace}/configmaps/${s.name}`, s.optional, what);
      for (const [k, v] of Object.entries((cm?.data ?? {}) as Record<string, string>)) put(k, v);
      return;
    }
    case 'secret': {
      const secret = await waitObject(api, `/api/v1/namespaces/${pod.namespace}/secrets/${s.name}`, s.optional, what);
      for (const [k, v] of Object.entries((secret?.data ?? {}) as Record<string, string>)) put(k, Buffer.from(v, 'base64').toString('utf8'));
      return;
    }
    default:
  }
}

/**
 * Writes a token, ConfigMap or Secret volume as the kubelet's AtomicWriter does: the files in
 * a fresh `..<timestamp>` directory, `..data` pointing at it, and each name a symlink into
 * `..data`; a later write swaps `..data` with one rename, so a reader of the mounted volume
 * sees the old set or the new one, never half, and the files' paths never change.
 */
async function writeVolume(api: SimApiClient, pod: InstalledPod, podRun: PodRun, m: PodRun['mounts'][number], volumeDir: string, paths: KubeletPaths): Promise<void> {
  const stamp = `..${new Date().toISOString().replace(/[-:.]/g, '_')}.${randomBytes(4).toString('hex')}`;
  mkdirSync(join(volumeDir, stamp), { recursive: true });
  for (const s of m.sources) await writeSource(api, pod, podRun.serviceAccount, s, join(volumeDir, stamp), paths, `pod ${pod.namespace}/${pod.name}`);
  const data = join(volumeDir, '..data');
  const previous = lstatSync(data, { throwIfNoEntry: false }) === undefined ? undefined : readlinkSync(data);
  rmSync(join(volumeDir, '..data_tmp'), { force: true });
  symlinkSync(stamp, join(volumeDir, '..data_tmp'));
  renameSync(join(volumeDir, '..data_tmp'), data);
  for (const entry of readdirSync(join(volumeDir, stamp))) {
    if (lstatSync(join(volumeDir, entry), { throwIfNoEntry: false }) === undefined) symlinkSync(join('..data', entry), join(volumeDir, entry));
  }
  if (previous !== undefined && previous !== stamp) rmSync(join(volumeDir, previous), { recursive: true, force: true });
}

function isKubeletVolume(m: PodRun['mounts'][number]): boolean {
  return !(m.sources.length === 1 && m.sources[0]?.type === 'hostPath');
}

/**
 * The kubelet's periodic sync of a running pod's volumes: a new token for each projected
 * serviceAccountToken (the kubelet asks once 80% of a token's lifetime has passed), the
 * current ConfigMaps and Secrets; each volume swapped in atomically. Returns the volumes synced.
 */
export async function syncVolumes(api: SimApiClient, pod: InstalledPod, podRun: PodRun, paths: KubeletPaths): Promise<string[]> {
  const synced: string[] = [];
  for (const m of podRun.mounts.filter(isKubeletVolume)) {
    await writeVolume(api, pod, podRun, m, join(paths.podDir, 'volumes', m.volume), paths);
    synced.push(m.volume);
  }
  return synced;
}

/** Makes every volume of `run` real; returns the bind mounts, parents before children. */
export async function prepareVolumes(api: SimApiClient, pod: InstalledPod, podRun: PodRun, paths: KubeletPaths, hostsText: string): Promise<Mount[]> {
  const mounts: Mount[] = [];
  for (const m of podRun.mounts) {
    const first = m.sources[0];
    let source: string;
    if (m.sources.length === 1 && first?.type === 'hostPath') {
      // The simulated nodes share the machine's cgroup tree: that hostPath is already where
      // the pod wants it (a bind of it would not carry the cgroup2 mount under it either).
      if (first.path === '/sys/fs/cgroup' && m.mountPath === first.path) continue;
      source = first.path === '/sys/fs/bpf' ? paths.nodeBpffs : join(paths.nodeRoot, first.path);
      mkdirSync(source, { recursive: true });
    } else {
      source = join(paths.podDir, 'volumes', m.volume);
      mkdirSync(source, { recursive: true });
      if (m.sources.some((x) => x.type !== 'emptyDir')) await writeVolume(api, pod, podRun, m, source, paths);
    }
    mounts.push({ source, target: m.mountPath, readOnly: m.readOnly });
  }
  const hosts = join(paths.podDir, 'etc-hosts');
  writeFileSync(hosts, hostsText, { mode: FILE_MODE });
  mounts.push({ source: hosts, target: '/etc/hosts', readOnly: true });
  return mountOrder(mounts);
}

/**
 * Parents before children; and a mount that would cover another's source (the agent's
 * /var/run/weft is where the simulator keeps its files) after every mount it would hide.
 * Targets are compared as the kernel resolves them (/var/run is /run).
 */
export function mountOrder(mounts: readonly Mount[], resolve: (path: string) => string = resolveExisting): Mount[] {
  const real = new Map(mounts.map((m) => [m, resolve(m.target)]));
  const covers = (m: Mount): boolean => mounts.some((o) => o !== m && (o.source === real.get(m) || o.source.startsWith(`${real.get(m) ?? ''}/`)));
  const depth = (m: Mount): number => m.target.split('/').length;
  return [...mounts].sort((a, b) => Number(covers(a)) - Number(covers(b)) || depth(a) - depth(b));
}

/** The real path of `path`'s longest existing ancestor, with the rest appended. */
function resolveExisting(path: string): string {
  let head = path;
  let tail = '';
  while (head !== '/' && !existsSync(head)) {
    tail = `/${basename(head)}${tail}`;
    head = dirname(head);
  }
  return `${realpathSync(head).replace(/\/$/, '')}${tail}`;
}

/** /etc/hosts as the pod's resolver would answer: itself, then each Service's names -> its VIP (or, headless, each ready endpoint). */
export function hostsFile(pod: { name: string; podIP: string }, services: readonly { name: string; namespace: string; ips: readonly string[] }[]): string {
  const lines = ['# written by weft sim (the cluster DNS of the simulated pod)', '127.0.0.1\tlocalhost', `${pod.podIP}\t${pod.name}`];
  for (const s of services) {
    for (const ip of s.ips) lines.push(`${ip}\t${s.name}.${s.namespace}.svc.cluster.local ${s.name}.${s.namespace}.svc ${s.name}.${s.namespace}`);
  }
  return `${lines.join('\n')}\n`;
}

// $1 is ro-root|rw-root, then (source, target, ro|rw) triples up to `--`, then the command.
// Inside a private mount namespace, so nothing is mounted anywhere else; `exec` keeps the PID
// the simulator recorded. ro-root (readOnlyRootFilesystem) makes every mount read-only but the
// kernel's own /proc and /dev, as a container's root file system is; the volumes then go on
// top, each made rw or ro explicitly (a bind inherits its source mount's read-only flag).
// mount(2), not libmount's new API: that refuses to change the flags of the root mount.
// $1 ro-root|rw-root, $2 the image directory a volume covers (or -), then source target ro|rw
// triples, --, the command. A covered image is held open before the volumes go on and bound
// back (read-only) over them from that descriptor, as a container's image is under its volumes.
const MOUNT_SCRIPT = [
  'export LIBMOUNT_FORCE_MOUNT2=always',
  'image="$2"',
  'if [ "$image" != - ]; then exec 9<"$image" || exit 111; fi',
  'if [ "$1" = ro-root ]; then while read -r _ _ _ _ m _; do case "$m" in /proc|/proc/*|/dev|/dev/*) ;; *) mount -o remount,bind,ro "$m" || exit 111;; esac; done < /proc/self/mountinfo; fi',
  'shift 2',
  'while [ "$1" != "--" ]; do mount --bind "$1" "$2" || exit 111; mount -o "remount,bind,$3" "$2" || exit 111; shift 3; done',
  'if [ "$image" != - ]; then { mkdir -p "$image" && mount --no-canonicalize --bind /proc/self/fd/9 "$image" && mount -o remount,bind,ro "$image"; } || exit 111; exec 9<&-; fi',
  'shift; unset LIBMOUNT_FORCE_MOUNT2; exec "$@"',
].join('\n');

/** The project directory the simulator runs as the container image (Node and weft live there). */
const IMAGE_ROOT = join(import.meta.dirname, '..', '..', '..');

/**
 * The image directory when a volume's mountPath would hide it (the project cloned under /tmp,
 * where the agent's emptyDir goes), else undefined.
 */
export function coveredImage(mounts: readonly Mount[], image: string = IMAGE_ROOT, resolve: (path: string) => string = resolveExisting): string | undefined {
  const real = resolve(image);
  return mounts.some((m) => {
    const target = resolve(m.target);
    return target === real || real.startsWith(target === '/' ? '/' : `${target}/`);
  }) ? real : undefined;
}

/** The setpriv prefix that gives the process the securityContext's user and capabilities. */
export function securityPrefix(podRun: PodRun): string[] {
  const out = ['setpriv', '--no-new-privs'];
  if (podRun.runAsUser !== undefined && podRun.runAsUser !== 0) {
    out.push(`--reuid=${podRun.runAsUser}`, `--regid=${podRun.runAsGroup ?? podRun.runAsUser}`, '--clear-groups');
  }
  const caps = podRun.capabilities;
  if (caps !== undefined && caps.drop.includes('ALL')) {
    const add = caps.add.map((c) => `+${c.toLowerCase()}`);
    out.push('--inh-caps=-all', `--bounding-set=${['-all', ...add].join(',')}`);
  }
  return [...out, '--'];
}

/** HOME as the container runtime sets it (runc): the user's home in /etc/passwd, else /. */
function homeOf(uid: number): string {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.split(':')[2] === String(uid));
  return line?.split(':')[5] || '/';
}

/** Whether process `pid` holds a TCP socket listening on `port` (its fds against its netns' /proc/net/tcp{,6}). */
export function listensOn(pid: number, port: number): boolean {
  let inodes: Set<string>;
  try {
    inodes = new Set(readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      } catch {
        return undefined; // closed meanwhile
      }
    }).filter((i): i is string => i !== undefined));
  } catch {
    return false; // gone
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st ... inode: state 0A is LISTEN.
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && f[1]?.endsWith(`:${hexPort}`) === true && inodes.has(f[9] ?? '')) return true;
    }
  }
  return false;
}

/**
 * Creates the mount points the pod needs that the machine lacks (empty directories, returned
 * so `sim down` can remove them), then starts the container. Returns its PID and the directories made.
 */
export function startContainer(pod: InstalledPod, podRun: PodRun, mounts: readonly Mount[], env: NodeJS.ProcessEnv, logFile: string): { pid: number; madeDirs: string[] } {
  const madeDirs: string[] = [];
  for (const m of mounts) {
    if (m.target === '/etc/hosts') continue;
    const made = mkdirSync(m.target, { recursive: true });
    if (made !== undefined) madeDirs.push(made);
  }
  makeCgroup(pod.placement.cgroup);
  const image = podRun.command ?? [process.execPath, CLI];
  const command = [
    'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', MOUNT_SCRIPT, 'mounts', podRun.readOnlyRootFilesystem ? 'ro-root' : 'rw-root',
    coveredImage(mounts) ?? '-',
    ...mounts.flatMap((m) => [m.source, m.target, m.readOnly ? 'ro' : 'rw']), '--',
    ...securityPrefix(podRun), ...image, ...podRun.args,
  ];
  const pid = startDetached(pod.placement, command, { ...env, HOME: homeOf(podRun.runAsUser ?? 0), ...podRun.env }, logFile);
  return { pid, madeDirs };
}

/**
 * Polls the readiness probe from inside the pod's network namespace until it answers 200.
 * Only once the container's process `pid` listens on the probe's port itself: a hostNetwork
 * pod started beside the one it replaces (a surge rollout, `sim mesh restart --overlap`)
 * shares the node's ports with it, and the old process would answer for the new one. (A real
 * kubelet probes each pod at its own IP; the old agent also turns unready once a newer one
 * owns capture.)
 */
export async function waitReadiness(pod: InstalledPod, podRun: PodRun, timeoutMs: number, logFile: string, pid?: number): Promise<void> {
  const probe = podRun.readiness;
  if (probe === undefined) return;
  const url = `http://${pod.podIP}:${probe.port}${probe.path}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (pid !== undefined && !listensOn(pid, probe.port)) {
      if (Date.now() > deadline) throw new WeftError(SimErrors.WORKLOAD_NOT_READY, `pod ${pod.namespace}/${pod.name}: its container never listened on its readiness port ${probe.port} within ${timeoutMs / 1000} s; see ${logFile}`);
      await sleep(100);
      continue;
    }
    const r = await run('nsenter', [`--net=/run/netns/${pod.placement.netns}`, '--', 'curl', '-sf', '-o', '/dev/null', '-m', '1', url], { code: SimErrors.COMMAND_FAILED, okStatus: [0, 7, 22, 28, 52, 56] });
    if (r.status === 0) return;
    if (Date.now() > deadline) throw new WeftError(SimErrors.WORKLOAD_NOT_READY, `pod ${pod.namespace}/${pod.name}: its readiness probe ${url} did not pass within ${timeoutMs / 1000} s; see ${logFile}`);
    await sleep(200);
  }
}
