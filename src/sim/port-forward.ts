// A loopback-only port-forward into a cluster's namespace, like `kubectl port-forward`: a
// listener on 127.0.0.1 in the root namespace hands each accepted socket (over Node's IPC
// channel) to a helper process started inside the namespace, which connects to the target
// there and copies bytes both ways. Nothing is linked between the namespaces: the sockets
// stay where they were made.

import { spawn, type ChildProcess } from 'node:child_process';
import { Socket, connect, createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';

import { WeftError } from '../core/errors.ts';
import { SimErrors } from './errors.ts';
import { pipeBoth } from './pipe-both.ts';

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

/** Starts the helper inside `netns` and waits for its 'ready'. */
async function helper(netns: string, args: readonly string[]): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  const child: ChildProcess = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', process.execPath, CHILD, ...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.once('message', (m) => (m === 'ready' ? resolve() : reject(new WeftError(SimErrors.BAD_ARGUMENT, `port-forward in ${netns}: ${JSON.stringify(m)}`))));
    child.once('exit', (code) => reject(new WeftError(SimErrors.BAD_ARGUMENT, `the port-forward helper in ${netns} exited (${code ?? '?'}) before it was ready`)));
  });
  return { child, exited };
}

function stopper(child: ChildProcess, exited: Promise<void>, before: () => Promise<void> = () => Promise.resolve()): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => (closing ??= (async () => {
    await before();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  })());
}

export interface ReverseForwardOptions {
  readonly netns: string;
  /** Where to listen inside the namespace. */
  readonly listen: { readonly host: string; readonly port: number };
  /** Where to connect from here (the caller's namespace): loopback only. */
  readonly target: { readonly host: string; readonly port: number };
}

/**
 * The other way round: a listener inside the namespace whose connections reach `target` on
 * this machine's loopback (e.g. the simulated agents exporting traces to a collector the user
 * runs on the host). Only loopback targets: the simulator never reaches past the machine.
 */
export async function reverseForward(o: ReverseForwardOptions): Promise<{ readonly exited: Promise<void>; close(): Promise<void> }> {
  if (!/^127\.|^localhost$|^::1$/.test(o.target.host)) {
    throw new WeftError(SimErrors.BAD_ARGUMENT, `a reverse forward out of the simulator goes to loopback only, not ${o.target.host}`);
  }
  const { child, exited } = await helper(o.netns, ['listen', o.listen.host, String(o.listen.port)]);
  child.on('message', (m: unknown, socket: unknown) => {
    if (m !== 'socket' || !(socket instanceof Socket)) return;
    pipeBoth(socket, connect({ host: o.target.host, port: o.target.port }));
  });
  return { exited, close: stopper(child, exited) };
}


export async function portForward(o: PortForwardOptions): Promise<PortForward> {
  const { child, exited } = await helper(o.netns, ['connect', o.target.host, String(o.target.port)]);
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
  return {
    port: address.port,
    url: `http://127.0.0.1:${address.port}/`,
    exited,
    // Stop accepting, then end the helper, which holds every forwarded connection. Waiting for
    // server.close()'s callback instead hangs on a client that keeps its connection (a browser,
    // a keep-alive fetch) and, once the helper is gone, forever (the server asks the dead helper
    // how many of its sockets are still open): teardown on Ctrl-C ended with exit 13.
    close: stopper(child, exited, () => {
      server.close();
      return Promise.resolve();
    }),
  };
}
