import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reconnectDelay } from '../../../src/control/timing.ts';

test('reconnect delay doubles, is capped, and jitters between half and all of the step', () => {
  const policy = { initialMs: 100, maxMs: 10_000 };
  const cases: Array<[number, number, number]> = [
    // attempt, random, expected
    [0, 0, 50], [0, 1, 100], [1, 0, 100], [1, 0.5, 150], [3, 1, 800],
    [7, 1, 10_000], [7, 0, 5_000], [50, 1, 10_000], [1_000, 0.5, 7_500],
  ];
  for (const [attempt, random, expected] of cases) {
    assert.equal(reconnectDelay(policy, attempt, () => random), expected, `attempt ${attempt}, random ${random}`);
  }
});
