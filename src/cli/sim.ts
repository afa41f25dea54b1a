// `weft sim up|down|status|exec`: the simulated cluster (see src/sim/).

import { writeFileSync } from 'node:fs';
import { WeftError } from '../core/errors.ts';
import { CGROUP_DRIVERS } from '../core/kubelet-cgroups.ts';
import { readManifests } from '../config/manifest-files.ts';
import { SimErrors } from '../sim/errors.ts';
import { down, downAll, exec, statusJson, up } from '../sim/cluster.ts';
import { readState, type ClusterState } from '../sim/state.ts';
import { DASHBOARD_PORT, dashboardNetns, restartComponent, startComponent, stopComponent } from '../sim/mesh.ts';
import { portForward } from '../sim/port-forward.ts';
import { advanceTokenClock, syncInstalledVolumes } from '../sim/install/install.ts';
import { intFlag, oneOf, parseFlags, requiredFlag, usageError } from './args.ts';

const USAGE = `weft sim up --name NAME --nodes N [--pods-per-node M] [--manifests DIR] [--mesh ebpf|iptables|auto|off] [--agent-args "FLAGS"]
              [--prometheus [--prometheus-port P]] [--cgroup-driver systemd|cgroupfs] [--install FILE|DIR]
                 (--install: run the mesh from rendered install objects, e.g. deploy/weft.yaml, as a cluster would;
                  --control-args "FLAGS": appended to its control-plane container's args)
       weft sim down (--name NAME | --all)
       weft sim mesh --name NAME (start|stop|restart) (control|agent/NODE) [--kill] [--overlap]
       weft sim mesh --name NAME sync-volumes (control|agent/NODE)   (--install: the kubelet's volume sync: new tokens, current ConfigMaps)
       weft sim token-clock --name NAME --advance SECONDS            (--install: the API server's tokens age by SECONDS)
       weft sim status --name NAME [--json]
       weft sim exec --name NAME (POD|agent/NODE|control/I) -- CMD...   (agent/NODE, control/I: into an install's container)
       weft sim dashboard --name NAME [--port P]
       weft sim port-forward --name NAME --to HOST:PORT [--port P] [--url-file FILE]   (into the underlay namespace)`;

const MESH_MODES = ['off', 'auto', 'ebpf', 'iptables'] as const;

export async function simCommand(argv: readonly string[]): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case 'up': return simUp(rest);
    case 'down': return simDown(rest);
    case 'status': return simStatus(rest);
    case 'exec': return simExec(rest);
    case 'mesh': return simMesh(rest);
    case 'dashboard': return simDashboard(rest);
    case 'port-forward': return simPortForward(rest);
    case 'token-clock': return simTokenClock(rest);
    default: throw usageError(verb === undefined ? 'missing sim subcommand' : `unknown sim subcommand ${JSON.stringify(verb)}`, USAGE);
  }
}

// parseArgs takes a value that starts with '-' only as --flag=value, and agent flags always do.
function joinFlagValue(argv: readonly string[], flag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (argv[i] === flag && next !== undefined) {
      out.push(`${flag}=${next}`);
      i++;
    } else out.push(argv[i] ?? '');
  }
  return out;
}

