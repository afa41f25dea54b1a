import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeftError } from '../../../src/core/errors.ts';
import { RedirectErrors } from '../../../src/redirect/errors.ts';
import { validateOptions, validateTarget, type RedirectorOptions } from '../../../src/redirect/options.ts';

const good: RedirectorOptions = {
  node: 'node-1', agentAddress: '198.18.1.1', outboundPort: 15001, excludePorts: [9090, 53],
  excludeCidrs: ['198.18.9.0/24', '127.0.0.0/8'], agentCgroup: '/sys/fs/cgroup/weft/agent/', podInterface: 'br0',
};

test('defaults are added, duplicates removed, trailing slashes dropped', () => {
  const cfg = validateOptions(good);
  assert.deepEqual(cfg.excludePorts, [53, 9090, 15000, 15001, 15006, 15008, 15020, 15021]);
  assert.deepEqual(cfg.excludeCidrs.map((c) => c.text), ['127.0.0.0/8', '198.18.1.1/32', '198.18.9.0/24']);
  assert.equal(cfg.agentCgroup, '/sys/fs/cgroup/weft/agent');
  assert.equal(cfg.nodeCgroupRoot, undefined, 'unset: the whole cgroup2 mount is the node\'s');
  assert.equal(validateOptions({ ...good, nodeCgroupRoot: '/sys/fs/cgroup/weft/node-1/' }).nodeCgroupRoot, '/sys/fs/cgroup/weft/node-1');
  assert.equal(validateOptions({ ...good, nodeCgroupRoot: '/' }).nodeCgroupRoot, '/');
  assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.excludePorts));
});

test('inbound defaults: off, the agent address exempt, port 15006', () => {
  const cfg = validateOptions(good);
  assert.deepEqual([cfg.inboundSlots, cfg.inboundExemptSources, cfg.inboundPort, cfg.excludeInboundPorts], [0, ['198.18.1.1'], 15006, []]);
});

test('a non-default outbound port is excluded too (no capture loop)', () => {
  assert.ok(validateOptions({ ...good, outboundPort: 25001 }).excludePorts.includes(25001));
});

const badOptions: [string, Partial<RedirectorOptions>, RegExp][] = [
  ['node with a slash', { node: 'a/b' }, /option node="a\/b"/],
  ['upper-case node', { node: 'Node1' }, /option node/],
  ['agent address not IPv4', { agentAddress: 'fe80::1' }, /agentAddress="fe80::1"/],
  ['agent address 0.0.0.0', { agentAddress: '0.0.0.0' }, /agentAddress/],
  ['port 0', { outboundPort: 0 }, /outboundPort=0/],
  ['fractional port', { outboundPort: 15001.5 }, /outboundPort/],
  ['bad excluded port', { excludePorts: [80, 70000] }, /excludePorts\[1\]=70000/],
  ['bad CIDR', { excludeCidrs: ['10.0.0.0/8', '10.1.2.3/8'] }, /excludeCidrs\[1\]="10.1.2.3\/8".*host bits/],
  ['not a CIDR', { excludeCidrs: ['example.com'] }, /excludeCidrs\[0\]="example.com"/],
  ['relative cgroup', { agentCgroup: 'weft/agent' }, /agentCgroup="weft\/agent"/],
  ['relative node cgroup root', { nodeCgroupRoot: 'weft/node-1' }, /nodeCgroupRoot="weft\/node-1": must be an absolute path/],
  ['interface name too long', { podInterface: 'a-very-long-bridge-name' }, /podInterface/],
  ['too many inbound slots', { inboundSlots: 65 }, /inboundSlots=65: must be an integer from 0 to 64/],
  ['inbound exempt source not IPv4', { inboundExemptSources: ['node-1'] }, /inboundExemptSources\[0\]="node-1"/],
  ['more exempt sources than the map holds', { inboundExemptSources: Array.from({ length: 65 }, (_, i) => `10.0.0.${i + 1}`) }, /inboundExemptSources="65 addresses".*at most 64/],
  ['bad inbound excluded port', { excludeInboundPorts: [0] }, /excludeInboundPorts\[0\]=0/],
  ['bad inbound port', { inboundPort: 99999 }, /inboundPort=99999/],
];

for (const [name, change, message] of badOptions) {
  test(`refuses ${name}`, () => {
    assert.throws(() => validateOptions({ ...good, ...change }), (err: unknown) => {
      assert.ok(isWeftError(err, RedirectErrors.BAD_OPTION), String(err));
      assert.match(err.message, message);
      return true;
    });
  });
}

test('targets: valid ones pass, bad fields are named', () => {
  assert.deepEqual(validateTarget({ podId: 'shop/web-1', ip: '198.18.1.10', cgroupPath: '/sys/fs/cgroup/x/' }), {
    podId: 'shop/web-1', ip: '198.18.1.10', cgroupPath: '/sys/fs/cgroup/x',
  });
  const cases: [object, RegExp][] = [
    [{ podId: '', ip: '198.18.1.10', cgroupPath: '/x' }, /podId=""/],
    [{ podId: 'has space', ip: '198.18.1.10', cgroupPath: '/x' }, /podId="has space"/],
    [{ podId: 'quote"d', ip: '198.18.1.10', cgroupPath: '/x' }, /podId/],
    [{ podId: 'x'.repeat(128), ip: '198.18.1.10', cgroupPath: '/x' }, /at most 127 bytes/],
    [{ podId: 'p', ip: '198.18.1', cgroupPath: '/x' }, /ip="198.18.1"/],
    [{ podId: 'p', ip: '198.18.1.10', cgroupPath: 'rel' }, /cgroupPath="rel"/],
    [{ podId: 'p', ip: '198.18.1.10', cgroupPath: `/${'d'.repeat(400)}` }, /cgroupPath/],
  ];
  for (const [pod, message] of cases) {
    assert.throws(() => validateTarget(pod as never), (err: unknown) => isWeftError(err, RedirectErrors.BAD_TARGET) && message.test(err.message));
  }
});

test('a pod with IPv6 addresses is refused with its own code, before its other fields are looked at', () => {
  for (const ip of ['198.18.1.10', '']) {
    assert.throws(() => validateTarget({ podId: 'shop/dual', ip, cgroupPath: '/sys/fs/cgroup/x', ipv6: ['fd00::10'] }), (err: unknown) => {
      assert.ok(isWeftError(err, RedirectErrors.IPV6_UNSUPPORTED), String(err));
      assert.match(err.message, /pod shop\/dual has IPv6 address\(es\) fd00::10: weft captures IPv4 only/);
      return true;
    });
  }
  assert.equal(validateTarget({ podId: 'p', ip: '198.18.1.10', cgroupPath: '/x', ipv6: [] }).ip, '198.18.1.10', 'an empty list is no IPv6');
});
