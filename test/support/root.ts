// Root-only tests (network namespaces, cgroups, eBPF, iptables) call `needsRoot(t)` first.
// With CI=true a missing capability fails the test; elsewhere the test is skipped with a
// loud reason on stderr, because a silent skip looks like a pass.

import type { TestContext } from 'node:test';
import { spawnSync } from 'node:child_process';

export const inCI = process.env.CI === 'true' || process.env.CI === '1';

function fail(t: TestContext, why: string): boolean {
  if (inCI) throw new Error(`root-only test cannot run (CI=true forbids skipping): ${why}`);
  process.stderr.write(`\n!!! SKIPPED ${t.name}: ${why}\n\n`);
  t.skip(why);
  return false;
}

/** Returns true when the test can go on; otherwise skips (or throws under CI). */
export function needsRoot(t: TestContext, tools: readonly string[] = []): boolean {
  if (process.getuid?.() !== 0) return fail(t, 'needs root (network namespaces, cgroups, eBPF)');
  for (const tool of tools) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return fail(t, `needs the '${tool}' command`);
  }
  return true;
}

/** Returns true when every command is installed; otherwise skips (or throws under CI). */
export function needsCommands(t: TestContext, tools: readonly string[]): boolean {
  for (const tool of tools) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return fail(t, `needs the '${tool}' command (run npm run bootstrap)`);
  }
  return true;
}
