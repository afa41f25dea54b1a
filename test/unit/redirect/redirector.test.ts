import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeftError } from '../../../src/core/errors.ts';
import { createRedirector, reclaimNode, RedirectErrors, type RedirectorOptions } from '../../../src/redirect/index.ts';

const opts: RedirectorOptions = {
  node: 'node-1', agentAddress: '198.18.1.1', outboundPort: 15001, excludePorts: [], excludeCidrs: [], agentCgroup: '/sys/fs/cgroup/weft-agent',
};

test('bad options are refused when the redirector is made, naming the field', () => {
  assert.throws(() => createRedirector('ebpf', { ...opts, outboundPort: 0 }), (err: unknown) =>
    isWeftError(err, RedirectErrors.BAD_OPTION) && /outboundPort=0/.test(err.message));
  assert.throws(() => createRedirector('nft' as 'ebpf', opts), /redirect mode "nft"/);
  return assert.rejects(reclaimNode('../etc'), (err: unknown) => isWeftError(err, RedirectErrors.BAD_OPTION));
});

// Whatever this host lacks first (BTF, cgroup2, or here the bpftool we point at nothing),
// the error names it and points at the fallback mode.
test('eBPF mode without bpftool: a named error suggesting --mode iptables', async () => {
  const r = createRedirector('ebpf', opts, { bpftool: '/nonexistent/bpftool' });
  await assert.rejects(r.start(), (err: unknown) => {
    assert.ok(isWeftError(err), String(err));
    assert.ok(([RedirectErrors.NO_BTF, RedirectErrors.NO_CGROUP2, RedirectErrors.NO_BPFTOOL] as string[]).includes(err.code), err.code);
    assert.match(err.message, /--mode iptables/);
    if (err.code === RedirectErrors.NO_BPFTOOL) assert.match(err.message, /\/nonexistent\/bpftool/);
    return true;
  });
  await r.close(); // never started: nothing to undo, and no throw
  await r.close();
  await assert.rejects(r.enroll({ podId: 'p', ip: '198.18.1.10', cgroupPath: '/x' }), (err: unknown) => isWeftError(err, RedirectErrors.NOT_RUNNING));
});

test('iptables mode without iptables: a named error', async () => {
  const r = createRedirector('iptables', opts, { iptablesSave: '/nonexistent/iptables-save' });
  await assert.rejects(r.start(), (err: unknown) => isWeftError(err, RedirectErrors.NO_IPTABLES) && /nonexistent\/iptables-save/.test(err.message));
  assert.deepEqual(r.enrolled(), []);
  await r.close();
});
