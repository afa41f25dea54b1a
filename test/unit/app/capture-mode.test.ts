import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideCapture } from '../../../src/app/capture-mode.ts';

const check = (id: string, ok: boolean, detail?: string) => ({ id, what: id, ok, ...(detail === undefined ? {} : { detail }) });

test('capture mode: explicit modes are kept; auto takes eBPF only when every check passes, else names what is missing', () => {
  const all = { checks: [check('btf', true), check('program:sockops', true)] };
  const noBtf = { checks: [check('btf', false, 'no BTF at /sys/kernel/btf/vmlinux'), check('program:sockops', true)] };
  const cases: Array<[Parameters<typeof decideCapture>[0], Parameters<typeof decideCapture>[1], string, string[]]> = [
    ['ebpf', undefined, 'ebpf', []],
    ['iptables', noBtf, 'iptables', []],
    ['off', undefined, 'off', []],
    ['auto', all, 'ebpf', []],
    ['auto', noBtf, 'iptables', ['btf: no BTF at /sys/kernel/btf/vmlinux']],
    ['auto', undefined, 'iptables', []], // the probe itself failed
  ];
  for (const [requested, probe, mode, missing] of cases) assert.deepEqual(decideCapture(requested, probe), { mode, missing }, `${requested} ${JSON.stringify(probe)}`);
});
