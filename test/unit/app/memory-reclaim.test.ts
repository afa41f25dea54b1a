// The memory reclaimer: when a flood or churn ends (reclaimStep, table-tested; never while a
// worker holds a source back for fair sharing, kept for after), and that a
// thread's reclaim really gives memory back (a full collection, then malloc_trim).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryReclaimer, reclaimDone, reclaimStep, threadReclaimer, type ReclaimPolicy, type ReclaimState } from '../../../src/app/memory-reclaim.ts';

const MiB = 2 ** 20;
const POLICY: ReclaimPolicy = { minDrop: 512, growthBytes: 32 * MiB, settleMs: 20_000, minIntervalMs: 10_000, maxGrowthWaitMs: 80_000 };

test('reclaimStep: a held flood ending, RSS growth, the settle after either, and the minimum interval', () => {
  const at = (peak: number, baseline: number, lastAt?: number, settleAt?: number, growthWaitMs?: number): ReclaimState => ({ peak, baseline, lastAt, settleAt, growthWaitMs });
  const cases: [string, ReclaimState, { held: number; rss: number; now: number; busy?: boolean }, string | undefined, Partial<ReclaimState>][] = [
    ['quiet', at(100, 300 * MiB), { held: 90, rss: 310 * MiB, now: 1_000 }, undefined, { peak: 100, baseline: 300 * MiB }],
    ['the peak rises', at(100, 300 * MiB), { held: 4_512, rss: 320 * MiB, now: 1_000 }, undefined, { peak: 4_512 }],
    ['the baseline follows RSS down', at(100, 300 * MiB), { held: 100, rss: 280 * MiB, now: 1_000 }, undefined, { baseline: 280 * MiB }],
    ['a held flood ended', at(4_512, 300 * MiB), { held: 20, rss: 360 * MiB, now: 1_000 }, 'flood-ended', { peak: 20, lastAt: 1_000, settleAt: 21_000 }],
    ['dropped by half but by few descriptors', at(600, 300 * MiB), { held: 200, rss: 300 * MiB, now: 1_000 }, undefined, { peak: 600 }],
    ['dropped by many but not by half', at(4_000, 300 * MiB), { held: 2_500, rss: 300 * MiB, now: 1_000 }, undefined, { peak: 4_000 }],
    ['churn: RSS grew by the threshold', at(50, 300 * MiB), { held: 50, rss: 332 * MiB, now: 1_000 }, 'rss-grew', { lastAt: 1_000, settleAt: 21_000, grownBy: 32 * MiB }],
    ['RSS grew, not enough', at(50, 300 * MiB), { held: 50, rss: 331 * MiB, now: 1_000 }, undefined, {}],
    ['the settle is not due yet', at(50, 300 * MiB, 0, 20_000), { held: 50, rss: 310 * MiB, now: 19_999 }, undefined, { settleAt: 20_000 }],
    ['the settle runs once, whatever RSS says', at(50, 300 * MiB, 0, 20_000), { held: 50, rss: 300 * MiB, now: 20_000 }, 'settle', { lastAt: 20_000, settleAt: undefined }],
    ['too soon after the last one', at(4_512, 300 * MiB, 0), { held: 20, rss: 400 * MiB, now: 9_999 }, undefined, { peak: 4_512, lastAt: 0 }],
    ['just late enough', at(4_512, 300 * MiB, 0), { held: 20, rss: 400 * MiB, now: 10_000 }, 'flood-ended', { peak: 20 }],
    ['RSS grew while a source is held back: kept for when the hold ends', at(50, 300 * MiB), { held: 50, rss: 340 * MiB, now: 1_000, busy: true }, undefined, { settleAt: 1_000, lastAt: undefined }],
    ['a flood ended while another is held back: kept too', at(4_512, 300 * MiB), { held: 20, rss: 360 * MiB, now: 1_000, busy: true }, undefined, { settleAt: 1_000 }],
    ['the hold has ended: the kept one runs', at(50, 300 * MiB, undefined, 1_000), { held: 50, rss: 305 * MiB, now: 3_000, busy: false }, 'settle', { lastAt: 3_000, settleAt: undefined }],
    ['held back and nothing to do: nothing kept', at(50, 300 * MiB), { held: 50, rss: 305 * MiB, now: 1_000, busy: true }, undefined, { settleAt: undefined }],
    ['growth after fruitless reclaims: waits longer', at(50, 300 * MiB, 0, undefined, 40_000), { held: 50, rss: 340 * MiB, now: 39_999 }, undefined, { lastAt: 0 }],
    ['growth after fruitless reclaims, late enough: runs, and its settle', at(50, 300 * MiB, 0, undefined, 40_000), { held: 50, rss: 340 * MiB, now: 40_000 }, 'rss-grew', { lastAt: 40_000, settleAt: 60_000, growthWaitMs: 40_000 }],
    ['growth goes on past a settle that is due: the settle waits with it', at(50, 300 * MiB, 0, 20_000, 40_000), { held: 50, rss: 340 * MiB, now: 20_000 }, undefined, { settleAt: 20_000 }],
    ['the churn has ended, no more growth: the settle runs', at(50, 300 * MiB, 0, 20_000, 40_000), { held: 50, rss: 310 * MiB, now: 20_000 }, 'settle', { settleAt: undefined }],
    ['a flood ending does not wait for the growth backoff', at(4_512, 300 * MiB, 0, undefined, 40_000), { held: 20, rss: 340 * MiB, now: 10_000 }, 'flood-ended', { settleAt: 30_000 }],
  ];
  for (const [what, state, sample, reason, expect] of cases) {
    const step = reclaimStep(state, sample, POLICY);
    assert.equal(step.reclaim, reason, what);
    for (const [k, v] of Object.entries(expect)) assert.equal(step.state[k as keyof ReclaimState], v, `${what}: ${k}`);
  }
});

