// The agent's L7 flags: --l7 on|off (default on) and --sniff-ms (1..100, default 100); a bad
// value is refused with the flag and the value named.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { agentConfig } from '../../../src/config/agent.ts';

const base = { node: 'node-1', mode: 'off', manifests: '/tmp/none' };

test('agent flags: L7 on and a 100 ms sniff bound by default', () => {
  const c = agentConfig(base, {}, 2);
  assert.equal(c.l7, true);
  assert.equal(c.sniffMs, 100);
  assert.equal(c.maxRequestsPerSource, 1024);
  assert.equal(c.maxFdsPerSource, undefined, 'the descriptor budget\'s own per-source rule');
});

test('agent flags: --max-requests-per-source 8, --max-fds-per-source 40000', () => {
  assert.equal(agentConfig({ ...base, 'max-requests-per-source': '8' }, {}, 2).maxRequestsPerSource, 8);
  assert.equal(agentConfig({ ...base, 'max-fds-per-source': '40000' }, {}, 2).maxFdsPerSource, 40_000);
});

test('agent flags: --l7 off, --sniff-ms 20', () => {
  const c = agentConfig({ ...base, l7: 'off', 'sniff-ms': '20' }, {}, 2);
  assert.equal(c.l7, false);
  assert.equal(c.sniffMs, 20);
});

const bad: Array<[Record<string, string>, RegExp]> = [
  [{ l7: 'yes' }, /--l7 "yes": must be one of on, off/],
  [{ 'sniff-ms': '250' }, /--sniff-ms "250": must be a whole number from 1 to 100/],
  [{ 'max-requests-per-source': '0' }, /--max-requests-per-source "0": must be a whole number from 1 to 1000000/],
  [{ 'max-fds-per-source': '1' }, /--max-fds-per-source "1": must be a whole number from 2 to 16777216/],
  [{ 'max-fds-per-source': 'lots' }, /--max-fds-per-source "lots"/],
  [{ 'sniff-ms': '0' }, /--sniff-ms "0"/],
  [{ 'sniff-ms': 'soon' }, /--sniff-ms "soon"/],
];
for (const [flags, message] of bad) {
  test(`agent flags: refused ${JSON.stringify(flags)}`, () => {
    assert.throws(() => agentConfig({ ...base, ...flags }, {}, 2), (err: unknown) => err instanceof Error && message.test(err.message) && (err as { code?: string }).code === 'WEFT_CONFIG_INVALID');
  });
}
