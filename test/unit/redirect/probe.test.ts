import { test, type TestContext } from 'node:test';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { isWeftError } from '../../../src/core/errors.ts';
import { RedirectErrors } from '../../../src/redirect/errors.ts';
import { bpffsMountedAt, findCgroup2Mount } from '../../../src/redirect/probe.ts';
import { bpfProgramSections } from '../../../src/redirect/bpf-object.ts';
import { kernelFeatureChecks, mapTypesFromBtf, parseBpfIds, sectionKind } from '../../../src/redirect/kernel-features.ts';
import { cannotRun } from '../../support/root.ts';

const hybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
43 23 0:39 / /sys/fs/bpf rw,relatime - bpf bpf rw`;

test('cgroup2 mount found on a hybrid host; absence is an error naming the fix', () => {
  assert.equal(findCgroup2Mount(hybrid), '/sys/fs/cgroup/unified');
  assert.throws(() => findCgroup2Mount('31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw'), (err: unknown) =>
    isWeftError(err, RedirectErrors.NO_CGROUP2) && /--mode iptables/.test(err.message));
});

test('bpffs is recognised only where it is mounted', () => {
  assert.equal(bpffsMountedAt(hybrid, '/sys/fs/bpf'), true);
  assert.equal(bpffsMountedAt(hybrid.split('\n').slice(0, 3).join('\n'), '/sys/fs/bpf'), false);
  assert.equal(bpffsMountedAt('50 23 0:40 / /sys/fs/bpf rw - tmpfs tmpfs rw', '/sys/fs/bpf'), false);
});

const OBJECT = join(import.meta.dirname, '..', '..', '..', 'bpf', 'build', 'redirect.bpf.o');
const IDS = join(import.meta.dirname, '..', '..', '..', 'bpf', 'build', 'bpf-ids.txt');

function object(t: TestContext): Buffer | undefined {
  if (existsSync(OBJECT) && existsSync(IDS)) return readFileSync(OBJECT);
  cannotRun(t, `${OBJECT} is not built (make -C bpf; it needs kernel BTF)`);
  return undefined;
}

test('the object is read for its programs and the helpers each one calls', (t) => {
  const elf = object(t);
  if (elf === undefined) return;
  const ids = parseBpfIds(readFileSync(IDS, 'utf8'));
  const programs = bpfProgramSections(elf);
  const sections = programs.map((p) => p.section);
  for (const s of ['cgroup/connect4', 'sockops', 'cgroup/getpeername4', 'cgroup/getsockopt']) assert.ok(sections.includes(s), `${s} in ${sections.join(', ')}`);
  const helpersOf = (s: string) => (programs.find((p) => p.section === s)?.helpers ?? []).map((h) => ids.helpers.get(h));
  assert.ok(helpersOf('cgroup/connect4').includes('bpf_get_socket_cookie'));
  assert.ok(helpersOf('sockops').includes('bpf_sock_ops_cb_flags_set'));
  assert.equal(ids.helpers.get(46), 'bpf_get_socket_cookie', 'the kernel UAPI numbering');
  assert.equal(ids.mapTypes.get(9), 'lru_hash');
  // Every section is one the probe knows, so none can slip past it.
  for (const s of sections) assert.ok(sectionKind(s) !== undefined, `the probe knows ${s}`);
  assert.throws(() => bpfProgramSections(Buffer.from('not an elf at all, not an elf at all, not an elf at all, padding!')), /no ELF magic/);
});

test('kernel features: one check per program and map type; a gap names the program type, helper or map type', () => {
  const ids = parseBpfIds('BPF_FUNC_map_lookup_elem 1\nBPF_FUNC_get_socket_cookie 46\nBPF_MAP_TYPE_HASH 1\nBPF_MAP_TYPE_LRU_HASH 9\n');
  const programs = [{ section: 'cgroup/connect4', helpers: [1, 46] }, { section: 'sockops', helpers: [1] }];
  const complete = {
    program_types: { have_cgroup_sock_addr_prog_type: true, have_sock_ops_prog_type: true },
    map_types: { have_hash_map_type: true, have_lru_hash_map_type: true },
    helpers: { cgroup_sock_addr_available_helpers: ['bpf_map_lookup_elem', 'bpf_get_socket_cookie'], sock_ops_available_helpers: ['bpf_map_lookup_elem'] },
  };
  const ok = kernelFeatureChecks(complete, programs, [1, 9], ids);
  assert.deepEqual(ok.map((c) => `${c.id} ${c.ok}`), ['program:cgroup/connect4 true', 'program:sockops true', 'map:hash true', 'map:lru_hash true']);
  const noCookie = kernelFeatureChecks({ ...complete, helpers: { ...complete.helpers, cgroup_sock_addr_available_helpers: ['bpf_map_lookup_elem'] } }, programs, [1, 9], ids);
  assert.equal(noCookie[0]?.ok, false);
  assert.equal(noCookie[0]?.detail, 'cgroup_sock_addr programs cannot call bpf_get_socket_cookie on this kernel');
  const noType = kernelFeatureChecks({ ...complete, program_types: { have_cgroup_sock_addr_prog_type: true } }, programs, [], ids);
  assert.equal(noType[1]?.detail, 'the kernel lacks BPF program type sock_ops');
  const noMap = kernelFeatureChecks({ ...complete, map_types: { have_hash_map_type: true } }, [], [1, 9], ids);
  assert.deepEqual(noMap.map((c) => c.detail), [undefined, 'the kernel lacks BPF map type lru_hash']);
  const unknown = kernelFeatureChecks(complete, [{ section: 'lsm/file_open', helpers: [] }], [], ids);
  assert.match(unknown[0]?.detail ?? '', /not one weft knows how to probe/);
  assert.equal(kernelFeatureChecks(undefined, programs, [9], ids).filter((c) => !c.ok).length, 3, 'an empty probe misses everything');
});

test('map types are read from the object\'s BTF (.maps: __uint(type, N) is a pointer to an array of N)', () => {
  const btf = {
    types: [
      { id: 1, kind: 'INT', name: 'int' },
      { id: 2, kind: 'ARRAY', name: '(anon)', type_id: 1, nr_elems: 9 },
      { id: 3, kind: 'PTR', name: '(anon)', type_id: 2 },
      { id: 4, kind: 'STRUCT', name: '(anon)', members: [{ name: 'type', type_id: 3 }] },
      { id: 5, kind: 'VAR', name: 'weft_conns', type_id: 4 },
      { id: 6, kind: 'DATASEC', name: '.maps', vars: [{ type_id: 5 }] },
    ],
  };
  assert.deepEqual(mapTypesFromBtf(btf), [9]);
  assert.deepEqual(mapTypesFromBtf({}), []);
});
