// SourceShares: a source's requests past its limit wait in arrival order and are never
// refused; another source is never held up by it; a waiter whose client left gives up its
// place; released slots pass to the next waiter; idle sources are forgotten.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SourceShares } from '../../../../src/proxy/resilience/source-shares.ts';

const live = new AbortController().signal;

test('past the limit a source waits, in order; other sources go straight on', async () => {
  const shares = new SourceShares(2);
  const a1 = await shares.acquire('a', live);
  const a2 = await shares.acquire('a', live);
  assert.deepEqual([a1.waited, a2.waited], [false, false]);
  const order: string[] = [];
  const a3 = shares.acquire('a', live).then((s) => { order.push('a3'); return s; });
  const a4 = shares.acquire('a', live).then((s) => { order.push('a4'); return s; });
  const b1 = await shares.acquire('b', live);
  assert.equal(b1.waited, false, 'b is not held up by a');
  assert.deepEqual(shares.stats('a'), { active: 2, waiting: 2 });
  a1.release();
  a1.release(); // twice: no effect
  const third = await a3;
  assert.equal(third.waited, true);
  assert.deepEqual(order, ['a3']);
  assert.deepEqual(shares.stats('a'), { active: 2, waiting: 1 });
  a2.release();
  (await a4).release();
  third.release();
  b1.release();
  assert.deepEqual(shares.stats('a'), { active: 0, waiting: 0 });
  assert.equal(shares.size, 0, 'idle sources are forgotten');
});

test('a waiter whose client left is dropped (rejects), and the next one gets the slot', async () => {
  const shares = new SourceShares(1);
  const first = await shares.acquire('a', live);
  const gone = new AbortController();
  const leaving = shares.acquire('a', gone.signal);
  const staying = shares.acquire('a', live);
  gone.abort();
  await assert.rejects(leaving, /client left/);
  first.release();
  const s = await staying;
  assert.equal(s.waited, true);
  s.release();
  assert.equal(shares.size, 0);
  const already = new AbortController();
  already.abort();
  const f = await shares.acquire('a', live);
  await assert.rejects(shares.acquire('a', already.signal), /client left/);
  f.release();
});

test('the limit must be a positive integer', () => {
  for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => new SourceShares(bad), /integer >= 1/);
});
