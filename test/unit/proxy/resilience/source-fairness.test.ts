// SourceFairness: the pure decision (a table: held back at half its rate when the loop is
// busy and it asks for most of the work, halved again, never below the floor, never alone,
// never a light source; let back up by 5%, lifted once unused and nothing waits); the
// smoothed rates; the limits refused by field; the admissions of a held source wait and come
// through at its rate while another source goes on at once; past maxWaiting requests, or when
// the client leaves, they are refused and counted (connections only when the client leaves:
// the descriptor caps bound those); close() lets every waiter through.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  DEFAULT_FAIRNESS_LIMITS, SourceFairness, fairnessDecision, fairnessLimits, smooth, type Admission, type FairnessInput,
} from '../../../../src/proxy/resilience/source-fairness.ts';

const L = fairnessLimits({ highWater: 0.8, lowWater: 0.5, intervalMs: 50, minRate: 20, minShare: 0.5 });
const m = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o));

/** One interval's input; the smoothed rates are this interval's own unless given. */
const at = (utilization: number, asked: Record<string, number>, held: Record<string, number> = {}, o: { waiting?: Record<string, number>; rates?: Record<string, number>; sources?: number } = {}): FairnessInput => ({
  utilization, intervalMs: 50, asked: m(asked), held: m(held), waiting: m(o.waiting ?? {}),
  rates: m(o.rates ?? Object.fromEntries(Object.entries(asked).map(([k, v]) => [k, v * 20]))), recentSources: o.sources ?? Object.keys(asked).length,
});

const cases: Array<[string, FairnessInput, Record<string, number>, string | undefined]> = [
  ['busy, a asks 90 of 100: held at half its rate (1800/s -> 900)', at(0.9, { a: 90, b: 10 }), { a: 900 }, 'a'],
  ['busy, a already held at 900: halved again', at(0.95, { a: 45, b: 2 }, { a: 900 }), { a: 450 }, 'a'],
  ['busy, a asks less than its limit: cut from what it asked', at(0.9, { a: 10, b: 1 }, { a: 900 }), { a: 100 }, 'a'],
  ['busy, a held at 30/s asks 40/s: not below the floor of 20', at(0.9, { a: 2, b: 1 }, { a: 30 }), { a: 20 }, 'a'],
  ['busy, a alone on the worker: nobody to protect, not held', at(1, { a: 500 }), {}, undefined],
  ['busy, nobody asks for half the work: nobody held', at(0.9, { a: 40, b: 35, c: 25 }), {}, undefined],
  ['busy, the heaviest asks for no more than the floor: not held (a normal caller)', at(0.9, { a: 1, b: 0 }, {}, { rates: { a: 20, b: 2 }, sources: 2 }), {}, undefined],
  ['busy, by the smoothed rates b is the heaviest, whatever this interval says', at(0.9, { a: 5, b: 1 }, {}, { rates: { a: 30, b: 400 } }), { b: 200 }, 'b'],
  ['busy, b asks most now: b held, a keeps its limit', at(0.9, { a: 5, b: 60 }, { a: 100 }), { a: 100, b: 600 }, 'b'],
  ['between the water marks: unchanged', at(0.6, { a: 45 }, { a: 900 }, { sources: 2 }), { a: 900 }, undefined],
  ['idle, a uses its limit: up by 5%', at(0.3, { a: 45 }, { a: 900 }, { sources: 2 }), { a: 945 }, undefined],
  ['idle, a asks little but has some waiting: up, not let go (they would all come at once)', at(0.3, { a: 1 }, { a: 900 }, { waiting: { a: 3 }, sources: 2 }), { a: 945 }, undefined],
  ['idle, a uses under half its limit: lifted', at(0.3, { a: 20 }, { a: 900 }, { sources: 2 }), {}, undefined],
];
for (const [what, input, held, cut] of cases) {
  test(`fairnessDecision: ${what}`, () => {
    const out = fairnessDecision(input, L);
    assert.deepEqual(Object.fromEntries([...out.held].map(([k, v]) => [k, Math.round(v * 100) / 100])), held);
    assert.equal(out.cut, cut);
  });
}

