import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guardRemovals, type FileKeys } from '../../../../src/control/source/removal-guard.ts';

const keys = (n: number, prefix = 'k') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const opts = { graceMs: 1000, maxShare: 0.5 };

const cases: [string, Record<string, FileKeys>, Record<string, number>, number, { held: string[]; released: string[] }][] = [
  ['an edit that keeps most objects applies', { a: { applied: keys(4), next: keys(3) }, b: { applied: keys(4, 'b'), next: keys(4, 'b') } }, {}, 0, { held: [], released: [] }],
  ['a file emptied is held, however small', { a: { applied: keys(1), next: [] }, b: { applied: keys(20, 'b'), next: keys(20, 'b') } }, {}, 0, { held: ['a'], released: [] }],
  ['a file deleted (nothing next) is held', { a: { applied: keys(3), next: [] } }, {}, 0, { held: ['a'], released: [] }],
  ['still held within the grace period', { a: { applied: keys(3), next: [] } }, { a: 0 }, 999, { held: ['a'], released: [] }],
  ['released once the grace period is over', { a: { applied: keys(3), next: [] } }, { a: 0 }, 1000, { held: [], released: ['a'] }],
  ['more than half of all objects at once: every removing file is held',
    { a: { applied: keys(4), next: keys(1) }, b: { applied: keys(4, 'b'), next: keys(1, 'b') }, c: { applied: keys(2, 'c'), next: keys(2, 'c') } }, {}, 0,
    { held: ['a', 'b'], released: [] }],
  ['exactly half is not more than half', { a: { applied: keys(4), next: keys(2) }, b: { applied: keys(4, 'b'), next: keys(2, 'b') } }, {}, 0, { held: [], released: [] }],
  ['a held file written back is no longer held', { a: { applied: keys(3), next: keys(3) } }, { a: 0 }, 10, { held: [], released: [] }],
  ['renaming every object is an edit, not a removal', { a: { applied: keys(3), next: keys(3, 'new') } }, {}, 0, { held: [], released: [] }],
  ['a rename beside an emptied file: only the emptied one is held', { a: { applied: keys(2), next: [] }, c: { applied: keys(1, 'c'), next: keys(1, 'd') } }, {}, 0, { held: ['a'], released: [] }],
  ['a new file adds, it removes nothing', { a: { applied: [], next: keys(3) } }, {}, 0, { held: [], released: [] }],
];

for (const [what, files, previous, now, expected] of cases) {
  test(`removal guard: ${what}`, () => {
    const d = guardRemovals(new Map(Object.entries(files)), new Map(Object.entries(previous)), now, opts);
    assert.deepEqual({ held: [...d.held.keys()].sort(), released: [...d.released].sort() }, expected);
    for (const [path, since] of d.held) assert.equal(since, previous[path] ?? now, 'a hold keeps its start');
  });
}

test('removal guard: a zero grace period applies everything at once', () => {
  const d = guardRemovals(new Map([['a', { applied: keys(3), next: [] }]]), new Map(), 5, { graceMs: 0, maxShare: 0.5 });
  assert.deepEqual([[...d.held.keys()], d.released], [[], ['a']]);
});