test('reclaimDone: a reclaim that gives nothing back doubles the wait for growth (capped), one that does or a flood ending resets it', () => {
  const state: ReclaimState = { peak: 50, baseline: Number.POSITIVE_INFINITY, lastAt: 0, settleAt: undefined, growthWaitMs: 20_000 };
  const done = (reason: 'rss-grew' | 'settle' | 'flood-ended', before: number, after: number, from: ReclaimState = state): ReclaimState => reclaimDone(from, { reason, rssBefore: before * MiB, rssAfter: after * MiB }, POLICY);
  assert.equal(done('rss-grew', 340, 339).growthWaitMs, 40_000, 'gave back 1 MiB');
  assert.equal(done('settle', 340, 325).growthWaitMs, 40_000, 'gave back 15 MiB, under half the threshold');
  assert.equal(done('rss-grew', 340, 324).growthWaitMs, 10_000, 'gave back 16 MiB: churn that ended');
  assert.equal(done('flood-ended', 340, 339).growthWaitMs, 10_000);
  assert.equal(done('rss-grew', 340, 339, { ...state, growthWaitMs: 80_000 }).growthWaitMs, 80_000, 'capped at maxGrowthWaitMs');
  assert.equal(done('rss-grew', 340, 339, { ...state, growthWaitMs: undefined }).growthWaitMs, 20_000, 'from minIntervalMs');
  assert.equal(done('rss-grew', 340, 339).baseline, 339 * MiB, 'growth is measured from the level after it');
  // RSS had grown 200 MiB: 30 MiB back is not the growth coming back.
  assert.equal(done('rss-grew', 500, 470, { ...state, grownBy: 200 * MiB }).growthWaitMs, 40_000);
  assert.equal(done('settle', 500, 390, { ...state, grownBy: 200 * MiB }).growthWaitMs, 10_000, '110 of 200 MiB back');
});

