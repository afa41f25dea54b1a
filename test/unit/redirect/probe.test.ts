import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeftError } from '../../../src/core/errors.ts';
import { RedirectErrors } from '../../../src/redirect/errors.ts';
import { bpffsMountedAt, findCgroup2Mount, missingKernelFeatures } from '../../../src/redirect/probe.ts';

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

const helpers = ['bpf_map_lookup_elem', 'bpf_get_socket_cookie'];
const complete = {
  program_types: { have_cgroup_sock_addr_prog_type: true, have_sock_ops_prog_type: true, have_cgroup_sockopt_prog_type: true },
  map_types: { have_lru_hash_map_type: true, have_lpm_trie_map_type: true },
  helpers: { cgroup_sock_addr_available_helpers: helpers, sock_ops_available_helpers: helpers },
};

test('kernel features: nothing missing on a complete probe; each gap named with its kernel version', () => {
  assert.deepEqual(missingKernelFeatures(complete), []);
  assert.deepEqual(missingKernelFeatures({ ...complete, program_types: { ...complete.program_types, have_cgroup_sockopt_prog_type: false } }),
    ['BPF program type cgroup_sockopt (cgroup/getsockopt, Linux 5.3)']);
  assert.deepEqual(missingKernelFeatures({ ...complete, helpers: { ...complete.helpers, sock_ops_available_helpers: ['bpf_map_lookup_elem'] } }),
    ['helper bpf_get_socket_cookie in sock_ops programs (Linux 5.0)']);
  assert.equal(missingKernelFeatures(undefined).length, 7);
});
