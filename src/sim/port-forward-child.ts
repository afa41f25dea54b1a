// The namespace side of port-forward.ts, run inside the target's network namespace:
//   connect HOST PORT  takes each socket the parent accepted (IPC), connects to HOST:PORT
//                      here and copies both ways (a forward into the namespace);
//   listen HOST PORT   listens on HOST:PORT here and hands each accepted socket to the parent
//                      (a reverse forward: the parent connects out in its own namespace).
// Exits when the parent goes away.

import { connect, createServer, type Socket } from 'node:net';

import { pipeBoth } from './pipe-both.ts';

const [mode, host, portText] = process.argv.slice(2);
const port = Number(portText);
const send = process.send?.bind(process);
if ((mode !== 'connect' && mode !== 'listen') || host === undefined || !Number.isInteger(port) || send === undefined) {
  process.stderr.write('usage: port-forward-child.ts connect|listen HOST PORT (started by port-forward.ts with an IPC channel)\n');
  process.exit(2);
}


if (mode === 'connect') {
  process.on('message', (message: unknown, socket: Socket | undefined) => {
    if (message !== 'socket' || socket === undefined) return;
    pipeBoth(socket, connect({ host, port }));
  });
  send('ready');
} else {
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    send('socket', socket, undefined, (err) => {
      if (err !== null) socket.destroy();
    });
  });
  server.once('error', (err) => {
    send(`cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  });
  server.listen({ host, port }, () => send('ready'));
}
process.on('disconnect', () => process.exit(0));
