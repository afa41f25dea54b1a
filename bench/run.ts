// `npm run bench [-- --quick]`: builds a simulated cluster, starts the servers and the
// HAProxy relays, tries the weft path, runs every scenario on every available path, writes
// bench/results/bench-<date>-<mode>.{json,md}, and removes everything it started, also on
// failure, on Ctrl-C and past its deadline. Loads go only to the cluster's own addresses.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../src/core/exec.ts';
import { downCluster, upCluster, type BenchCluster } from './cluster.ts';
import { machineInfo } from './machine.ts';
import { maxRelayedConnections, parseOptions, weftAgentArgs, type BenchOptions, type PathName } from './options.ts';
import { directPath } from './paths/direct.ts';
import { startHaproxyPath } from './paths/haproxy.ts';
import { unavailablePath, type BenchPath } from './paths/types.ts';
import { meshProcessesRunning, startWeftPath } from './paths/weft.ts';
import { StartedProcesses } from './pids.ts';
import { buildReport, writeReport, type PathStatus } from './report.ts';
import { runAll } from './runner.ts';
import { selectScenarios } from './scenarios/index.ts';
import { startServers, writeServerFiles } from './servers.ts';
import { clockTicks } from './tools/procstat.ts';

const TOOLS = ['haproxy', 'wrk', 'h2load', 'sockperf', 'iperf3', 'taskset', 'prlimit', 'openssl', 'curl', 'ss', 'nsenter', 'ip'];

const log = (line: string): void => { process.stderr.write(`bench: ${line}\n`); };

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('npm run bench needs root: it builds a simulated cluster (network namespaces, cgroups)');
  const missing = TOOLS.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length > 0) throw new Error(`missing tools: ${missing.join(', ')} (scripts/bootstrap.sh installs them)`);
}

/** Per-namespace sysctls in the cluster's own namespaces only: reuse TIME_WAIT ports for the connection-rate runs. */
async function tuneNamespaces(cluster: BenchCluster): Promise<void> {
  const namespaces = [cluster.plain.client.netns, cluster.mesh.client.netns, ...cluster.state.plan.nodes.map((n) => n.netns)];
  for (const ns of namespaces) await run('nsenter', [`--net=/run/netns/${ns}`, '--', 'sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1']);
}

interface Prepared {
  readonly cluster: BenchCluster;
  readonly weft: BenchPath;
}

