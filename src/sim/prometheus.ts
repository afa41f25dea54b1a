// `weft sim up --prometheus`: Debian's Prometheus in the cluster's underlay namespace,
// scraping every agent (nodeIP:15020) and the control plane (:15014) every 2 s with weft's
// alert and recording rules loaded, reachable from the host through a loopback port-forward
// (a detached `weft sim port-forward`) whose URL `sim up` prints. Both run in the cluster's
// cgroup, so `sim down` ends them with everything else.

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';

import { WeftError } from '../core/errors.ts';
import { run } from '../core/exec.ts';
import { CONTROL_IP } from './addresses.ts';
import { makeCgroup } from './cgroups.ts';
import { SimErrors } from './errors.ts';
import type { ClusterPlan } from './plan.ts';
import { startDetached } from './processes.ts';
import { clusterDir, writeState, type ClusterState } from './state.ts';

export const RULES_FILE = join(import.meta.dirname, '..', '..', 'deploy', 'prometheus', 'weft-rules.yaml');
/** Prometheus's own address, on loopback inside the underlay namespace. */
export const PROMETHEUS_LISTEN = { host: '127.0.0.1', port: 9090 } as const;
export const PROMETHEUS_URL = `http://${PROMETHEUS_LISTEN.host}:${PROMETHEUS_LISTEN.port}`;
const AGENT_METRICS_PORT = 15020;
const CONTROL_METRICS_PORT = 15014;
const CLI = join(import.meta.dirname, '..', 'cli', 'main.ts');
const READY_TIMEOUT_MS = 60_000;

/** The scrape config: jobs weft-agent (instance = node name) and weft-control, rules loaded. Pure. */
export function prometheusConfig(plan: ClusterPlan, rulesFile: string): string {
  return stringify({
    global: { scrape_interval: '2s', scrape_timeout: '2s', evaluation_interval: '2s' },
    rule_files: [rulesFile],
    scrape_configs: [
      {
        job_name: 'weft-agent',
        static_configs: plan.nodes.map((n) => ({ targets: [`${n.ip}:${AGENT_METRICS_PORT}`], labels: { instance: n.name } })),
      },
      { job_name: 'weft-control', static_configs: [{ targets: [`${CONTROL_IP}:${CONTROL_METRICS_PORT}`], labels: { instance: 'control' } }] },
    ],
  });
}

function dir(state: ClusterState): string {
  return join(clusterDir(state.plan.name), 'prometheus');
}

/** Starts Prometheus and its port-forward; resolves once Prometheus answers /-/ready and the URL is known. */
export async function startPrometheus(state: ClusterState, hostPort: number): Promise<ClusterState> {
  const { plan } = state;
  const base = dir(state);
  mkdirSync(join(base, 'data'), { recursive: true });
  const config = join(base, 'prometheus.yml');
  writeFileSync(config, prometheusConfig(plan, RULES_FILE));
  const logs = join(clusterDir(plan.name), 'logs');
  const cgroup = (role: string): string => {
    const path = join(state.cgroupMount, plan.cgroup, role);
    makeCgroup(path);
    return path;
  };
  const prometheus = startDetached({ cgroup: cgroup('prometheus'), netns: plan.underlayNetns }, [
    'prometheus', `--config.file=${config}`, `--storage.tsdb.path=${join(base, 'data')}`, '--storage.tsdb.retention.time=2h',
    `--web.listen-address=${PROMETHEUS_LISTEN.host}:${PROMETHEUS_LISTEN.port}`,
  ], { PATH: process.env.PATH }, join(logs, 'prometheus.log'));
  let next: ClusterState = { ...state, addons: { ...state.addons, prometheus } };
  writeState(next);
  await waitReady(plan.underlayNetns, logs);

  // The forward runs in the root namespace (it listens on the host's loopback) but in the
  // cluster's cgroup.
  const urlFile = join(base, 'url');
  rmSync(urlFile, { force: true });
  const forward = startDetached({ cgroup: cgroup('forward-prometheus'), netns: '' }, [
    process.execPath, CLI, 'sim', 'port-forward', '--name', plan.name, '--to', `${PROMETHEUS_LISTEN.host}:${PROMETHEUS_LISTEN.port}`,
    '--port', String(hostPort), '--url-file', urlFile,
  ], { PATH: process.env.PATH, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE }, join(logs, 'forward-prometheus.log'));
  next = { ...next, addons: { ...next.addons, 'forward-prometheus': forward } };
  writeState(next);
  const deadline = Date.now() + 20_000;
  while (!existsSync(urlFile)) {
    if (Date.now() > deadline) throw new WeftError(SimErrors.WORKLOAD_NOT_READY, `the Prometheus port-forward did not start; see ${join(logs, 'forward-prometheus.log')}`);
    await sleep(50);
  }
  return { ...next, prometheusUrl: readFileSync(urlFile, 'utf8').trim() };
}

async function waitReady(netns: string, logs: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const { stdout } = await run('nsenter', [`--net=/run/netns/${netns}`, 'curl', '-s', '-m', '1', '-o', '/dev/null', '-w', '%{http_code}', `${PROMETHEUS_URL}/-/ready`], { okStatus: [0, 7, 28, 52, 56] });
    if (stdout.trim() === '200') return;
    if (Date.now() > deadline) throw new WeftError(SimErrors.WORKLOAD_NOT_READY, `Prometheus did not become ready within ${READY_TIMEOUT_MS / 1000} s; see ${join(logs, 'prometheus.log')}`);
    await sleep(200);
  }
}
