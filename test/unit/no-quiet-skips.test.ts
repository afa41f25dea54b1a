// No test may skip quietly: under CI=true a test that cannot run must fail, elsewhere it
// skips loudly. The one way to skip is test/support/root.ts (cannotRun, needsCommands,
// needsRoot); this test keeps every other skip out of the test tree.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const testRoot = join(import.meta.dirname, '..');
const SKIPS = [/\bt\.skip\s*\(/, /\btest\.skip\b/, /\bit\.skip\b/, /\bdescribe\.skip\b/, /[{,]\s*skip\s*:/, /\.todo\s*\(/];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : name.endsWith('.ts') ? [p] : [];
  });
}

test('every skip goes through test/support/root.ts, which fails under CI=true', () => {
  const allowed = join(testRoot, 'support', 'root.ts');
  const offenders: string[] = [];
  for (const file of sources(testRoot)) {
    if (file === allowed || file === import.meta.filename) continue;
    readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      if (SKIPS.some((re) => re.test(line))) offenders.push(`${relative(testRoot, file)}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(offenders, [], 'use cannotRun/needsCommands/needsRoot from test/support/root.ts instead');
});
