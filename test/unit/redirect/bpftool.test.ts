import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cannotRun, needsCommands } from '../../support/root.ts';
import { bpftoolErrorText, parseCgroupShow, parseCgroupTree, parseMapDump, parseProgInfo } from '../../../src/redirect/bpftool.ts';

// Outputs captured from bpftool 7.1 on Linux 6.18.
const progShow = '{"id":538,"type":"cgroup_sock_addr","name":"weft_connect4","tag":"fac2682f0164bc73","gpl_compatible":true,"loaded_at":1795359603,"uid":0,"bytes_xlated":640,"jited":true,"bytes_jited":382,"bytes_memlock":4096,"map_ids":[89,92,93,90],"btf_id":28}';
const tree = '[{"cgroup":"/sys/fs/cgroup/unified/weft-m1/a","programs":[{"id":540,"attach_type":"cgroup_sock_ops","attach_flags":"multi","name":"weft_sockops","attach_btf_name":"","attach_btf_obj_id":0,"attach_btf_id":0},{"id":538,"attach_type":"cgroup_inet4_connect","attach_flags":"multi","name":"weft_connect4","attach_btf_name":"","attach_btf_obj_id":0,"attach_btf_id":0}]},{"cgroup":"/sys/fs/cgroup/unified/weft-m1/agent","programs":[{"id":541,"attach_type":"cgroup_getsockopt","attach_flags":"multi","name":"weft_getsockopt","attach_btf_name":"","attach_btf_obj_id":0,"attach_btf_id":0},{"id":7,"attach_type":"cgroup_device","attach_flags":"","name":"sd_devices"}]}]';
const lookup = '{"key":["0x00","0x00","0x00","0x00"],"value":["0xc6","0x12","0x01","0x01","0x3a","0x99","0x00","0x00","0xff","0xff","0xff","0xff","0x00","0x00","0x00","0x00"],"formatted":{"key":0,"value":{"agent_ip":16847558,"agent_port":39226,"reserved":0,"build_id":4294967295,"reserved2":0}}}';

test('prog show', () => {
  assert.deepEqual(parseProgInfo(JSON.parse(progShow)), { id: 538, name: 'weft_connect4', type: 'cgroup_sock_addr', tag: 'fac2682f0164bc73' });
  assert.throws(() => parseProgInfo({ error: 'bpf obj get (/x): No such file or directory' }), /unexpected program description/);
});

test('cgroup tree and show: libbpf attach type names mapped to bpftool\'s, others kept as undefined', () => {
  const parsed = parseCgroupTree(JSON.parse(tree));
  assert.deepEqual(parsed.map((e) => e.cgroup), ['/sys/fs/cgroup/unified/weft-m1/a', '/sys/fs/cgroup/unified/weft-m1/agent']);
  assert.deepEqual(parsed[0].programs, [
    { id: 540, attachType: 'sock_ops', name: 'weft_sockops' },
    { id: 538, attachType: 'connect4', name: 'weft_connect4' },
  ]);
  assert.deepEqual(parsed[1].programs, [
    { id: 541, attachType: 'getsockopt', name: 'weft_getsockopt' },
    { id: 7, attachType: undefined, name: 'sd_devices' },
  ]);
  assert.deepEqual(parseCgroupShow([{ id: 2, attach_type: 'cgroup_inet4_getpeername', name: 'weft_getpeername4' }]), [{ id: 2, attachType: 'getpeername4', name: 'weft_getpeername4' }]);
  // Older bpftool spelled them the short way.
  assert.deepEqual(parseCgroupShow([{ id: 1, attach_type: 'connect4', name: 'x' }]), [{ id: 1, attachType: 'connect4', name: 'x' }]);
  // A cgroup with nothing attached prints nothing at all.
  assert.deepEqual(parseCgroupShow(undefined), []);
  assert.deepEqual(parseCgroupTree(undefined), []);
  assert.throws(() => parseCgroupTree({}), /unexpected cgroup tree/);
});

test('map lookup and dump keep the raw bytes', () => {
  const [entry] = parseMapDump([JSON.parse(lookup)]);
  assert.deepEqual(entry.key, ['0x00', '0x00', '0x00', '0x00']);
  assert.equal((entry.value as string[]).length, 16);
  assert.deepEqual(parseMapDump(JSON.parse('[]')), []);
  assert.throws(() => parseMapDump([{ formatted: {} }]), /unexpected map entry/);
});

test('error text: bpftool\'s JSON error first, else the tail of stderr', () => {
  assert.equal(bpftoolErrorText('{"error":"can\'t open cgroup /nonexist"}', ''), "can't open cgroup /nonexist");
  assert.equal(bpftoolErrorText('', 'libbpf: prog: failed to load\nError: failed to load object file\n'), 'libbpf: prog: failed to load | Error: failed to load object file');
  assert.equal(bpftoolErrorText('', ''), 'no output');
});

// The byte offsets ebpf-maps.ts writes must be the ones the compiled C uses.
test('the compiled object\'s struct layouts match the loader\'s encoders', (t) => {
  const object = join(import.meta.dirname, '..', '..', '..', 'bpf', 'build', 'redirect.bpf.o');
  if (!needsCommands(t, ['bpftool'])) return;
  if (!existsSync(object)) {
    cannotRun(t, `${object} is not built (run npm run bootstrap)`);
    return;
  }
  const btf = JSON.parse(spawnSync('bpftool', ['-j', 'btf', 'dump', 'file', object], { encoding: 'utf8' }).stdout) as {
    types: { kind: string; name?: string; size?: number; members?: { name: string; bits_offset: number }[] }[];
  };
  const layout = (name: string) => {
    const s = btf.types.find((x) => x.kind === 'STRUCT' && x.name === name);
    assert.ok(s, `struct ${name} in the object`);
    return { size: s.size, ...Object.fromEntries((s.members ?? []).map((m) => [m.name, m.bits_offset / 8])) };
  };
  assert.deepEqual(layout('weft_settings'), { size: 16, agent_ip: 0, agent_port: 4, inbound_slots: 6, build_id: 8, reserved2: 12 });
  assert.deepEqual(layout('weft_inbound_key'), { size: 8, pod_ip: 0, slot: 4 });
  assert.deepEqual(layout('weft_cidr_key'), { size: 8, prefixlen: 0, ip: 4 });
  assert.deepEqual(layout('weft_pod'), { size: 512, pod_id: 0, cgroup_path: 128 });
  assert.deepEqual(layout('weft_orig_dst'), { size: 8, ip: 0, port: 4, reserved: 6 });
});
