import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ManualClock } from '../../../src/core/clock.ts';
import { DEFAULT_BACKOFF, backoffDelay } from '../../../src/identity/backoff.ts';
import { ManualScheduler } from '../../../src/core/scheduler.ts';

test('backoff doubles from 1 s, is jittered within [base/2, base] and never exceeds 150 s', () => {
  const table: Array<[failures: number, random: number, delay: number]> = [
    [1, 0, 500],
    [1, 1, 1_000],
    [2, 1, 2_000],
    [3, 0.5, 3_000],
    [8, 1, 128_000],
    [9, 1, 150_000], // 256 s capped
    [9, 0, 75_000],
    [500, 1, 150_000],
    [0, 1, 1_000], // treated as the first failure
  ];
  for (const [failures, random, delay] of table) {
    assert.equal(backoffDelay(failures, DEFAULT_BACKOFF, () => random), delay, `failures=${failures} random=${random}`);
  }
});

test('ManualScheduler runs due timers in order with the clock at their due time', () => {
  const clock = new ManualClock(1_000);
  const scheduler = new ManualScheduler(clock);
  const ran: Array<[string, number]> = [];
  scheduler.schedule(300, () => ran.push(['c', clock.now()]));
  scheduler.schedule(100, () => {
    ran.push(['a', clock.now()]);
    scheduler.schedule(50, () => ran.push(['a2', clock.now()])); // due inside the same advance
  });
  const cancelled = scheduler.schedule(200, () => ran.push(['b', clock.now()]));
  cancelled.cancel();
  scheduler.schedule(100, () => ran.push(['a-second', clock.now()])); // same due time: insertion order
  assert.deepEqual(scheduler.pendingDelays(), [100, 100, 300]);

  assert.equal(scheduler.advance(250), 3);
  assert.deepEqual(ran, [['a', 1_100], ['a-second', 1_100], ['a2', 1_150]]);
  assert.equal(clock.now(), 1_250);
  assert.equal(scheduler.advanceToNext(), 50);
  assert.deepEqual(ran.at(-1), ['c', 1_300]);
  assert.equal(scheduler.advanceToNext(), undefined);
});
