// Circuit breaking (shared concurrency limits, refusing at once, permits released once, across
// worker threads) and outlier ejection (consecutive 5xx, growing ejections, the percentage cap).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { ManualClock } from '../../../../src/core/clock.ts';
import { isWeftError } from '../../../../src/core/errors.ts';
import { ConcurrencyLimit, ConcurrencyLimits, connectionSpent, counterMemory } from '../../../../src/proxy/resilience/concurrency-limit.ts';
import { OutlierEjection, OutlierEjections, OutlierTable, ejectionAllowed, outlierMemory } from '../../../../src/proxy/resilience/outlier-ejection.ts';

test('maxPendingRequests 10: the 11th is refused at once; a released permit makes room; release twice is once', () => {
  const limit = new ConcurrencyLimit(10);
  const permits = Array.from({ length: 10 }, () => limit.tryAcquire());
  assert.ok(permits.every((p) => p !== undefined));
  assert.equal(limit.tryAcquire(), undefined);
  assert.equal(limit.inUse, 10);
  permits[0]?.release();
  permits[0]?.release();
  assert.equal(limit.inUse, 9);
  assert.notEqual(limit.tryAcquire(), undefined);
  assert.equal(limit.tryAcquire(), undefined);
  assert.throws(() => new ConcurrencyLimit(0), (e: unknown) => isWeftError(e, 'WEFT_PROXY_BAD_OPTION'));
  assert.throws(() => new ConcurrencyLimit(1, counterMemory(2), 2), (e: unknown) => isWeftError(e, 'WEFT_PROXY_BAD_OPTION'));
});

test('maxRequestsPerConnection: 0 never retires; N retires after N', () => {
  assert.deepEqual([connectionSpent(1000, 0), connectionSpent(2, 3), connectionSpent(3, 3)], [false, false, true]);
});

