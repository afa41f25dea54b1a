import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentChecks } from '../../../src/app/agent-checks.ts';
import { captureVerdicts } from '../../../src/app/host-check.ts';
import { effectiveCapabilities, hasCapability } from '../../../src/core/capabilities.ts';
import { renderChecks } from '../../../src/cli/check.ts';

const NOW = Date.parse('2025-06-01T00:00:00Z');
const later = '2025-06-02T00:00:00.000Z';
const earlier = '2025-05-31T00:00:00.000Z';

const dump = (over: Record<string, unknown> = {}) => ({
  node: 'node-1', version: 'v7',
  feed: { connected: true, synced: true, lastError: undefined, nodeCertificateNotAfter: later },
  capture: { mode: 'ebpf', requested: 'auto', enrolled: ['shop/web-1'], refused: [] },
  certificates: [{ identity: 'spiffe://cluster.local/ns/shop/sa/web', notAfter: later }],
  mesh: { workloads: [
    { key: 'shop/web-1', node: 'node-1', enrolled: true }, { key: 'shop/web-2', node: 'node-2', enrolled: true },
    { key: 'plain/x', node: 'node-1', enrolled: false },
  ] },
  ...over,
});
const verdicts = (d: ReturnType<typeof dump>) => agentChecks(d, NOW).map((c) => `${c.id} ${c.status}`);

test('agent checks: a healthy agent passes everything; only its own node\'s enrolled pods are checked', () => {
  assert.deepEqual(verdicts(dump()), [
    'control pass', 'node-certificate pass', 'certificate:spiffe://cluster.local/ns/shop/sa/web pass', 'capture-mode pass', 'capture:shop/web-1 pass',
  ]);
  assert.match(agentChecks(dump(), NOW).find((c) => c.id === 'capture-mode')?.detail ?? '', /ebpf \(asked for auto\)/);
});

test('agent checks: each failure is named', () => {
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ feed: { connected: false, synced: true, lastError: 'UNAVAILABLE: connect ECONNREFUSED', nodeCertificateNotAfter: later } }, 'control', /not connected \(serving the last good config\): UNAVAILABLE/],
    [{ feed: { connected: true, nodeCertificateNotAfter: earlier } }, 'node-certificate', /expired at 2025-05-31/],
    [{ feed: { connected: false, synced: false } }, 'node-certificate', /no node certificate/],
    [{ certificates: [{ identity: 'spiffe://x/ns/a/sa/b', lastError: 'WEFT_IDENTITY_NOT_ON_NODE' }] }, 'certificate:spiffe://x/ns/a/sa/b', /none issued yet: WEFT_IDENTITY_NOT_ON_NODE/],
    [{ capture: { mode: 'ebpf', enrolled: [], refused: [{ pod: 'shop/web-1', reason: 'IPv6 only' }] } }, 'capture:shop/web-1', /refused: IPv6 only/],
    [{ capture: { mode: 'iptables', enrolled: [], refused: [] } }, 'capture:shop/web-1', /enrolled but not captured/],
  ];
  for (const [over, id, detail] of cases) {
    const c = agentChecks(dump(over), NOW).find((x) => x.id === id);
    assert.equal(c?.status, 'fail', `${id}: ${JSON.stringify(c)}`);
    assert.match(c.detail ?? '', detail);
  }
  const local = agentChecks(dump({ feed: { node: 'node-1', manifests: '/m' } }), NOW);
  assert.equal(local.find((c) => c.id === 'control')?.status, 'skip', 'a standalone agent has no control plane to check');
});

test('which missing capture features fail the check depends on the mode', () => {
  const cases: Array<[Parameters<typeof captureVerdicts>, string]> = [
    [['ebpf', false, true], 'fail warn'],
    [['iptables', false, false], 'warn fail'],
    [['auto', true, false], 'fail warn'],
    [['auto', false, true], 'warn fail'],
    [['auto', false, false], 'fail fail'],
  ];
  for (const [args, want] of cases) {
    const v = captureVerdicts(...args);
    assert.equal(`${v.ebpf} ${v.iptables}`, want, args.join(' '));
  }
});

test('capabilities from /proc/self/status', () => {
  const root = effectiveCapabilities('Name:\tx\nCapEff:\t000001ffffffffff\n');
  assert.ok(hasCapability(root, 'CAP_BPF') && hasCapability(root, 'CAP_SYS_ADMIN'));
  const netAdmin = effectiveCapabilities('CapEff:\t0000000000001000\n');
  assert.deepEqual([hasCapability(netAdmin, 'CAP_NET_ADMIN'), hasCapability(netAdmin, 'CAP_BPF')], [true, false]);
  assert.equal(effectiveCapabilities('nothing'), 0n);
});

test('the readable list groups checks and counts them', () => {
  const text = renderChecks([
    { group: 'ebpf', id: 'btf', what: 'kernel BTF', status: 'fail', detail: 'missing' },
    { group: 'ebpf', id: 'x', what: 'x', status: 'pass' },
    { group: 'agent', id: 'agent', what: 'agent', status: 'skip', detail: 'none' },
  ]);
  assert.equal(text, 'ebpf\n  ✖ kernel BTF: missing\n  ✔ x\nagent\n  - agent: none\n\n1 passed, 1 failed, 0 warnings, 1 skipped\n');
});
