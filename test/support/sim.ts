// Drives the real `weft` CLI for end-to-end tests: a cluster per test file, with a random
// name so parallel runs never clash, always taken down afterwards.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export const WEFT = join(import.meta.dirname, '..', '..', 'bin', 'weft');

export interface CliResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function weft(args: readonly string[], opts: { timeoutMs?: number; wrap?: readonly string[] } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...rest] = [...(opts.wrap ?? []), WEFT, ...args];
    const child = spawn(cmd ?? WEFT, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 180_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status: status ?? -1, stdout, stderr });
    });
  });
}

/** The rendered install (the Helm chart's output, committed). */
export const INSTALL_MANIFEST = join(import.meta.dirname, '..', '..', 'deploy', 'weft.yaml');

/**
 * The two ways an end-to-end test brings up the mesh: the agents and control plane `weft sim`
 * starts itself, and the rendered install (`--install deploy/weft.yaml`: the chart's
 * Deployment and DaemonSet, as a cluster runs them). A test that loops over these holds for
 * both, so a broken manifest breaks it. Each entry: a label for the test name, `sim up` args.
 */
export const MESH_SETUPS: readonly (readonly [string, readonly string[]])[] = [
  ['sim mesh', []],
  ['installed from deploy/weft.yaml', ['--install', INSTALL_MANIFEST]],
];

export function uniqueName(prefix: string): string {
  return `${prefix}${randomBytes(3).toString('hex')}`;
}

export interface SimStatus {
  name: string;
  mesh: string;
  nodes: { name: string; ip: string; netns: string; bridgeIp: string; cgroup: string }[];
  cgroupDriver: string;
  pods: { name: string; namespace: string; node: string; ip: string; netns: string; serviceAccount: string; labels: Record<string, string>; enrolled: boolean; uid: string; qos: string; cgroup: string; containerCgroup: string; pid: number }[];
  services: { name: string; namespace: string; vip: string; ports: { port: number; targetPort: number }[] }[];
  /** The cgroup each mesh process runs in, by component (`control`, `agent/<node>`). */
  meshCgroups: Record<string, string>;
  /** Where agents reach the control plane and the CA file that verifies it; absent without a mesh. */
  control?: { address: string; caFile: string };
}

/** Brings a cluster up for the test and registers its removal; returns its status. */
export async function simCluster(t: TestContext, name: string, upArgs: readonly string[]): Promise<SimStatus> {
  t.after(async () => {
    const r = await weft(['sim', 'down', '--name', name]);
    if (r.status !== 0) process.stderr.write(`sim down ${name} failed: ${r.stderr}\n`);
  });
  const r = await weft(['sim', 'up', '--name', name, ...upArgs]);
  if (r.status !== 0) throw new Error(`sim up failed (${r.status}): ${r.stderr}`);
  const s = await weft(['sim', 'status', '--name', name, '--json']);
  return JSON.parse(s.stdout) as SimStatus;
}

/** Runs a command in a pod and returns its result. */
export function inPod(cluster: string, pod: string, command: readonly string[], timeoutMs?: number): Promise<CliResult> {
  return weft(['sim', 'exec', '--name', cluster, pod, '--', ...command], timeoutMs === undefined ? {} : { timeoutMs });
}
