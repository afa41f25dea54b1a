// `npm test`: type-check, lint, then every test file with Node's test runner.
// Unit tests first (fast, no root), then the root-only simulator tests, which run one
// file at a time because each builds real namespaces on a 2-core machine.

import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out;
}

function run(label: string, cmd: string, args: string[]): void {
  process.stderr.write(`\n== ${label}\n`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write(`\n== ${label} failed (exit ${r.status ?? r.signal})\n`);
    process.exit(r.status ?? 1);
  }
}

const bin = (name: string) => join(root, 'node_modules', '.bin', name);
const only = process.argv.slice(2);

if (only.length === 0) {
  run('typecheck', bin('tsc'), ['--noEmit', '-p', '.']);
  run('lint', bin('eslint'), ['.']);
}
const selected = only.length > 0 ? only : [...files(join(root, 'test', 'unit')), ...files(join(root, 'test', 'sim'))];
run(`tests (${selected.length} files)`, process.execPath, [
  '--test', '--test-concurrency=1', '--test-reporter=spec', '--test-timeout=600000', ...selected,
]);
