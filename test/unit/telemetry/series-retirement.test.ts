// Series of gone workloads: which label sets name a gone workload, and when a marked one is
// dropped (after the scrape that reported it, or at the next mesh change without a scrape;
// kept if used again).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { namesGoneWorkload, RetiringSeries, type WorkloadLabels } from '../../../src/telemetry/series-retirement.ts';

const labels = (src: string, dst: string): { labels: WorkloadLabels } => ({
  labels: { source_workload: src, source_workload_namespace: 'shop', destination_workload: dst, destination_workload_namespace: 'shop' },
});
const live = (...names: string[]) => (ns: string, w: string): boolean => ns === 'shop' && names.includes(w);

test('a series names a gone workload when its source or destination is not in the mesh; unknown never is', () => {
  const cases: [string, { labels: WorkloadLabels }, boolean][] = [
    ['both live', labels('web', 'db'), false],
    ['source gone', labels('old', 'db'), true],
    ['destination gone', labels('web', 'old'), true],
    ['unknown source (outside the mesh)', labels('unknown', 'db'), false],
    ['unknown destination (passthrough)', labels('web', 'unknown'), false],
  ];
  for (const [name, s, want] of cases) assert.equal(namesGoneWorkload(s.labels, live('web', 'db')), want, name);
});

test('a marked series is reported by one more scrape and gone at the next; without scrapes it goes at the next change', () => {
  const dropped: string[] = [];
  const m = new RetiringSeries<{ labels: WorkloadLabels; name: string }>((v) => dropped.push(v.name));
  m.set('a', { ...labels('web', 'db'), name: 'a' });
  m.set('b', { ...labels('old', 'db'), name: 'b' });
  m.set('c', { ...labels('gone', 'db'), name: 'c' });
  assert.equal(m.retain(live('web', 'db')), 0, 'nothing was marked before');
  m.scraping();
  assert.equal(m.size, 3, 'the first scrape after the change still reports b and c');
  m.get('c'); // c is used again (a late connection of that pod): kept
  m.scraping();
  assert.deepEqual(dropped, ['b'], 'the next scrape drops b only');
  assert.equal(m.size, 2);

  m.set('d', { ...labels('web', 'later'), name: 'd' });
  m.retain(live('web', 'db'));
  assert.equal(m.size, 3, 'c and d are marked, not yet gone');
  assert.equal(m.retain(live('web', 'db')), 2, 'no scrape came: the next change drops them');
  assert.deepEqual(dropped, ['b', 'c', 'd']);
  assert.deepEqual([...m.values()].map((v) => v.name), ['a']);
});
