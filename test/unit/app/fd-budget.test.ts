import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fdBudget, perWorker, sharedProxyCounters } from '../../../src/app/fd-budget.ts';
import { parseNofile } from '../../../src/app/nofile.ts';

const cases: [number, Partial<ReturnType<typeof fdBudget>>][] = [
  // The simulator's (and this machine's) limit: one pod may hold a quarter.
  [20_000, { reserve: 1_000, maxPendingHandshakes: 950, connectionFds: 18_050, perSourceFds: 4_512, maxPendingHandshakesPerSource: 64 }],
  // A container's usual hard limit: the per-source cap stops at 16,384.
  [1_048_576, { reserve: 52_429, maxPendingHandshakes: 1_024, perSourceFds: 16_384, maxPendingHandshakesPerSource: 64 }],
  // A shell default: the reserve comes first.
  [1_024, { reserve: 512, maxPendingHandshakes: 25, connectionFds: 487, perSourceFds: 121, maxPendingHandshakesPerSource: 4 }],
  [300, { reserve: 300, connectionFds: 0, perSourceFds: 0, maxPendingHandshakes: 0 }],
];

for (const [limit, want] of cases) {
  test(`descriptor budget for RLIMIT_NOFILE ${limit}`, () => {
    const b = fdBudget(limit);
    for (const [k, v] of Object.entries(want)) assert.equal(b[k as keyof typeof b], v, k);
    assert.ok(b.reserve + b.maxPendingHandshakes + b.connectionFds <= limit, 'never more than the limit');
    assert.ok(b.perSourceFds <= b.connectionFds);
  });
}

test('descriptor budget: an operator\'s per-source cap replaces the rule, never past what connections may hold', () => {
  // Past the 16,384 the rule stops at (one pod holding ~20,000 same-node connections).
  assert.equal(fdBudget(1_048_576, 40_000).perSourceFds, 40_000);
  // Below the quarter the rule gives.
  assert.equal(fdBudget(20_000, 1_000).perSourceFds, 1_000);
  // Never more than all connections of all workers may hold.
  assert.equal(fdBudget(20_000, 100_000).perSourceFds, fdBudget(20_000).connectionFds);
  // The rest of the budget is the same.
  assert.deepEqual({ ...fdBudget(20_000, 1_000), perSourceFds: 0 }, { ...fdBudget(20_000), perSourceFds: 0 });
});

test('per-worker shares round up, shared counters are shared memory, /proc/self/limits is read', () => {
  assert.deepEqual([perWorker(4512, 2), perWorker(64, 3), perWorker(1, 4), perWorker(10, 0)], [2256, 22, 1, 10]);
  const c = sharedProxyCounters();
  assert.ok(c.buffer instanceof SharedArrayBuffer);
  assert.equal(c.length, 3);
  assert.equal(parseNofile('Limit                     Soft Limit           Hard Limit           Units\nMax open files            20000                20000                files\n'), 20_000);
  assert.equal(parseNofile('Max open files            unlimited            unlimited            files\n'), Number.MAX_SAFE_INTEGER);
  assert.equal(parseNofile('nothing'), undefined);
});
