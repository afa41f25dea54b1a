// The native side of the proxy's socket contracts: SO_LINGER through the addon, so a proxied
// socket resets its connection if the agent dies with bytes in flight, and closes with FIN once
// it ended cleanly. Without the addon (tests, a broken build) it does nothing, said once.

import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { nativeAddon, socketFdOf, type NativeAddon } from '../core/native-addon.ts';
import type { SocketCloser } from '../proxy/index.ts';

export class LingerSocketCloser implements SocketCloser {
  readonly #addon: NativeAddon | undefined;

  constructor(logger: Pick<Logger, 'warn'>, addon: NativeAddon | Error = nativeAddon()) {
    if (addon instanceof Error) {
      logger.warn({ err: addon.message }, 'the native addon does not load: proxied sockets close with FIN even when the agent dies mid-transfer');
      this.#addon = undefined;
    } else {
      this.#addon = addon;
    }
  }

  resetOnClose(socket: Socket): void {
    this.#set(socket, 0);
  }

  finOnClose(socket: Socket): void {
    this.#set(socket, -1);
  }

  #set(socket: Socket, seconds: number): void {
    const fd = this.#addon === undefined ? undefined : socketFdOf(socket);
    if (fd === undefined) return;
    try {
      this.#addon?.setLinger(fd, seconds);
    } catch {
      // The socket closed under us (EBADF) or is not TCP: nothing left to decide.
    }
  }
}