const refused: Array<[Record<string, number>, RegExp]> = [
  [{ highWater: 0 }, /fairness highWater must be in \(0, 1\], got 0/],
  [{ highWater: 1.2 }, /highWater/],
  [{ lowWater: 0.9 }, /fairness lowWater must be in \[0, highWater\), got 0.9/],
  [{ intervalMs: 1 }, /fairness intervalMs must be an integer 5-10000, got 1/],
  [{ minRate: 0 }, /fairness minRate must be a positive number, got 0/],
  [{ maxWaiting: 1.5 }, /fairness maxWaiting must be an integer >= 0, got 1.5/],
  [{ minShare: 0 }, /fairness minShare/],
];
for (const [o, message] of refused) {
  test(`fairnessLimits: refused ${JSON.stringify(o)}`, () => {
    assert.throws(() => fairnessLimits(o), (err: unknown) => err instanceof Error && message.test(err.message) && (err as { code?: string }).code === 'WEFT_PROXY_BAD_OPTION');
  });
}

test('fairnessDecision, default share: two pods loading a worker about evenly (55/45) are not held', () => {
  const out = fairnessDecision(at(0.95, { a: 55, b: 45 }), fairnessLimits({ minRate: 20 }));
  assert.equal(out.held.size, 0);
});

test('fairnessLimits: the defaults pass their own validation', () => {
  assert.deepEqual(fairnessLimits(), DEFAULT_FAIRNESS_LIMITS);
});

/** A fairness driven by hand: the loop's utilisation is whatever `load.u` says, ticks are called by the test. */
function driven(o: Partial<typeof L> = {}, shared?: Int32Array): { f: SourceFairness; load: { u: number }; events: string[] } {
  const load = { u: 0 };
  const events: string[] = [];
  const f = new SourceFairness(fairnessLimits({ ...o }), {
    utilization: () => load.u, now: () => performance.now(), every: () => () => undefined, ...(shared === undefined ? {} : { shared }),
    observer: { held: (s, rate) => events.push(`held ${s} ${Math.round(rate)}`), admitted: (s, kind, outcome) => events.push(`${outcome} ${s} ${kind}`) },
  });
  f.start();
  return { f, load, events };
}

/** Makes `a` the held source: 90 admissions of a and 10 of b in an interval with the loop busy. */
function saturateWithA(f: SourceFairness, load: { u: number }): void {
  for (let i = 0; i < 90; i++) assert.equal(f.admit('a', 'connection'), 'now', 'not held yet');
  for (let i = 0; i < 10; i++) void f.admit('b', 'request');
  load.u = 0.95;
  f.tick();
}

test('a held source waits and comes through at its rate; another source goes on at once', async () => {
  // A 1 s interval: a asked 90, so it is held at 45/s, a token every 22 ms.
  const { f, load, events } = driven({ intervalMs: 1000, minRate: 10 });
  saturateWithA(f, load);
  assert.deepEqual(Object.fromEntries(f.held()), { a: 45 });
  assert.deepEqual(events, ['held a 45']);
  const started = performance.now();
  const waits = Array.from({ length: 9 }, () => f.admit('a', 'request'));
  assert.ok(waits.every((w) => w !== 'now'), 'every one of a\'s waits: its bucket starts empty');
  assert.equal(f.waiting('a'), 9);
  assert.equal(f.admit('b', 'request'), 'now', 'b is not held');
  const outcomes = await Promise.all(waits);
  const ms = performance.now() - started;
  assert.deepEqual(new Set(outcomes), new Set<Admission>(['waited']));
  // 9 at 45/s is 200 ms; timers are coarse, so only bound it loosely.
  assert.ok(ms >= 150 && ms < 2000, `nine waited ${ms.toFixed(1)} ms`);
  assert.equal(events.filter((e) => e === 'waited a request').length, 9);
  f.close();
});

test('a held source saves up at most 5 ms of its rate: its admissions never come as a burst', async () => {
  const { f, load } = driven({ intervalMs: 1000, minRate: 10 });
  for (let i = 0; i < 4000; i++) void f.admit('a', 'connection');
  for (let i = 0; i < 10; i++) void f.admit('b', 'connection');
  load.u = 0.95;
  f.tick();
  assert.equal(f.held().get('a'), 2000);
  await sleep(50);
  const now = Array.from({ length: 20 }, () => f.admit('a', 'connection')).filter((x) => x === 'now').length;
  assert.ok(now >= 10 && now <= 11, `${now} at once after 50 ms unused (100 tokens' worth), 10 kept`);
  f.close();
});

