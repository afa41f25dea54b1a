// Copies bytes both ways between two sockets until either ends; an error on one ends both.
// Shared by the two sides of a port-forward.

import type { Socket } from 'node:net';

export function pipeBoth(a: Socket, b: Socket): void {
  const done = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', done);
  b.on('error', done);
  a.pipe(b).on('close', done);
  b.pipe(a).on('close', done);
  a.resume();
}
