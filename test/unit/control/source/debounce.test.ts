// The source debouncer: a burst becomes one run, and a stream of triggers that never
// pauses still runs the work within its bound.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Debouncer } from '../../../../src/control/source/debounce.ts';

test('a burst of triggers is one run, after the quiet time', async () => {
  let runs = 0;
  const d = new Debouncer(30, () => { runs++; return Promise.resolve(); }, () => {});
  for (let i = 0; i < 10; i++) d.trigger();
  await sleep(80);
  assert.equal(runs, 1);
  await d.close();
});

test('triggers that never pause for the quiet time still run the work within maxDelayMs', async () => {
  const at: number[] = [];
  const started = performance.now();
  const d = new Debouncer(50, () => { at.push(performance.now() - started); return Promise.resolve(); }, () => {}, 150);
  // Every 10 ms for 700 ms: never 50 ms of quiet.
  while (performance.now() - started < 700) {
    d.trigger();
    await sleep(10);
  }
  await d.close();
  assert.ok(at.length >= 3, `ran ${at.length} times: ${at.map((t) => t.toFixed(0)).join(', ')} ms`);
  // Generous: 150 ms bound, timers on a shared machine.
  assert.ok((at[0] ?? Infinity) < 400, `first run at ${at[0]} ms`);
});
