// The `weft` command: dispatches to a subcommand and turns its errors into one clear line
// and an exit code. Subcommands live one per file beside this one.

import { describeError, WeftError } from '../core/errors.ts';
import { simCommand } from './sim.ts';
import { versionLine } from './version.ts';
import { CLI_USAGE, CONFIG_ERROR } from '../config/flags.ts';

const USAGE = `usage: weft <command> [options]
       weft --version

commands:
  sim      build, inspect and remove a simulated multi-node cluster (root)
  vet      validate Kubernetes and weft manifests offline
  check    can this node run weft, and is its agent healthy (kernel, iptables, control plane, capture)
  agent    run the node agent (capture + proxy)
  control  run the control plane
  demo     the npm start demo: a simulated cluster with the mesh in the path`;

type Command = (argv: readonly string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  sim: () => Promise.resolve(simCommand),
  demo: async () => (await import('./demo.ts')).demoCommand,
  vet: async () => (await import('./vet.ts')).vetCommand,
  check: async () => (await import('./check.ts')).checkCommand,
  agent: async () => (await import('./agent.ts')).agentCommand,
  control: async () => (await import('./control.ts')).controlCommand,
};

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === 'version') {
    process.stdout.write(`${versionLine()}\n`);
    return 0;
  }
  const load = commands[name];
  if (load === undefined) {
    process.stderr.write(`weft: unknown command ${JSON.stringify(name)}\n${USAGE}\n`);
    return 2;
  }
  try {
    return await (await load())(rest);
  } catch (err: unknown) {
    process.stderr.write(`weft ${name}: ${err instanceof WeftError ? err.message : describeError(err)}\n`);
    if (!(err instanceof WeftError)) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    return err instanceof WeftError && (err.code === CLI_USAGE || err.code === CONFIG_ERROR) ? 2 : 1;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
