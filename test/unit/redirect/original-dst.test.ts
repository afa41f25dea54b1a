import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, Socket, type AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { isWeftError } from '../../../src/core/errors.ts';
import { RedirectErrors } from '../../../src/redirect/errors.ts';
import { cannotRun } from '../../support/root.ts';
import { NATIVE_ADDON_PATH, originalDestination, socketFd } from '../../../src/redirect/original-dst.ts';

test('a socket without a descriptor is refused clearly', () => {
  assert.throws(() => socketFd(new Socket()), (err: unknown) => isWeftError(err, RedirectErrors.NO_ORIGINAL_DST) && /no file descriptor/.test(err.message));
});

// Not captured: conntrack (if it tracks loopback here) reports the real destination,
// otherwise the call fails with the errno named. Either way no garbage and no crash.
test('an uncaptured loopback connection: the real destination or a named errno', async (t) => {
  if (!existsSync(NATIVE_ADDON_PATH)) {
    cannotRun(t, `the native addon ${NATIVE_ADDON_PATH} is not built; run npm run bootstrap`);
    return;
  }
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const client = connect(port, '127.0.0.1');
  t.after(() => client.destroy());
  const sock = await accepted;
  t.after(() => sock.destroy());
  try {
    assert.deepEqual(originalDestination(sock), { address: '127.0.0.1', port });
  } catch (err: unknown) {
    assert.ok(isWeftError(err, RedirectErrors.NO_ORIGINAL_DST), String(err));
    assert.match(err.message, /getsockopt\(SOL_IP, SO_ORIGINAL_DST\): E[A-Z]+ \(/);
    assert.match(err.message, /127\.0\.0\.1:\d+/);
  }
});
