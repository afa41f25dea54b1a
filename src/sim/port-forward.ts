// A loopback-only port-forward into a cluster's namespace, like `kubectl port-forward`: a
// listener on 127.0.0.1 in the root namespace hands each accepted socket (over Node's IPC
// channel) to a helper process started inside the namespace, which connects to the target
// there and copies bytes both ways. Nothing is linked between the namespaces: the sockets
// stay where they were made.

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';

import { WeftError } from '../core/errors.ts';
import { SimErrors } from './errors.ts';

const CHILD = join(import.meta.dirname, 'port-forward-child.ts');

export interface PortForwardOptions {
  /** Network namespace name (under /run/netns). */
  readonly netns: string;
  /** Where to connect inside it. */
  readonly target: { readonly host: string; readonly port: number };
  /** Local port on 127.0.0.1; 0 picks one. */
  readonly port: number;
}

export interface PortForward {
  readonly port: number;
  readonly url: string;
  /** Resolves when the helper exits (e.g. the namespace went away). */
  readonly exited: Promise<void>;
  close(): Promise<void>;
}

export async function portForward(o: PortForwardOptions): Promise<PortForward> {
  const child: ChildProcess = spawn('nsenter', [`--net=/run/netns/${o.netns}`, '--', process.execPath, CHILD, o.target.host, String(o.target.port)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.once('message', (m) => (m === 'ready' ? resolve() : reject(new Error(JSON.stringify(m)))));
    child.once('exit', (code) => reject(new WeftError(SimErrors.BAD_ARGUMENT, `the port-forward helper in ${o.netns} exited (${code ?? '?'}) before it was ready`)));
  });
  const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
    if (!child.connected) {
      socket.destroy();
      return;
    }
    child.send('socket', socket, (err) => {
      if (err !== null) socket.destroy();
    });
  });
  const address = await new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', (err) => reject(new WeftError(SimErrors.BAD_ARGUMENT, `cannot listen on 127.0.0.1:${o.port}: ${err.message}`, { cause: err })));
    server.listen({ host: '127.0.0.1', port: o.port }, () => resolve(server.address() as AddressInfo));
  });
  let closing: Promise<void> | undefined;
  return {
    port: address.port,
    url: `http://127.0.0.1:${address.port}/`,
    exited,
    close: () => (closing ??= (async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    })()),
  };
}
