// A crash looks like a crash (issue 16, point 5): a proxy process splicing with the native
// SocketCloser (SO_LINGER 0 while bytes may be in flight) is killed with SIGKILL, and its client
// sees a reset, not a clean FIN that a protocol without length framing would take for a
// complete transfer. Without the closer the same kill gives a FIN (the test can fail). A clean
// end through the same proxy stays a clean FIN with every byte delivered.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';

import { NATIVE_ADDON_PATH } from '../../../src/core/native-addon.ts';
import { cannotRun } from '../../support/root.ts';

const SRC = join(import.meta.dirname, '..', '..', '..', 'src');

/** A one-connection-at-a-time L4 proxy in its own process: accept, connect upstream, splice. */
const PROXY = (withCloser: boolean): string => `
import { createServer, connect } from 'node:net';
import { splice } from ${JSON.stringify(join(SRC, 'proxy', 'splice.ts'))};
import { LingerSocketCloser } from ${JSON.stringify(join(SRC, 'app', 'native-sockets.ts'))};
const [upstreamPort] = process.argv.slice(1).map(Number);
const closer = ${withCloser} ? new LingerSocketCloser({ warn: (o, m) => console.error(m, o) }) : undefined;
const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
  const upstream = connect({ host: '127.0.0.1', port: upstreamPort, allowHalfOpen: true }, () => {
    client.resume();
    void splice(client, upstream, undefined, closer === undefined ? {} : { closer });
  });
  upstream.on('error', () => {});
  client.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
setTimeout(() => process.exit(0), 60_000).unref();
`;

async function startProxy(t: TestContext, upstreamPort: number, withCloser: boolean): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', PROXY(withCloser), String(upstreamPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`proxy exited ${code}`)));
  });
  return { child, port: Number(line) };
}

async function listen(t: TestContext, onSocket: (s: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onSocket(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return (server.address() as AddressInfo).port;
}

/** How the client's connection ended, and what it got. */
function ending(s: Socket): Promise<{ how: string; bytes: number; text: string }> {
  return new Promise((resolve) => {
    let how = 'no FIN';
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => { how = 'FIN'; });
    s.once('error', (e: NodeJS.ErrnoException) => { how = e.code ?? e.message; });
    s.once('close', () => {
      const all = Buffer.concat(parts);
      resolve({ how, bytes: all.length, text: all.subarray(-8).toString() });
    });
  });
}

function addonOrSkip(t: TestContext): boolean {
  if (existsSync(NATIVE_ADDON_PATH)) return true;
  return cannotRun(t, `the native addon ${NATIVE_ADDON_PATH} is not built; run npm run bootstrap`);
}

for (const [withCloser, expected] of [[true, 'ECONNRESET'], [false, 'FIN']] as const) {
  test(`a proxy killed mid-transfer ${withCloser ? 'with' : 'without'} SO_LINGER 0 leaves its client ${expected === 'FIN' ? 'a clean FIN (what the closer prevents)' : 'a reset'}`, async (t) => {
    if (!addonOrSkip(t)) return;
    // The upstream streams bytes for as long as the connection lives.
    const upstreamPort = await listen(t, (s) => {
      const chunk = Buffer.alloc(16 * 1024, 1);
      const timer = setInterval(() => s.write(chunk), 5);
      s.once('close', () => clearInterval(timer));
    });
    const proxy = await startProxy(t, upstreamPort, withCloser);
    const client = connect({ host: '127.0.0.1', port: proxy.port });
    const ended = ending(client);
    await new Promise<void>((resolve) => client.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, 200));
    proxy.child.kill('SIGKILL');
    const end = await ended;
    assert.equal(end.how, expected, `after ${end.bytes} bytes`);
  });
}

test('a clean end through the lingering proxy is a FIN with every byte (the graceful path turns lingering off)', async (t) => {
  if (!addonOrSkip(t)) return;
  const total = 8 * 1024 * 1024;
  // The upstream sends 8 MiB fast and closes at once: any RST would throw away what is in flight.
  const upstreamPort = await listen(t, (s) => {
    s.resume();
    s.end(Buffer.concat([Buffer.alloc(total - 8, 2), Buffer.from('THE-END!')]));
  });
  const proxy = await startProxy(t, upstreamPort, true);
  for (let i = 0; i < 5; i++) {
    const client = connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true });
    const ended = ending(client);
    // A slow reader: most of the bytes are still in the proxy's buffers when the upstream is done.
    client.pause();
    setTimeout(() => client.resume(), 300);
    client.end();
    const end = await ended;
    assert.deepEqual(end, { how: 'FIN', bytes: total, text: 'THE-END!' }, `connection ${i + 1}`);
  }
});
