import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { inboundExemptSources } from '../../../src/app/inbound-exempt.ts';

const v4 = (address: string, internal = false): NetworkInterfaceInfo => ({ address, family: 'IPv4', internal, netmask: '255.255.255.0', mac: '00:00:00:00:00:00', cidr: `${address}/24` });
const v6 = (address: string): NetworkInterfaceInfo => ({ address, family: 'IPv6', internal: false, netmask: 'ffff::', mac: '00:00:00:00:00:00', cidr: `${address}/64`, scopeid: 0 });

const cases: [string, readonly string[], NodeJS.Dict<NetworkInterfaceInfo[]>, string[]][] = [
  ['the chart: $(HOST_IP) for both, and the bridge the kernel reaches pods from', ['198.18.0.11', '198.18.0.11'],
    { eth0: [v4('198.18.0.11')], weft0: [v4('198.18.1.1')], lo: [v4('127.0.0.1', true)] }, ['198.18.0.11', '198.18.1.1']],
  ['a wildcard tunnel address is no source', ['198.18.1.1', '0.0.0.0'], { br0: [v4('198.18.1.1')] }, ['198.18.1.1']],
  ['loopback and IPv6 are left out', [], { lo: [v4('127.0.0.1', true)], eth0: [v6('fd00::1'), v4('10.0.0.5')] }, ['10.0.0.5']],
  ['an interface with no addresses', ['10.0.0.5'], { dummy0: undefined }, ['10.0.0.5']],
];

for (const [name, configured, interfaces, want] of cases) {
  test(`inbound exempt sources: ${name}`, () => {
    assert.deepEqual(inboundExemptSources(configured, interfaces), want);
  });
}
