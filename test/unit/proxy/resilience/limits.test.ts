// Circuit breaking (shared concurrency limits, refusing at once, permits released once, across
// worker threads) and outlier ejection (consecutive 5xx, growing ejections, the percentage cap).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { ManualClock } from '../../../../src/core/clock.ts';
import { isWeftError } from '../../../../src/core/errors.ts';
import { ConcurrencyLimit, ConcurrencyLimits, connectionSpent, counterMemory } from '../../../../src/proxy/resilience/concurrency-limit.ts';
import { OutlierEjection, ejectionAllowed } from '../../../../src/proxy/resilience/outlier-ejection.ts';

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
  assert.deepEqual([o.failure('a', 4), o.failure('a', 4)], ['none', 'none']);
  o.success('a');
  assert.deepEqual([o.failure('a', 4), o.failure('a', 4), o.failure('a', 4)], ['none', 'none', 'ejected']);
  assert.equal(o.ejected('a'), true);
  clock.advance(29_999);
  assert.equal(o.ejected('a'), true);
  clock.advance(1);
  assert.equal(o.ejected('a'), false);
  // Ejected again at once: twice as long.
  for (let i = 0; i < 3; i++) o.failure('a', 4);
  clock.advance(59_999);
  assert.equal(o.ejected('a'), true);
  clock.advance(1);
  // a and b ejected (2 of 4 = 50%); c may not be.
  for (let i = 0; i < 3; i++) o.failure('b', 4);
  for (let i = 0; i < 3; i++) o.failure('a', 4);
  assert.deepEqual([o.failure('c', 4), o.failure('c', 4), o.failure('c', 4)], ['none', 'none', 'ejection-refused']);
  assert.equal(o.ejectedCount(['a', 'b', 'c', 'd']), 2);
  assert.deepEqual([o.ejections, o.refused], [4, 1]);
  // Long healthy: the multiplier decays, so the next ejection is base length again.
  clock.advance(600_000);
  for (let i = 0; i < 3; i++) o.failure('a', 4);
  clock.advance(30_000);
  assert.equal(o.ejected('a'), false);
  // Nothing left to remember: every record is forgotten at the next sweep.
  clock.advance(20_000);
  o.ejected('x');
  assert.equal(o.tracked, 0);
  assert.throws(() => new OutlierEjection(clock, { consecutive5xxErrors: 0, intervalMs: 1, baseEjectionMs: 1, maxEjectionPercent: 1 }), (e: unknown) => isWeftError(e, 'WEFT_PROXY_BAD_OPTION'));
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
