import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyDelta } from '../../../src/control/apply-update.ts';
import type { WireResource } from '../../../src/control/protocol.ts';
import type { ControlResource } from '../../../src/control/resource.ts';

const wire = (key: string, version: string, body: unknown): WireResource => {
  const [type, ...name] = key.split('/');
  return { type, name: name.join('/'), version, body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)) };
};
const held = (entries: Array<[string, string, unknown]>): Map<string, ControlResource> =>
  new Map(entries.map(([key, version, body]) => {
    const [type, ...name] = key.split('/');
    return [key, { type, name: name.join('/'), version, body }];
  }));
const noBad = (r: ControlResource): string | undefined => ((r.body as { bad?: string }).bad === undefined ? undefined : `bad: ${(r.body as { bad: string }).bad}`);

test('valid resources apply, bad ones are refused by key and the old version stays', () => {
  const current = held([['svc/a', '1', { v: 1 }], ['svc/b', '1', { v: 1 }], ['svc/c', '1', { v: 1 }]]);
  const out = applyDelta(current, {
    resources: [wire('svc/a', '2', { v: 2 }), wire('svc/b', '2', { bad: 'port 0' }), wire('svc/d', '1', 'not json{')],
    removed: ['svc/c', 'svc/unknown'],
  }, noBad);
  assert.deepEqual(out.rejected.map((r) => [r.key, r.version]), [['svc/b', '2'], ['svc/d', '1']]);
  assert.match(out.rejected[0].message, /^bad: port 0$/);
  assert.match(out.rejected[1].message, /^body is not JSON: /);
  assert.deepEqual([...out.next.keys()].sort(), ['svc/a', 'svc/b']);
  assert.deepEqual(out.next.get('svc/a')?.body, { v: 2 });
  assert.equal(out.next.get('svc/b'), current.get('svc/b'), 'last good kept');
  assert.deepEqual([...out.changedKeys].sort(), ['svc/a', 'svc/c']);
  assert.equal(current.size, 3, 'the current config is never mutated');
});

test('an update that changes nothing returns the same map', () => {
  const current = held([['svc/a', '1', { v: 1 }]]);
  const out = applyDelta(current, { resources: [wire('svc/a', '1', { v: 1 })], removed: ['svc/zzz'] }, noBad);
  assert.equal(out.next, current);
  assert.deepEqual(out.changedKeys, []);
});

test('malformed envelopes and duplicates are refused with a reason', () => {
  const out = applyDelta(new Map(), {
    resources: [
      { type: '', name: 'x', version: '1', body: Buffer.from('{}') },
      { type: 'svc', name: '', version: '1', body: Buffer.from('{}') },
      { type: 'svc', name: 'v', version: '', body: Buffer.from('{}') },
      wire('svc/dup', '1', {}), wire('svc/dup', '2', {}),
    ],
    removed: [],
  }, noBad);
  assert.deepEqual(out.rejected.map((r) => r.message), [
    'type "" must be a non-empty name without "/"', 'name must not be empty', 'version must not be empty',
    'the resource appears more than once in one update',
  ]);
  assert.equal(out.next.size, 0, 'neither copy of a duplicate applies');
});

test('a validator that throws refuses only that resource', () => {
  const out = applyDelta(new Map(), { resources: [wire('svc/a', '1', {}), wire('svc/b', '1', { boom: true })], removed: [] }, (r) => {
    if ((r.body as { boom?: boolean }).boom) throw new Error('kaboom');
    return undefined;
  });
  assert.deepEqual(out.rejected, [{ key: 'svc/b', version: '1', message: 'the validator failed: kaboom' }]);
  assert.ok(out.next.has('svc/a'));
});
