import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AgentLedger, type RejectedVersions } from '../../../src/control/agent-ledger.ts';
import type { ControlResource } from '../../../src/control/resource.ts';

const r = (key: string, version: string): ControlResource => {
  const [type, ...name] = key.split('/');
  return { type, name: name.join('/'), version, body: {} };
};
const desired = (...rs: ControlResource[]) => new Map(rs.map((x) => [`${x.type}/${x.name}`, x]));
const keys = (plan: { changed: readonly ControlResource[]; removed: readonly string[] }) =>
  ({ changed: plan.changed.map((x) => `${x.type}/${x.name}@${x.version}`), removed: [...plan.removed] });

test('plan: a fresh agent gets everything; one that reports its versions gets only the difference', () => {
  const cases: Array<[string, Record<string, string>, ControlResource[], { changed: string[]; removed: string[] }]> = [
    ['empty agent', {}, [r('mesh/config', '1'), r('svc/a', '1')], { changed: ['mesh/config@1', 'svc/a@1'], removed: [] }],
    ['in sync', { 'mesh/config': '1', 'svc/a': '1' }, [r('mesh/config', '1'), r('svc/a', '1')], { changed: [], removed: [] }],
    ['one changed', { 'mesh/config': '1', 'svc/a': '1' }, [r('mesh/config', '1'), r('svc/a', '2')], { changed: ['svc/a@2'], removed: [] }],
    ['one gone, one new', { 'svc/a': '1', 'svc/old': '1' }, [r('svc/a', '1'), r('svc/new', '1')], { changed: ['svc/new@1'], removed: ['svc/old'] }],
  ];
  for (const [name, initial, want, expected] of cases) {
    const ledger = new AgentLedger(new Map(Object.entries(initial)), new Map());
    assert.deepEqual(keys(ledger.plan(desired(...want))), expected, name);
  }
});

test('sent pushes move the view; ACK moves the acked versions', () => {
  const ledger = new AgentLedger<string>(new Map(), new Map());
  const p1 = ledger.plan(desired(r('svc/a', '1'), r('svc/b', '1')));
  ledger.sent('n1', p1, 'meta1');
  assert.deepEqual(keys(ledger.plan(desired(r('svc/a', '1'), r('svc/b', '1')))), { changed: [], removed: [] }, 'in flight counts as sent');
  const p2 = ledger.plan(desired(r('svc/a', '2')));
  ledger.sent('n2', p2, 'meta2');
  assert.equal(ledger.pendingCount, 2);
  assert.equal(ledger.ack('n1')?.meta, 'meta1');
  assert.deepEqual([...ledger.acked()], [['svc/a', '1'], ['svc/b', '1']]);
  assert.equal(ledger.ack('n2')?.meta, 'meta2');
  assert.deepEqual([...ledger.acked()], [['svc/a', '2']]);
  assert.equal(ledger.ack('n2'), undefined, 'a nonce is answered once');
  assert.equal(ledger.ack('nope'), undefined);
});

test('NACK: refused resources keep the old version and are not resent; the rest count as applied', () => {
  const rejected: RejectedVersions = new Map();
  const ledger = new AgentLedger(new Map([['svc/a', '1'], ['svc/b', '1'], ['svc/gone', '1']]), rejected);
  const plan = ledger.plan(desired(r('svc/a', '2'), r('svc/b', '2')));
  assert.deepEqual(keys(plan), { changed: ['svc/a@2', 'svc/b@2'], removed: ['svc/gone'] });
  ledger.sent('n1', plan, undefined);
  const outcome = ledger.nack('n1', [{ key: 'svc/a', message: 'bad vip' }], '1 refused');
  assert.deepEqual(outcome?.rejected, [{ key: 'svc/a', version: '2', message: 'bad vip' }]);
  assert.deepEqual([...ledger.acked()].sort(), [['svc/a', '1'], ['svc/b', '2']]);
  assert.deepEqual([...rejected.keys()], ['svc/a']);
  // The same bad version is not planned again...
  assert.deepEqual(keys(ledger.plan(desired(r('svc/a', '2'), r('svc/b', '2')))), { changed: [], removed: [] });
  // ...a newer one is, and the memory of the refusal goes.
  assert.deepEqual(keys(ledger.plan(desired(r('svc/a', '3'), r('svc/b', '2')))), { changed: ['svc/a@3'], removed: [] });
  assert.equal(rejected.size, 0);
});

test('NACK of a resource a later push already replaced does not roll the view back', () => {
  const ledger = new AgentLedger(new Map([['svc/a', '1']]), new Map());
  ledger.sent('n1', ledger.plan(desired(r('svc/a', '2'))), undefined);
  ledger.sent('n2', ledger.plan(desired(r('svc/a', '3'))), undefined);
  ledger.nack('n1', [{ key: 'svc/a', message: 'bad' }], 'bad');
  assert.deepEqual(keys(ledger.plan(desired(r('svc/a', '3')))), { changed: [], removed: [] }, 'version 3 is in flight');
  ledger.ack('n2');
  assert.deepEqual([...ledger.acked()], [['svc/a', '3']]);
});

test('a NACK naming no resource refuses the whole push, removals included', () => {
  const rejected: RejectedVersions = new Map();
  const ledger = new AgentLedger(new Map([['svc/a', '1'], ['svc/old', '1']]), rejected);
  ledger.sent('n1', ledger.plan(desired(r('svc/a', '2'))), undefined);
  ledger.nack('n1', [], 'could not decode');
  assert.deepEqual([...ledger.acked()].sort(), [['svc/a', '1'], ['svc/old', '1']]);
  assert.deepEqual(rejected.get('svc/a'), { key: 'svc/a', version: '2', message: 'could not decode' });
  // The removal is planned again; the refused version is not.
  assert.deepEqual(keys(ledger.plan(desired(r('svc/a', '2')))), { changed: [], removed: ['svc/old'] });
});

test('a refused resource that disappears is forgotten', () => {
  const rejected: RejectedVersions = new Map([['svc/a', { key: 'svc/a', version: '2', message: 'x' }]]);
  const ledger = new AgentLedger(new Map([['svc/a', '1']]), rejected);
  assert.deepEqual(keys(ledger.plan(desired())), { changed: [], removed: ['svc/a'] });
  assert.equal(rejected.size, 0);
});
