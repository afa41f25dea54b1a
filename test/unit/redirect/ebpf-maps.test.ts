import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr } from '../../../src/model/cidr.ts';
import {
  bytesFromJson, decodeCidrKey, decodeIpKey, decodePodKey, decodePodRecord, decodePortKey, decodeSettings, encodeCidrKey,
  encodeIpKey, encodePodKey, encodePodRecord, encodePortKey, encodeSettings, hexArgs, indexKey,
} from '../../../src/redirect/ebpf-maps.ts';

// Expected bytes are what bpf/redirect.bpf.c reads: network order for addresses and
// ports, host (little-endian) order for the LPM prefix length and the build id.
test('settings: agent address and port in network order, inbound slots and build id in host order', () => {
  const b = encodeSettings({ agentAddress: '198.18.1.1', agentPort: 15001, inboundSlots: 2, buildId: 0xdeadbeef });
  assert.equal(b.toString('hex'), 'c6120101' + '3a99' + '0200' + 'efbeadde' + '00000000');
  assert.deepEqual(decodeSettings(b), { agentAddress: '198.18.1.1', agentPort: 15001, inboundSlots: 2, buildId: 0xdeadbeef });
});

test('inbound exemption keys are the source address in network order', () => {
  assert.equal(encodeIpKey('198.18.1.1').toString('hex'), 'c6120101');
  assert.equal(decodeIpKey(encodeIpKey('198.18.0.11')), '198.18.0.11');
});

test('port keys are the port in network order', () => {
  assert.equal(encodePortKey(53).toString('hex'), '0035');
  assert.equal(encodePortKey(15006).toString('hex'), '3a9e');
  assert.equal(decodePortKey(encodePortKey(65535)), 65535);
});

test('LPM keys: prefix length (host order) then the network', () => {
  const cases: [string, string][] = [
    ['127.0.0.0/8', '08000000' + '7f000000'],
    ['198.18.1.1/32', '20000000' + 'c6120101'],
    ['0.0.0.0/0', '00000000' + '00000000'],
    ['198.18.1.192/26', '1a000000' + 'c61201c0'],
  ];
  for (const [text, hex] of cases) {
    const key = encodeCidrKey(parseCidr(text));
    assert.equal(key.toString('hex'), hex, text);
    assert.equal(decodeCidrKey(key), text);
  }
});

test('pod records: NUL-padded id and cgroup path, keyed by the pod address', () => {
  assert.equal(encodePodKey('198.18.1.10').toString('hex'), 'c612010a');
  assert.equal(decodePodKey(Buffer.from('c612010a', 'hex')), '198.18.1.10');
  const rec = encodePodRecord({ podId: 'shop/web-1', cgroupPath: '/sys/fs/cgroup/kubepods/pod1' });
  assert.equal(rec.length, 512);
  assert.equal(rec.subarray(0, 11).toString('latin1'), 'shop/web-1\0');
  assert.equal(rec.subarray(128, 128 + 29).toString('latin1'), '/sys/fs/cgroup/kubepods/pod1\0');
  assert.deepEqual(decodePodRecord(rec), { podId: 'shop/web-1', cgroupPath: '/sys/fs/cgroup/kubepods/pod1' });
  assert.throws(() => encodePodRecord({ podId: 'x'.repeat(128), cgroupPath: '/' }), /too long/);
});

test('bpftool arguments and output', () => {
  assert.deepEqual(hexArgs(indexKey(0)), ['hex', '00', '00', '00', '00']);
  assert.deepEqual(hexArgs(Buffer.from([0xc6, 0x0a])), ['hex', 'c6', '0a']);
  assert.deepEqual(bytesFromJson(['0xc6', '0x12', '0x1', '0x0a'], 'x'), Buffer.from([0xc6, 0x12, 0x01, 0x0a]));
  assert.throws(() => bytesFromJson({ agent_ip: 1 }, 'settings value'), /settings value in an unexpected form/);
  assert.throws(() => decodeSettings(Buffer.alloc(8)), /8 bytes, expected 16/);
});
