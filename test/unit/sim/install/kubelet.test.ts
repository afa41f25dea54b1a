import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { listensOn } from '../../../../src/sim/install/kubelet.ts';

test('listensOn: a process listening on a port, another process, a closed port', async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const { port } = server.address() as AddressInfo;
  const other = spawn('sleep', ['5']);
  try {
    assert.equal(listensOn(process.pid, port), true, 'this process listens');
    assert.equal(listensOn(other.pid ?? 0, port), false, 'another process in the same netns does not (the readiness of a replaced pod)');
    assert.equal(listensOn(process.pid, port === 65535 ? 65534 : port + 1), false);
    assert.equal(listensOn(2 ** 22 + 1, port), false, 'no such process');
  } finally {
    other.kill();
    await new Promise((resolve) => server.close(resolve));
  }
  assert.equal(listensOn(process.pid, port), false, 'closed');
});

test('coveredImage: a volume whose mountPath holds the image (a clone under /tmp) is found; others are not', async () => {
  const { coveredImage } = await import('../../../../src/sim/install/kubelet.ts');
  const same = (p: string): string => p;
  const m = (target: string) => ({ source: '/x', target, readOnly: false });
  assert.equal(coveredImage([m('/tmp'), m('/sys/fs/bpf')], '/tmp/weft', same), '/tmp/weft', 'an emptyDir at /tmp hides a clone in /tmp/weft');
  assert.equal(coveredImage([m('/tmp/weft')], '/tmp/weft', same), '/tmp/weft');
  assert.equal(coveredImage([m('/tmp'), m('/var/run/weft')], '/root/weft', same), undefined, 'a clone elsewhere is not covered');
  assert.equal(coveredImage([m('/tmp')], '/tmpfoo/weft', same), undefined, 'a prefix of the name is not a parent');
});
