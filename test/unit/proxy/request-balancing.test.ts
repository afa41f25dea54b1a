// Per-request balancing, pure: peak-EWMA (Linkerd's 30 ms / 10 s), power of two choices,
// failure accrual with jittered backoff and probation; and the balancer that holds them.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HEALTHY, LINKERD_ACCRUAL, admits, backoffMs, current, dispatched, record, type AccrualState } from '../../../src/proxy/http/failure-accrual.ts';
import { LINKERD_EWMA, ewmaLoad, newEwma, observe, powerOfTwo } from '../../../src/proxy/http/peak-ewma.ts';
import { RequestBalancer } from '../../../src/proxy/http/request-balancer.ts';

const o = LINKERD_EWMA;

test('peak EWMA: a new endpoint starts at 30 ms; a slower sample is taken at once, a faster one slowly', () => {
  const s = newEwma(0, o);
  assert.equal(ewmaLoad(s, 0, o), 30);
  observe(s, 100, 0, o);
  assert.equal(s.cost, 100, 'peak: jumps to the slow sample');
  observe(s, 10, 1000, o);
  // w = exp(-1000/10000) = 0.905: 100 * 0.905 + 10 * 0.095
  assert.ok(Math.abs(s.cost - (100 * Math.exp(-0.1) + 10 * (1 - Math.exp(-0.1)))) < 1e-9);
  observe(s, 10, 1000, o);
  assert.ok(s.cost > 90, 'no time passed: a faster sample barely moves it');
});

test('peak EWMA: load decays towards 0 while idle (10 s time constant) and scales with in-flight + 1', () => {
  const s = { cost: 20, stamp: 0, pending: 0 };
  assert.ok(Math.abs(ewmaLoad(s, 10_000, o) - 20 / Math.E) < 1e-9);
  s.pending = 3;
  assert.ok(Math.abs(ewmaLoad(s, 0, o) - 80) < 1e-9);
});

const cands = [
  { endpoint: 'a', load: 10, weight: 1 },
  { endpoint: 'b', load: 5, weight: 1 },
  { endpoint: 'c', load: 50, weight: 1 },
  { endpoint: 'd', load: 40, weight: 2 },
];
const p2c: Array<[string, number, number, string | undefined]> = [
  ['a vs b: b is lighter', 0.0, 0.0, 'b'],
  ['b vs a: b', 0.3, 0.0, 'b'],
  ['a vs c: a', 0.0, 0.5, 'a'],
  ['c vs d: d per unit of weight (20 < 50)', 0.5, 0.9, 'd'],
  ['d vs c', 0.99, 0.7, 'd'],
];
for (const [name, r1, r2, want] of p2c) {
  test(`power of two: ${name}`, () => assert.equal(powerOfTwo(cands, r1, r2), want));
}

test('power of two: the two draws are always distinct; one or no candidate', () => {
  for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) {
    const two = [{ endpoint: 'x', load: 1, weight: 1 }, { endpoint: 'y', load: 1, weight: 1 }];
    assert.ok(['x', 'y'].includes(powerOfTwo(two, i / 4, j / 3) ?? ''));
  }
  const tied = [{ endpoint: 'x', load: 1, weight: 1 }, { endpoint: 'y', load: 1, weight: 1 }];
  assert.equal(powerOfTwo(tied, 0, 0), 'x', 'ties go to the first draw, which was x');
  assert.equal(powerOfTwo(tied, 0.9, 0), 'y', 'first draw y, second x: tie, y');
  assert.equal(powerOfTwo([{ endpoint: 'only', load: 99, weight: 1 }], 0.5, 0.5), 'only');
  assert.equal(powerOfTwo([], 0.5, 0.5), undefined);
});

const a = LINKERD_ACCRUAL;

test('failure accrual: 7 failures in a row eject; a success in between resets the count', () => {
  let s: AccrualState = HEALTHY;
  for (let i = 0; i < 6; i++) s = record(s, false, 0, 0, a);
  assert.deepEqual(s, { kind: 'healthy', failures: 6 });
  s = record(s, true, 0, 0, a);
  assert.deepEqual(s, HEALTHY);
  for (let i = 0; i < 7; i++) s = record(s, false, 0, 0, a);
  assert.equal(s.kind, 'ejected');
  assert.equal(admits(s, 500), false);
});

