// Token buckets: Envoy's fill semantics (table), the keyed shared table (slots claimed, shared,
// taken over when idle), and one budget across real worker threads.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { ManualClock, type Clock } from '../../../../src/core/clock.ts';
import { isWeftError } from '../../../../src/core/errors.ts';
import {
  BucketTable, bucketMemory, checkShape, refill, shapeForRate, take, type BucketShape,
} from '../../../../src/proxy/resilience/token-bucket.ts';

const SHAPE: BucketShape = { maxTokens: 10, tokensPerFill: 2, fillIntervalMs: 100 };

test('refill: one fill per whole interval, capped at maxTokens; a clock going back adds nothing', () => {
  const cases: [string, number, number, number, number][] = [
    // what, tokens, tick, now, tokens after
    ['same tick', 3, 10, 1099, 3],
    ['one tick later', 3, 10, 1100, 5],
    ['three ticks later', 3, 10, 1350, 9],
    ['capped', 3, 10, 5000, 10],
    ['clock went back', 3, 10, 500, 3],
  ];
  for (const [what, tokens, tick, now, after] of cases) assert.equal(refill(SHAPE, { tokens, tick }, now).tokens, after, what);
});

test('take: allowed while tokens last; refused with the time to the fill that makes enough', () => {
  const cases: [string, number, number, number, boolean, number][] = [
    // what, tokens, cost, now (tick 10 = 1000-1099), allowed, retryAfterMs
    ['one of three', 3, 1, 1000, true, 0],
    ['exactly the last', 1, 1, 1000, true, 0],
    ['empty: next fill', 0, 1, 1040, false, 60],
    ['a fraction short: next fill', 0.5, 1, 1099, false, 1],
    ['needs two fills', 0, 3, 1000, false, 200],
  ];
  for (const [what, tokens, cost, now, allowed, retryAfterMs] of cases) {
    const r = take(SHAPE, { tokens, tick: 10 }, cost, now).result;
    assert.deepEqual([r.allowed, r.retryAfterMs], [allowed, retryAfterMs], what);
  }
});

test('shapeForRate: burst defaults to a second, fills every 100 ms (slower rates: one token per fill)', () => {
  assert.deepEqual(shapeForRate(10), { maxTokens: 10, tokensPerFill: 1, fillIntervalMs: 100 });
  assert.deepEqual(shapeForRate(50, 5), { maxTokens: 5, tokensPerFill: 5, fillIntervalMs: 100 });
  assert.deepEqual(shapeForRate(2), { maxTokens: 2, tokensPerFill: 1, fillIntervalMs: 500 });
  for (const bad of [{ ...SHAPE, maxTokens: 0 }, { ...SHAPE, tokensPerFill: 0 }, { ...SHAPE, fillIntervalMs: 10 }]) {
    assert.throws(() => checkShape(bad), (e: unknown) => isWeftError(e, 'WEFT_PROXY_BAD_OPTION'));
  }
});

test('10 req/s offered 50 req/s for 10 s: 100-110 allowed (the burst plus a fill per 100 ms)', () => {
  const clock = new ManualClock(0);
  const t = new BucketTable(clock, bucketMemory(16));
  const shape = shapeForRate(10);
  let allowed = 0;
  for (let i = 0; i < 500; i++) {
    if (t.take('svc', shape).allowed) allowed++;
    clock.advance(20);
  }
  assert.ok(allowed >= 100 && allowed <= 110, `allowed ${allowed}`);
});

test('keys get their own buckets; a full table shares, and an idle (full) bucket is taken over', () => {
  const clock = new ManualClock(0);
  const two: BucketShape = { maxTokens: 2, tokensPerFill: 1, fillIntervalMs: 1000 };
  const t = new BucketTable(clock, bucketMemory(1));
  assert.equal(t.take('a', two).allowed, true);
  // One slot, still in use by a (not full): b shares it.
  assert.equal(t.take('b', two).allowed, true);
  assert.equal(t.take('a', two).allowed, false);
  clock.advance(2000);
  // a's bucket is full again, so it carries nothing: c takes the slot over, full.
  assert.equal(t.tokens('c', two), 2);
  const one: BucketShape = { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 1000 };
  const roomy = new BucketTable(clock, bucketMemory(64));
  for (const k of ['x', 'y', 'z']) assert.equal(roomy.take(k, one).allowed, true, k);
  for (const k of ['x', 'y', 'z']) assert.equal(roomy.take(k, one).allowed, false, k);
  // Keys of different shapes in one table; a shape that shrinks caps what its bucket holds.
  assert.equal(roomy.take('big', { maxTokens: 5, tokensPerFill: 1, fillIntervalMs: 1000 }).remaining, 4);
  assert.equal(roomy.tokens('big', { maxTokens: 2, tokensPerFill: 1, fillIntervalMs: 1000 }), 4, 'no fill yet: what it had');
  clock.advance(1000);
  assert.equal(roomy.tokens('big', { maxTokens: 2, tokensPerFill: 1, fillIntervalMs: 1000 }), 2, 'the next fill caps it');
});

test('one budget across worker threads: four workers racing for 1000 tokens take exactly 1000', async () => {
  const memory = bucketMemory(4);
  const shape: BucketShape = { maxTokens: 1000, tokensPerFill: 1, fillIntervalMs: 3_600_000 };
  const frozen: Clock = { now: () => 1000, monotonic: () => 0 };
  const url = new URL('../../../../src/proxy/resilience/token-bucket.ts', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.url).then(({ BucketTable }) => {
      const t = new BucketTable({ now: () => 1000, monotonic: () => 0 }, workerData.memory);
      let n = 0;
      for (let i = 0; i < 5000; i++) if (t.take('agent', workerData.shape).allowed) n++;
      parentPort.postMessage(n);
    });`;
  const counts = await Promise.all([0, 1, 2, 3].map(() => new Promise<number>((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { url, shape, memory } });
    w.once('message', (n: number) => { resolve(n); void w.terminate(); });
    w.once('error', reject);
  })));
  assert.equal(counts.reduce((a, b) => a + b, 0), 1000, `per worker ${counts.join(', ')}`);
  assert.equal(new BucketTable(frozen, memory).tokens('agent', shape), 0);
});
