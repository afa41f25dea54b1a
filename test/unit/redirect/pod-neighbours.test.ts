import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { neighbourPins, nodeMacs, parseRouteGet, PodNeighbourPins, type PodRoute } from '../../../src/redirect/pod-neighbours.ts';

const BRIDGE_MAC = '02:00:00:00:01:01';
const macs = new Map([['198.18.1.1', BRIDGE_MAC], ['198.18.0.11', '02:00:00:00:00:0b']]);

const cases: [string, PodRoute[], { ip: string; mac: string; dev: string }[]][] = [
  ['a bridge: the node address on the pod\'s link is pinned to the bridge\'s MAC',
    [{ to: '198.18.1.1', dev: 'eth0' }], [{ ip: '198.18.1.1', mac: BRIDGE_MAC, dev: 'eth0' }]],
  ['an address off the link: its gateway (the bridge) is pinned, once',
    [{ to: '198.18.0.11', gateway: '198.18.1.1', dev: 'eth0' }, { to: '198.18.1.1', dev: 'eth0' }], [{ ip: '198.18.1.1', mac: BRIDGE_MAC, dev: 'eth0' }]],
  ['a routed CNI\'s link-local gateway is not the node\'s: nothing to pin',
    [{ to: '198.18.0.11', gateway: '169.254.1.1', dev: 'eth0' }], []],
];
for (const [name, routes, want] of cases) {
  test(`neighbour pins: ${name}`, () => assert.deepEqual(neighbourPins(routes, macs), want));
}

test('nodeMacs: IPv4 addresses with their interface MAC; loopback and MAC-less interfaces left out', () => {
  const i = (address: string, mac: string, internal = false, family: 'IPv4' | 'IPv6' = 'IPv4'): NetworkInterfaceInfo =>
    (family === 'IPv4' ? { address, mac, internal, family, netmask: '255.255.255.0', cidr: null } : { address, mac, internal, family, netmask: 'ffff::', cidr: null, scopeid: 0 });
  assert.deepEqual([...nodeMacs({ lo: [i('127.0.0.1', '00:00:00:00:00:00', true)], weft0: [i('198.18.1.1', BRIDGE_MAC), i('fe80::1', BRIDGE_MAC, false, 'IPv6')], tun0: [i('10.9.0.1', '00:00:00:00:00:00')] })],
    [['198.18.1.1', BRIDGE_MAC]]);
});

test('parseRouteGet: on-link, via a gateway, and no route named', () => {
  assert.deepEqual(parseRouteGet('198.18.1.1', '[{"dst":"198.18.1.1","dev":"eth0","prefsrc":"198.18.1.10","flags":[],"uid":0,"cache":[]}]'), { to: '198.18.1.1', dev: 'eth0' });
  assert.deepEqual(parseRouteGet('198.18.0.11', '[{"dst":"198.18.0.11","gateway":"198.18.1.1","dev":"eth0","prefsrc":"198.18.1.10","flags":[],"uid":0,"cache":[]}]'),
    { to: '198.18.0.11', gateway: '198.18.1.1', dev: 'eth0' });
  assert.throws(() => parseRouteGet('10.0.0.1', '[]'), /no route to 10\.0\.0\.1/);
});

test('PodNeighbourPins: a namespace it cannot enter is logged, not thrown, and nothing is recorded as pinned', async () => {
  const warned: string[] = [];
  const log = { info: () => undefined, warn: (_: object, msg: string) => { warned.push(msg); } };
  const pins = new PodNeighbourPins(['198.18.1.1'], log, () => macs);
  await pins.pin('default/a', '/nonexistent/netns');
  assert.equal(pins.has('default/a'), false);
  assert.match(warned.join('\n'), /neighbour entries not pinned/);
  await pins.unpin('default/a'); // nothing pinned: a no-op
  const none = new PodNeighbourPins([], log, () => macs);
  await none.pin('default/b', '/nonexistent/netns');
  assert.equal(warned.length, 1, 'no exempt addresses: nothing to pin, nothing tried');
});