test('MemoryReclaimer: under a steady load whose memory stays in use, reclaims for growth come ever further apart', async () => {
  let rss = 300 * MiB;
  let now = 0;
  const at: number[] = [];
  const reasons: string[] = [];
  const r = new MemoryReclaimer({
    held: () => 0, rss: () => rss, now: () => now,
    reclaim: () => Promise.resolve([]),
    onReclaimed: (x) => {
      reasons.push(x.reason);
      at.push(now / 1000);
    },
  }, { everyMs: 3_600_000, policy: POLICY });
  try {
    // RSS grows 8 MiB every 2 s and nothing comes back.
    for (now = 0; now <= 300_000; now += 2_000) {
      rss += 8 * MiB;
      await r.tick();
    }
    // The first once RSS is 32 MiB over the first sample; it gives nothing back, so the next waits
    // 20 s, then 40, 80, and 80 s (the cap); the settles due meanwhile wait while RSS keeps growing.
    // Before: one every 10 s, each a full collection in every thread.
    assert.deepEqual(at, [6, 26, 66, 146, 226]);
    assert.deepEqual(reasons, ['rss-grew', 'rss-grew', 'rss-grew', 'rss-grew', 'rss-grew']);
  } finally {
    r.stop();
  }
});

test('MemoryReclaimer: a flood ends, it reclaims, then settles once; growth is measured from the level after a reclaim', async () => {
  let held = 0;
  let rss = 300 * MiB;
  let now = 0;
  const done: string[] = [];
  const r = new MemoryReclaimer({
    held: () => held, rss: () => rss, now: () => now,
    reclaim: () => {
      rss = 310 * MiB;
      return Promise.resolve([]);
    },
    onReclaimed: (x) => done.push(`${x.reason} ${x.rssBefore / MiB}->${x.rssAfter / MiB} held ${x.held}`),
  }, { everyMs: 3_600_000, policy: POLICY });
  try {
    held = 4_512;
    rss = 320 * MiB;
    await r.tick();
    now = 5_000;
    held = 0;
    rss = 330 * MiB;
    await r.tick();
    assert.deepEqual(done, ['flood-ended 330->310 held 0']);
    now = 15_000;
    rss = 320 * MiB;
    await r.tick();
    assert.equal(done.length, 1, 'nothing new before the settle');
    now = 25_000;
    await r.tick();
    assert.deepEqual(done.slice(1), ['settle 320->310 held 0']);
    now = 60_000;
    rss = 341 * MiB;
    await r.tick();
    assert.equal(done.length, 2, '31 MiB over the level after the reclaim: not yet');
    rss = 342 * MiB;
    now = 62_000;
    await r.tick();
    assert.deepEqual(done.slice(2), ['rss-grew 342->310 held 0']);
  } finally {
    r.stop();
  }
});

test('a thread\'s reclaim collects the garbage a flood left', () => {
  const reclaim = threadReclaimer();
  // What a flood leaves in the old generation: many small objects, unreachable once the function returns.
  const flood = (): number => Array.from({ length: 1_000_000 }, (_, i) => ({ i, s: `connection ${i}` })).length;
  assert.equal(flood(), 1_000_000);
  const before = process.memoryUsage().heapUsed;
  reclaim();
  const after = process.memoryUsage().heapUsed;
  assert.ok(before - after > 40 * MiB, `heap ${Math.round(before / MiB)} -> ${Math.round(after / MiB)} MiB`);
});

test('MemoryReclaimer: the record says how long the reclaim took, and each thread\'s stall', async () => {
  const took: number[] = [];
  let held = 4_512;
  const r = new MemoryReclaimer({
    held: () => held, rss: () => 300 * MiB, now: () => 0,
    reclaim: () => new Promise((resolve) => setTimeout(() => resolve([12, 3]), 40)),
    onReclaimed: (x) => {
      took.push(x.ms);
      assert.deepEqual(x.stallsMs, [12, 3], 'each thread\'s stall, as reclaim() said');
    },
  }, { everyMs: 3_600_000, policy: POLICY });
  try {
    await r.tick();
    held = 0;
    await r.tick();
    assert.equal(took.length, 1);
    assert.ok((took[0] ?? 0) >= 35 && (took[0] ?? 0) < 5_000, `ms ${String(took[0])}`);
  } finally {
    r.stop();
  }
});