async function simUp(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(joinFlagValue(joinFlagValue(argv, '--agent-args'), '--control-args'), {
    name: { type: 'string' }, nodes: { type: 'string' }, 'pods-per-node': { type: 'string' },
    manifests: { type: 'string' }, mesh: { type: 'string' }, 'agent-args': { type: 'string' }, 'control-args': { type: 'string' }, 'cgroup-driver': { type: 'string' },
    prometheus: { type: 'boolean' }, 'prometheus-port': { type: 'string' }, install: { type: 'string' },
  }, USAGE);
  const name = requiredFlag(values.name, '--name', USAGE);
  const nodes = intFlag(values.nodes, '--nodes', undefined, USAGE);
  const manifests = values.manifests === undefined ? undefined : readManifests(values.manifests, SimErrors.BAD_MANIFEST);
  const podsPerNode = intFlag(values['pods-per-node'], '--pods-per-node', manifests === undefined ? 3 : 0, USAGE);
  // With --install the chart's own --mode stands unless --mesh overrides it.
  const mesh = oneOf(values.mesh, '--mesh', MESH_MODES, values.install === undefined ? 'ebpf' : 'auto', USAGE);
  const cgroupDriver = oneOf(values['cgroup-driver'], '--cgroup-driver', CGROUP_DRIVERS, 'systemd', USAGE);
  const agentArgs = (values['agent-args'] ?? '').split(/\s+/).filter((a) => a !== '');
  const controlArgs = (values['control-args'] ?? '').split(/\s+/).filter((a) => a !== '');
  if (controlArgs.length > 0 && values.install === undefined) throw usageError('--control-args patches the installed control-plane Deployment: it goes with --install', USAGE);
  const started = Date.now();
  if (values['prometheus-port'] !== undefined && values.prometheus !== true) throw usageError('--prometheus-port goes with --prometheus', USAGE);
  const prometheus = values.prometheus === true ? { port: intFlag(values['prometheus-port'], '--prometheus-port', 0, USAGE) } : undefined;
  const install = values.install === undefined ? undefined : { source: values.install, files: readManifests(values.install, SimErrors.BAD_MANIFEST), overrideMode: values.mesh !== undefined };
  const state = await up({ name, nodes, podsPerNode, manifests, mesh, agentArgs, controlArgs, prometheus, cgroupDriver, install, log: (l) => process.stderr.write(`sim ${name}: ${l}\n`) });
  process.stdout.write(`cluster ${name} is up in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  printStatus(state);
  if (state.prometheusUrl !== undefined) {
    process.stdout.write(`\nprometheus: ${state.prometheusUrl}  (scraping every agent and the control plane, weft-rules.yaml loaded; a loopback port-forward)\n`);
  }
  process.stdout.write(`\nTry:  weft sim exec --name ${name} ${state.plan.pods[0]?.name ?? 'POD'} -- curl -s http://${state.plan.pods.at(-1)?.ip ?? 'IP'}:8080/\n      weft sim down --name ${name}\n`);
  return 0;
}

async function simDown(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, { name: { type: 'string' }, all: { type: 'boolean' } }, USAGE);
  if (values.all === true) {
    if (values.name !== undefined) throw usageError('give either --name or --all, not both', USAGE);
    const removed = await downAll();
    process.stdout.write(removed.length === 0 ? 'nothing to remove\n' : `removed: ${removed.join(', ')}\n`);
    return 0;
  }
  const name = requiredFlag(values.name, '--name (or --all)', USAGE);
  await down(name);
  process.stdout.write(`cluster ${name} removed\n`);
  return 0;
}

async function simStatus(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, { name: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  const state = readState(requiredFlag(values.name, '--name', USAGE));
  if (values.json === true) process.stdout.write(`${JSON.stringify(statusJson(state), null, 2)}\n`);
  else printStatus(state);
  return Promise.resolve(0);
}

async function simExec(argv: readonly string[]): Promise<number> {
  const dash = argv.indexOf('--');
  if (dash < 0) throw usageError('missing -- before the command', USAGE);
  const { values, positionals } = parseFlags(argv.slice(0, dash), { name: { type: 'string' } }, USAGE, true);
  const name = requiredFlag(values.name, '--name', USAGE);
  const pod = positionals[0];
  if (pod === undefined || positionals.length > 1) throw usageError('give exactly one POD before --', USAGE);
  return exec(name, pod, argv.slice(dash + 1));
}

async function simMesh(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { name: { type: 'string' }, kill: { type: 'boolean' }, overlap: { type: 'boolean' } }, USAGE, true);
  const [verb, component] = positionals;
  if (component === undefined || positionals.length !== 2) throw usageError('give a verb and a component, e.g. restart agent/node-1', USAGE);
  const state = readState(requiredFlag(values.name, '--name', USAGE));
  const opts = { kill: values.kill === true, overlap: values.overlap === true };
  const started = Date.now();
  switch (verb) {
    case 'start': await startComponent(state, component); break;
    case 'stop': await stopComponent(state, component, opts); break;
    case 'restart': await restartComponent(state, component, opts); break;
    case 'sync-volumes': {
      if (state.install === undefined) throw usageError(`cluster ${state.plan.name} was not brought up with --install: its mesh has no pod volumes`, USAGE);
      for (const line of await syncInstalledVolumes(state, component)) process.stdout.write(`synced ${line}\n`);
      break;
    }
    default: throw usageError(`unknown mesh verb ${JSON.stringify(verb)}: start, stop, restart or sync-volumes`, USAGE);
  }
  process.stdout.write(`${component}: ${verb} done in ${Date.now() - started} ms\n`);
  return 0;
}

