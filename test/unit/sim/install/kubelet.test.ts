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