test('busy again: halved again; idle: let back up, then lifted once unused', () => {
  // Nothing waits (maxWaiting 0), so only the rates move. Another worker holds one source too.
  const shared = new Int32Array(new SharedArrayBuffer(12));
  shared[2] = 1;
  const { f, load } = driven({ intervalMs: 1000, minRate: 5, maxWaiting: 0 }, shared);
  saturateWithA(f, load);
  assert.equal(f.held().get('a'), 45);
  assert.equal(Atomics.load(shared, 2), 2, 'sources held, all workers (the memory reclaimer waits while any is)');
  for (let i = 0; i < 40; i++) void f.admit('a', 'request');
  void f.admit('b', 'request');
  f.tick();
  assert.equal(f.held().get('a'), 20, 'cut from the 40/s it asked');
  load.u = 0.2;
  for (let i = 0; i < 20; i++) void f.admit('a', 'request');
  f.tick();
  assert.equal(f.held().get('a'), 21, 'up by 5% while it uses its limit');
  f.tick();
  assert.equal(f.held().size, 0, 'lifted: it asked for nothing in the interval');
  assert.equal(Atomics.load(shared, 2), 1);
  assert.equal(f.admit('a', 'request'), 'now');
  f.close();
  assert.equal(Atomics.load(shared, 2), 1, 'close() gives back only its own');
});

test('smooth: rates follow the intervals with a ~1 s time constant; quiet sources are forgotten', () => {
  const rates = new Map<string, number>();
  smooth(rates, m({ a: 10 }), 50);
  assert.equal(rates.get('a'), 10, '200/s seen once: a twentieth of it');
  for (let i = 0; i < 100; i++) smooth(rates, m({ a: 10 }), 50);
  assert.ok(Math.abs((rates.get('a') ?? 0) - 200) < 2, `converges on 200/s: ${rates.get('a')}`);
  for (let i = 0; i < 200; i++) smooth(rates, m({}), 50);
  assert.equal(rates.has('a'), false);
});

test('refused: past maxWaiting, and when the client leaves while waiting; both counted', async () => {
  const { f, load, events } = driven({ intervalMs: 1000, minRate: 10, maxWaiting: 2 });
  saturateWithA(f, load);
  events.length = 0;
  const left = new AbortController();
  const queued = [f.admit('a', 'request', left.signal), f.admit('a', 'request')];
  const over = f.admit('a', 'request');
  assert.notEqual(over, 'now');
  assert.equal(await over, 'refused', 'a third waiter is one too many');
  left.abort();
  assert.equal(await queued[0], 'refused', 'the client left');
  const aborted = new AbortController();
  aborted.abort();
  assert.equal(await f.admit('a', 'connection', aborted.signal), 'refused', 'already gone');
  assert.deepEqual(events.filter((e) => e.startsWith('refused')), ['refused a request', 'refused a request', 'refused a connection']);
  f.close();
  assert.equal(await queued[1], 'waited', 'close() lets the rest through');
  f.close();
});

test('maxWaiting 0: a held source\'s request is refused at once when it has no token; its connection still waits (the descriptor caps bound those)', async () => {
  const { f, load } = driven({ intervalMs: 1000, minRate: 10, maxWaiting: 0 });
  saturateWithA(f, load);
  const r = f.admit('a', 'request');
  assert.notEqual(r, 'now');
  assert.equal(await r, 'refused');
  const c = f.admit('a', 'connection');
  assert.notEqual(c, 'now');
  assert.equal(f.waiting('a'), 1);
  f.close();
  assert.equal(await c, 'waited');
});

test('the real timer ticks and is stopped by close()', async () => {
  let calls = 0;
  const f = new SourceFairness(fairnessLimits({ intervalMs: 10 }), { utilization: () => { calls += 1; return 0; }, now: () => performance.now() });
  f.start();
  f.start();
  await sleep(60);
  f.close();
  const seen = calls;
  assert.ok(seen >= 2, `ticked ${seen} times`);
  await sleep(40);
  assert.equal(calls, seen, 'no tick after close');
});
