// The namespace side of port-forward.ts: runs inside the target's network namespace, takes
// each socket the parent accepted (IPC), connects to HOST PORT here and copies both ways.
// Exits when the parent goes away.

import { connect, type Socket } from 'node:net';

const [host, portText] = process.argv.slice(2);
const port = Number(portText);
if (host === undefined || !Number.isInteger(port) || process.send === undefined) {
  process.stderr.write('usage: port-forward-child.ts HOST PORT (started by port-forward.ts with an IPC channel)\n');
  process.exit(2);
}

process.on('message', (message: unknown, socket: Socket | undefined) => {
  if (message !== 'socket' || socket === undefined) return;
  const upstream = connect({ host, port });
  const done = (): void => {
    socket.destroy();
    upstream.destroy();
  };
  socket.on('error', done);
  upstream.on('error', done);
  socket.pipe(upstream).on('close', done);
  upstream.pipe(socket).on('close', done);
  socket.resume();
});
process.on('disconnect', () => process.exit(0));
process.send('ready');