async function prepare(name: string, options: BenchOptions, workDir: string, started: StartedProcesses): Promise<Prepared> {
  const wantWeft = options.paths.includes('weft');
  let meshUpFailure: string | undefined;
  let cluster: BenchCluster;
  if (wantWeft) {
    try {
      cluster = await upCluster(name, 'ebpf', workDir, options.meshUpSeconds, weftAgentArgs(options.fdLimit));
    } catch (err: unknown) {
      meshUpFailure = err instanceof Error ? err.message : String(err);
      log(`weft: ${meshUpFailure}; going on without the mesh`);
      await downCluster(name);
      cluster = await upCluster(name, 'off', workDir);
    }
  } else {
    cluster = await upCluster(name, 'off', workDir);
  }
  const haproxyCfg = writeServerFiles(workDir, maxRelayedConnections(options.fdLimit));
  const serverSetup = { workDir, cpus: options.loadCpu, lifetimeSeconds: options.deadlineSeconds, started, fdLimit: options.fdLimit };
  const startAll = async (c: BenchCluster): Promise<number[]> => {
    await tuneNamespaces(c);
    const pods = [c.plain.server['same-node'], c.plain.server['cross-node'], ...(wantWeft ? [c.mesh.server['same-node'], c.mesh.server['cross-node']] : [])];
    const each = await Promise.all(pods.map((p) => startServers(c.pod(p), `${p.namespace}.${p.name}`, serverSetup, haproxyCfg)));
    return each.flat();
  };
  const serverPids = await startAll(cluster);
  if (!wantWeft) return { cluster, weft: unavailablePath('weft', 'not run (--paths)') };

  const weft = await startWeftPath({ cluster, meshUpFailure, cpus: options.proxyCpu });
  log(`weft: ${weft.unavailable ?? 'available'}`);
  if (weft.unavailable !== undefined && meshProcessesRunning(cluster)) {
    // A half-working mesh could still touch the other paths' traffic: rebuild without it.
    log('weft: mesh processes are running but the path does not work; rebuilding the cluster with --mesh off');
    await started.stop(serverPids);
    await downCluster(name);
    cluster = await upCluster(name, 'off', workDir);
    await startAll(cluster);
  }
  return { cluster, weft };
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  preflight();
  const startedAt = new Date();
  const machine = machineInfo();
  const name = `bench${randomBytes(3).toString('hex')}`;
  const workDir = mkdtempSync(join(tmpdir(), 'weft-bench-'));
  const started = new StartedProcesses();
  const paths: BenchPath[] = [];
  const abort = new AbortController();
  let clusterUp = false;
  let cleaned: Promise<void> | undefined;
  let keepLogs = false;

  const cleanup = (): Promise<void> => {
    cleaned ??= (async () => {
      for (const p of paths) await p.close().catch(() => undefined);
      await started.stopAll();
      if (clusterUp) {
        const problem = await downCluster(name);
        if (problem !== undefined) log(problem);
      }
      if (keepLogs) log(`logs kept in ${workDir}`);
      else rmSync(workDir, { recursive: true, force: true });
    })();
    return cleaned;
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    log(`${sig}: stopping and cleaning up`);
    abort.abort(sig);
    keepLogs = true;
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const deadline = setTimeout(() => {
    log(`deadline of ${options.deadlineSeconds} s reached: stopping after the current run`);
    abort.abort('deadline');
  }, options.deadlineSeconds * 1000);
  deadline.unref();

  try {
    log(`cluster ${name}, work directory ${workDir}`);
    clusterUp = true; // from here on `down` must run, even if `up` fails half way
    const { cluster, weft } = await prepare(name, options, workDir, started);
    paths.push(directPath(cluster));
    if (options.paths.includes('haproxy')) paths.push(await startHaproxyPath({ cluster, workDir, cpus: options.proxyCpu, started, maxconn: maxRelayedConnections(options.fdLimit) }));
    else paths.push(unavailablePath('haproxy', 'not run (--paths)'));
    paths.push(weft);

    const scenarios = selectScenarios(options.scenarios);
    const results = await runAll({ options, hz: clockTicks(), log }, scenarios, paths, abort.signal);
    const statuses: PathStatus[] = paths.map((p) => ({ name: p.name, available: p.unavailable === undefined, status: p.unavailable ?? statusLine(p.name) }));
    const report = buildReport({
      options, machine, startedAt, scenarios, paths: statuses, results,
      ...(abort.signal.aborted ? { aborted: String(abort.signal.reason) } : {}),
    });
    const files = writeReport(report, options.outDir);
    process.stdout.write(`${readFileSync(files.markdown, 'utf8')}\n`);
    log(`wrote ${files.json} and ${files.markdown}`);
    if (report.errors.length > 0 || report.aborted !== undefined) {
      keepLogs = true;
      log(`${report.errors.length} run(s) failed${report.aborted !== undefined ? `; stopped early (${report.aborted})` : ''}`);
      return 1;
    }
    return 0;
  } catch (err: unknown) {
    keepLogs = true;
    throw err;
  } finally {
    clearTimeout(deadline);
    await cleanup();
  }
}

function statusLine(name: PathName): string {
  switch (name) {
    case 'direct': return 'measured: pod to pod, no proxy';
    case 'haproxy': return 'measured: HAProxy (Debian), 1 thread per node; same-node a relay in node-1, cross-node node-1 → mutual TLS 1.3 → node-2; mode http on the HTTP ports (wrk, h2load), mode tcp on the others';
    case 'weft': return 'measured: captured by eBPF; same-node through node-1\'s agent, cross-node through the mTLS tunnel (15008) to node-2\'s agent';
  }
}

main().then((code) => { process.exitCode = code; }, (err: unknown) => {
  log(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