const backoffs: Array<[number, number, number]> = [
  [1, 0, 1000], [1, 0.999, 1499.5], [2, 0, 2000], [3, 0.5, 5000], [6, 0, 32000], [7, 0, 60000], [7, 0.9, 60000], [20, 0.1, 60000],
];
for (const [n, r, want] of backoffs) {
  test(`failure accrual: backoff of ejection ${n} with jitter draw ${r} is ${want} ms`, () => assert.equal(backoffMs(n, r, a), want));
}

test('failure accrual: after the backoff one probe goes; its success re-admits, its failure ejects for longer', () => {
  let s: AccrualState = HEALTHY;
  for (let i = 0; i < 7; i++) s = record(s, false, 0, 0, a);
  assert.deepEqual(s, { kind: 'ejected', until: 1000, ejections: 1 });
  assert.equal(current(s, 999).kind, 'ejected');
  assert.deepEqual(current(s, 1000), { kind: 'probation', ejections: 1, probing: false });
  assert.equal(admits(s, 1000), true);
  s = dispatched(s, 1000);
  assert.equal(admits(s, 1001), false, 'only one probe at a time');
  const failed = record(s, false, 1200, 0, a);
  assert.deepEqual(failed, { kind: 'ejected', until: 1200 + 2000, ejections: 2 });
  assert.deepEqual(record(s, true, 1200, 0, a), HEALTHY);
  assert.equal(record({ kind: 'ejected', until: 5000, ejections: 1 }, false, 100, 0, a).kind, 'ejected', 'late failures while ejected change nothing');
});

test('request balancer: in-flight requests steer new ones away; an ejected endpoint gets none until its probe', () => {
  let now = 0;
  let r = 0;
  const draws = [0.0, 0.5];
  const b = new RequestBalancer({ now: () => now, random: () => draws[r++ % 2] ?? 0, accrual: { ...a, consecutiveFailures: 2 } });
  const eps = [{ ip: '10.0.0.1', port: 80, weight: 1 }, { ip: '10.0.0.2', port: 80, weight: 1 }];
  // Both new (30 ms): the first draw wins the tie.
  const first = b.pick(eps);
  assert.equal(first?.ip, '10.0.0.1');
  const busy = b.start('10.0.0.1:80');
  assert.equal(b.pick(eps)?.ip, '10.0.0.2', 'one in flight doubles 10.0.0.1\'s load');
  now = 5;
  busy.done(true, 300);
  assert.equal(b.pick(eps)?.ip, '10.0.0.2', 'one slow answer (300 ms) counts at once (peak)');
  now = 60_000;
  assert.equal(b.pick(eps)?.ip, '10.0.0.2', 'idle decay keeps the ratio: only new samples change who is preferred');
  for (let i = 0; i < 2; i++) b.start('10.0.0.1:80').done(false);
  assert.equal(b.inspect('10.0.0.1:80')?.accrual.kind, 'ejected');
  for (let i = 0; i < 5; i++) assert.equal(b.pick(eps)?.ip, '10.0.0.2');
  now = 62_000;
  assert.equal(b.inspect('10.0.0.1:80')?.accrual.kind, 'probation');
  assert.equal(b.pick([eps[0]])?.ip, '10.0.0.1');
  // All ejected: still tried (trying beats refusing).
  for (let i = 0; i < 2; i++) b.start('10.0.0.2:80').done(false);
  b.start('10.0.0.1:80').done(false);
  assert.ok(b.pick(eps) !== undefined);
  assert.equal(b.pick(eps, new Set(['10.0.0.1:80', '10.0.0.2:80'])), undefined, 'tried endpoints are excluded');
});

test('request balancer: memory is bounded; idle endpoints are forgotten first', () => {
  const b = new RequestBalancer({ now: () => 0, maxTracked: 3 });
  const keep = b.start('10.0.0.1:80');
  for (let i = 2; i <= 6; i++) b.start(`10.0.0.${i}:80`).done(true, 1);
  assert.equal(b.tracked, 3);
  assert.ok(b.inspect('10.0.0.1:80') !== undefined, 'the one with a request in flight stays');
  keep.done(true, 1);
});