test('one limit across worker threads: four workers holding as many permits as they can get 50 in all', async () => {
  const memory = counterMemory(1);
  const url = new URL('../../../../src/proxy/resilience/concurrency-limit.ts', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.url).then(({ ConcurrencyLimit }) => {
      const l = new ConcurrencyLimit(50, workerData.memory, 0);
      let n = 0;
      for (let i = 0; i < 20000; i++) { const p = l.tryAcquire(); if (p !== undefined) n++; }
      parentPort.postMessage(n);
    });`;
  const counts = await Promise.all([0, 1, 2, 3].map(() => new Promise<number>((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { url, memory } });
    w.once('message', (n: number) => { resolve(n); void w.terminate(); });
    w.once('error', reject);
  })));
  assert.equal(counts.reduce((a, b) => a + b, 0), 50, counts.join(', '));
});

test('ejectionAllowed: within the percentage, and always one', () => {
  const cases: [number, number, number, boolean][] = [
    // ejected now, pool, max %, allowed
    [0, 2, 10, true],
    [1, 2, 10, false],
    [1, 20, 10, true],
    [2, 20, 10, false],
    [1, 2, 100, true],
    [0, 5, 0, false],
    [0, 0, 100, false],
  ];
  for (const [ejected, pool, pct, want] of cases) assert.equal(ejectionAllowed(ejected, pool, pct), want, `${ejected}/${pool} at ${pct}%`);
});

test('consecutive 5xx eject for base x times ejected; healthy intervals lower the multiplier; the cap holds', () => {
  const clock = new ManualClock(0);
  const o = new OutlierEjection(clock, { consecutive5xxErrors: 3, intervalMs: 10_000, baseEjectionMs: 30_000, maxEjectionPercent: 50 });
  const pool = ['a', 'b', 'c', 'd'];
  assert.deepEqual([o.failure('a', pool), o.failure('a', pool)], ['none', 'none']);
  o.success('a');
  assert.deepEqual([o.failure('a', pool), o.failure('a', pool), o.failure('a', pool)], ['none', 'none', 'ejected']);
  assert.equal(o.ejected('a'), true);
  clock.advance(29_999);
  assert.equal(o.ejected('a'), true);
  clock.advance(1);
  assert.equal(o.ejected('a'), false);
  // Ejected again at once: twice as long.
  for (let i = 0; i < 3; i++) o.failure('a', pool);
  clock.advance(59_999);
  assert.equal(o.ejected('a'), true);
  clock.advance(1);
  // a and b ejected (2 of 4 = 50%); c may not be.
  for (let i = 0; i < 3; i++) o.failure('b', pool);
  for (let i = 0; i < 3; i++) o.failure('a', pool);
  assert.deepEqual([o.failure('c', pool), o.failure('c', pool), o.failure('c', pool)], ['none', 'none', 'ejection-refused']);
  assert.equal(o.ejectedCount(pool), 2);
  assert.deepEqual([o.ejections, o.refused], [4, 1]);
  // Long healthy: the multiplier decays, so the next ejection is base length again.
  clock.advance(600_000);
  for (let i = 0; i < 3; i++) o.failure('a', pool);
  clock.advance(30_000);
  assert.equal(o.ejected('a'), false);
  assert.throws(() => new OutlierEjection(clock, { consecutive5xxErrors: 0, intervalMs: 1, baseEjectionMs: 1, maxEjectionPercent: 1 }), (e: unknown) => isWeftError(e, 'WEFT_PROXY_BAD_OPTION'));
});

test('outlier records are shared by the workers: 5xx in a row count over all of them, an ejection holds for all', () => {
  const clock = new ManualClock(0);
  const memory = outlierMemory(64);
  const policy = { consecutive5xxErrors: 4, intervalMs: 10_000, baseEjectionMs: 30_000, maxEjectionPercent: 50 };
  // Two workers: each its own table view over the same memory, as proxy-runtime.ts builds them.
  const [w1, w2] = [new OutlierEjections(clock, new OutlierTable(memory)), new OutlierEjections(clock, new OutlierTable(memory))];
  const [a1, a2] = [w1.for('shop/a', policy), w2.for('shop/a', policy)];
  assert.ok(a1 !== undefined && a2 !== undefined);
  const pool = ['10.0.0.1:80', '10.0.0.2:80'];
  assert.deepEqual([a1.failure(pool[0], pool), a2.failure(pool[0], pool), a1.failure(pool[0], pool)], ['none', 'none', 'none']);
  a2.success(pool[0]);
  assert.deepEqual([a1.failure(pool[0], pool), a2.failure(pool[0], pool), a1.failure(pool[0], pool)], ['none', 'none', 'none'], "one worker's success resets the run");
  assert.equal(a2.failure(pool[0], pool), 'ejected', 'the fourth in a row, counted over both workers');
  assert.deepEqual([a1.ejected(pool[0]), a2.ejected(pool[0])], [true, true]);
  const b1 = w1.for('shop/b', policy);
  assert.equal(b1?.ejected(pool[0]), false, "another Service's record of the same address is its own");
  clock.advance(30_000);
  assert.equal(a1.ejected(pool[0]), false);
  // A changed policy in one worker keeps the records.
  const a3 = w1.for('shop/a', { ...policy, baseEjectionMs: 1000 });
  assert.notEqual(a3, a1);
  for (let i = 0; i < 4; i++) a3?.failure(pool[1], pool);
  assert.equal(a2.ejected(pool[1]), true);
});

test('outlier table: a record with nothing to remember gives its slot to another endpoint; with none free an endpoint is not tracked', () => {
  const clock = new ManualClock(0);
  const policy = { consecutive5xxErrors: 2, intervalMs: 1000, baseEjectionMs: 1000, maxEjectionPercent: 100 };
  const table = new OutlierTable(outlierMemory(4));
  const o = new OutlierEjection(clock, policy, table, 'shop/a');
  const pool = Array.from({ length: 6 }, (_, i) => `10.0.0.${i}:80`);
  for (const e of pool.slice(0, 4)) o.failure(e, pool);
  assert.equal(table.used, 4);
  // A fifth endpoint finds every slot in use: not tracked, and no other endpoint's run grows.
  assert.deepEqual([o.failure(pool[4], pool), o.failure(pool[4], pool)], ['none', 'none']);
  assert.equal(o.ejectedCount(pool), 0);
  for (const e of pool.slice(0, 4)) o.success(e);
  clock.advance(10_000);
  // Back, multiplier decayed, no failures: every slot may be taken over.
  assert.deepEqual([o.failure(pool[5], pool), o.failure(pool[5], pool)], ['none', 'ejected'], 'a slot of its own, taken over');
  assert.equal(table.used, 4, 'bounded');
  assert.throws(() => outlierMemory(0), (e: unknown) => isWeftError(e, 'WEFT_PROXY_BAD_OPTION'));
});

test('ConcurrencyLimits: per key, refused at once at the limit, released once; shared memory bounds the keys', () => {
  const limits = new ConcurrencyLimits(counterMemory(64));
  const a = Array.from({ length: 3 }, () => limits.tryAcquire('pending|shop/a', 3));
  assert.ok(a.every((p) => p !== undefined));
  assert.equal(limits.tryAcquire('pending|shop/a', 3), undefined);
  assert.notEqual(limits.tryAcquire('pending|shop/b', 1), undefined, 'another Service, another counter');
  a[0]?.release();
  a[0]?.release();
  assert.equal(limits.inUse('pending|shop/a'), 2);
  const one = new ConcurrencyLimits(counterMemory(1));
  assert.notEqual(one.tryAcquire('x', 1), undefined);
  assert.equal(one.tryAcquire('y', 1), undefined, 'keys sharing a counter are limited together (stricter, never looser)');
});
