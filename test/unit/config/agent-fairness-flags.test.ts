// The agent's fairness flags: on by default (high water 0.8, less on small nodes; low water
// 0.6 of it; 200 admissions/s floor, 512 waiting), --fairness off, each bound settable; a bad
// value is refused with the flag and the value named; the per-worker split (workerFairness).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { agentConfig, defaultHighWater } from '../../../src/config/agent.ts';
import { workerFairness } from '../../../src/app/agent.ts';

const base = { node: 'node-1', mode: 'off', manifests: '/tmp/none' };

test('agent flags: fairness on by default, with bounds a normal workload never meets', () => {
  assert.deepEqual(agentConfig(base, {}, 16).fairness, { highWater: 0.8, lowWater: 0.48, minRate: 200, maxWaiting: 512 });
  // 2 workers on 2 cores: at 0.8 each they would leave the pods 0.4 of a core.
  assert.deepEqual(agentConfig(base, {}, 2).fairness, { highWater: 0.4, lowWater: 0.24, minRate: 200, maxWaiting: 512 });
});

const highWaters: Array<[number, number, number]> = [[2, 2, 0.4], [4, 2, 0.8], [16, 4, 0.8], [1, 1, 0.8], [3, 3, 0.53], [2, 8, 0.3]];
for (const [cores, workers, want] of highWaters) {
  test(`defaultHighWater: ${cores} cores, ${workers} workers -> ${want}`, () => assert.equal(defaultHighWater(cores, workers), want));
}

test('agent flags: --fairness off; each bound settable', () => {
  assert.equal(agentConfig({ ...base, fairness: 'off' }, {}, 2).fairness, undefined);
  const c = agentConfig({ ...base, 'fairness-high-water': '0.6', 'fairness-low-water': '0.2', 'fairness-min-rate': '10', 'fairness-max-waiting': '0' }, {}, 2);
  assert.deepEqual(c.fairness, { highWater: 0.6, lowWater: 0.2, minRate: 10, maxWaiting: 0 });
  // The default low water follows the high water.
  assert.equal(agentConfig({ ...base, 'fairness-high-water': '0.5' }, {}, 2).fairness?.lowWater, 0.3);
});

test('workerFairness: rates and queues split over the workers', () => {
  const l = workerFairness({ highWater: 0.8, lowWater: 0.5, minRate: 40, maxWaiting: 511 }, 2);
  assert.equal(l.minRate, 20);
  assert.equal(l.maxWaiting, 256);
  assert.equal(workerFairness({ highWater: 0.8, lowWater: 0.5, minRate: 40, maxWaiting: 0 }, 2).maxWaiting, 0, 'none waits: refused at once');
});

const bad: Array<[Record<string, string>, RegExp]> = [
  [{ fairness: 'yes' }, /--fairness "yes": must be one of on, off/],
  [{ 'fairness-high-water': '1.5' }, /--fairness-high-water "1.5": must be a number from 0.05 to 1/],
  [{ 'fairness-high-water': 'busy' }, /--fairness-high-water "busy"/],
  [{ 'fairness-low-water': '0.9' }, /--fairness-low-water "0.9": must be below --fairness-high-water \(0.4\)/],
  [{ 'fairness-min-rate': '0' }, /--fairness-min-rate "0": must be a whole number from 1 to 1000000/],
  [{ 'fairness-max-waiting': '-1' }, /--fairness-max-waiting "-1"/],
];
for (const [flags, message] of bad) {
  test(`agent flags: refused ${JSON.stringify(flags)}`, () => {
    assert.throws(() => agentConfig({ ...base, ...flags }, {}, 2), (err: unknown) => err instanceof Error && message.test(err.message) && (err as { code?: string }).code === 'WEFT_CONFIG_INVALID');
  });
}