/** The simulated API server's token time moves on, so tests can see tokens expire and be refreshed without waiting an hour. */
async function simTokenClock(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, { name: { type: 'string' }, advance: { type: 'string' } }, USAGE);
  const state = readState(requiredFlag(values.name, '--name', USAGE));
  const seconds = intFlag(values.advance, '--advance', undefined, USAGE);
  if (seconds <= 0) throw usageError('--advance must be a positive number of seconds', USAGE);
  await advanceTokenClock(state, seconds);
  process.stdout.write(`tokens of cluster ${state.plan.name} are ${seconds} s older\n`);
  return 0;
}

/** Forwards 127.0.0.1:P on the host to HOST:PORT in the underlay namespace until stopped; writes the URL to --url-file. */
async function simPortForward(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, { name: { type: 'string' }, to: { type: 'string' }, port: { type: 'string' }, 'url-file': { type: 'string' } }, USAGE);
  const state = readState(requiredFlag(values.name, '--name', USAGE));
  const to = /^([^:\s]+):(\d{1,5})$/.exec(requiredFlag(values.to, '--to', USAGE));
  if (to === null) throw usageError(`--to must be HOST:PORT, got ${JSON.stringify(values.to)}`, USAGE);
  const forward = await portForward({ netns: state.plan.underlayNetns, target: { host: to[1] ?? '', port: Number(to[2]) }, port: intFlag(values.port, '--port', 0, USAGE) });
  if (values['url-file'] !== undefined) writeFileSync(values['url-file'], `${forward.url}\n`);
  process.stdout.write(`${forward.url} -> ${values.to ?? ''} in ${state.plan.underlayNetns}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    void forward.exited.then(resolve);
  });
  await forward.close();
  return 0;
}

/** Forwards 127.0.0.1:P on the host to the control plane's dashboard (on the loopback of its namespace) until Ctrl-C. */
async function simDashboard(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, { name: { type: 'string' }, port: { type: 'string' } }, USAGE);
  const state = readState(requiredFlag(values.name, '--name', USAGE));
  if (state.mesh === 'off') throw usageError(`cluster ${state.plan.name} runs without a mesh (--mesh off): there is no control plane`, USAGE);
  const port = intFlag(values.port, '--port', 15080, USAGE);
  const forward = await portForward({ netns: dashboardNetns(state), target: { host: '127.0.0.1', port: DASHBOARD_PORT }, port });
  process.stdout.write(`dashboard of cluster ${state.plan.name}: ${forward.url}\n(forwarding to the control plane's 127.0.0.1:${DASHBOARD_PORT}; Ctrl-C stops)\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    void forward.exited.then(resolve);
  });
  await forward.close();
  return 0;
}

function printStatus(state: ClusterState): void {
  const { plan } = state;
  const lines = [`cluster ${plan.name} (mesh: ${state.mesh}, cgroup driver: ${plan.cgroupDriver})`, 'NODE      UNDERLAY IP    POD CIDR          NETNS'];
  for (const n of plan.nodes) lines.push(`${n.name.padEnd(9)} ${n.ip.padEnd(14)} ${n.podCidr.padEnd(17)} ${n.netns}`);
  lines.push('', 'POD                         NODE      IP              SERVICE ACCOUNT  MESH');
  for (const p of plan.pods) lines.push(`${`${p.namespace}/${p.name}`.padEnd(27)} ${p.node.padEnd(9)} ${p.ip.padEnd(15)} ${p.serviceAccount.padEnd(16)} ${p.enrolled ? 'yes' : 'no'}`);
  lines.push('', 'SERVICE                     VIP             PORTS');
  for (const s of plan.services) lines.push(`${`${s.namespace}/${s.name}`.padEnd(27)} ${s.vip.padEnd(15)} ${s.ports.map((p) => `${p.port}->${p.targetPort}`).join(',')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function isSimError(err: unknown): boolean {
  return err instanceof WeftError && err.code.startsWith('WEFT_SIM_');
}
