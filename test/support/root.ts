// Tests that need something from the machine (root for network namespaces, cgroups, eBPF,
// iptables; a tool such as promtool or python3; a build output) call one of these first.
// With CI=true a missing capability fails the test; elsewhere the test is skipped with a
// loud reason on stderr, because a silent skip looks like a pass.

import type { TestContext } from 'node:test';
import { spawnSync } from 'node:child_process';

export const inCI = process.env.CI === 'true' || process.env.CI === '1';

/** Fails the test under CI, else skips it loudly; returns false so callers can `return`. */
export function cannotRun(t: TestContext, why: string): false {
  if (inCI) throw new Error(`test cannot run (CI=true forbids skipping): ${why}`);
  process.stderr.write(`\n!!! SKIPPED ${t.name}: ${why}\n\n`);
  t.skip(why);
  return false;
}

export function hasCommand(tool: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', tool]).status === 0;
}

/** Returns true when every command is installed; otherwise skips (or throws under CI). */
export function needsCommands(t: TestContext, tools: readonly string[]): boolean {
  for (const tool of tools) {
    if (!hasCommand(tool)) return cannotRun(t, `needs the '${tool}' command (scripts/bootstrap.sh installs it)`);
  }
  return true;
}

/** Returns true when the test can go on; otherwise skips (or throws under CI). */
export function needsRoot(t: TestContext, tools: readonly string[] = []): boolean {
  if (process.getuid?.() !== 0) return cannotRun(t, 'needs root (network namespaces, cgroups, eBPF)');
  return needsCommands(t, tools);
}
