// A small, bounded connection holder for the idle-connections scenario. Runs inside pods.
//
//   node holder.ts serve PORT LIFETIME_S        accept connections, send each one byte, keep them
//                                               until the client closes; exit after LIFETIME_S
//                                               or on SIGTERM
//   node holder.ts hold HOST PORT COUNT HOLD_S  open COUNT connections (at most 200 opening at
//                                               once), print one WEFT_HOLD {...} line, keep
//                                               them until stdin ends or HOLD_S pass, then exit
//
// A connection counts as open when the server's byte arrives, i.e. end to end: a proxy
// accepts before it has connected upstream (across nodes, before a TLS handshake), so
// counting TCP connects would run ahead of the proxies and overflow their accept queues.
//
// Every phase has a deadline, so the holder stops by itself whatever its parent does.
// Raise the descriptor limit around it (prlimit --nofile): N connections need N descriptors.

import { connect, createServer, type Socket } from 'node:net';

const CONNECTING_AT_ONCE = 200;
const OPEN_TIMEOUT_MS = 15_000;

function serve(port: number, lifetimeS: number): void {
  const sockets = new Set<Socket>();
  // Reads (and drops) what arrives so it sees the client's FIN and closes too: a proxy keeps a
  // half-closed connection until the other side closes, which would leak into the next run.
  const server = createServer((s) => {
    sockets.add(s);
    s.write('x');
    s.resume();
    s.on('error', () => s.destroy());
    s.on('close', () => sockets.delete(s));
  });
  const stop = (): void => {
    for (const s of sockets) s.destroy();
    server.close();
    process.exit(0);
  };
  server.listen({ port, host: '0.0.0.0', backlog: 4096 });
  // unref'd: the listening server keeps the process alive; the timer still ends it.
  setTimeout(stop, lifetimeS * 1000).unref();
  process.on('SIGTERM', stop);
}

async function hold(host: string, port: number, count: number, holdS: number): Promise<void> {
  const deadline = Date.now() + holdS * 1000;
  // Opening may take half the time at most; the other half is for holding.
  const openDeadline = Date.now() + (holdS * 1000) / 2;
  const open = new Set<Socket>();
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const one = (): Promise<void> => new Promise((resolve) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => s.destroy(new Error(`no byte from the server within ${OPEN_TIMEOUT_MS / 1000} s`)), OPEN_TIMEOUT_MS);
    s.once('data', () => {
      clearTimeout(timer);
      s.pause();
      open.add(s);
      resolve();
    });
    s.once('end', () => s.destroy(new Error('closed before the server\'s byte')));
    s.on('error', (e: Error) => {
      clearTimeout(timer);
      if (!open.has(s)) {
        failed++;
        firstError ??= e.message;
        resolve();
      }
    });
  });
  const worker = async (): Promise<void> => {
    while (next < count && Date.now() < openDeadline) {
      next++;
      await one();
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: Math.min(CONNECTING_AT_ONCE, count) }, worker));
  process.stdout.write(`WEFT_HOLD ${JSON.stringify({ opened: open.size, failed, firstError, ms: Date.now() - started })}\n`);
  const done = (): void => {
    for (const s of open) s.destroy();
    process.exit(0);
  };
  setTimeout(done, Math.max(0, deadline - Date.now()));
  process.stdin.on('end', done);
  process.stdin.on('close', done);
  process.stdin.resume();
  process.on('SIGTERM', done);
}

const [mode, ...args] = process.argv.slice(2);
const num = (s: string | undefined, what: string): number => {
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0) {
    process.stderr.write(`holder: ${what} must be a positive whole number, got ${JSON.stringify(s)}\n`);
    process.exit(2);
  }
  return n;
};
if (mode === 'serve') {
  serve(num(args[0], 'PORT'), num(args[1], 'LIFETIME_S'));
} else if (mode === 'hold') {
  await hold(args[0] ?? '', num(args[1], 'PORT'), num(args[2], 'COUNT'), num(args[3], 'HOLD_S'));
} else {
  process.stderr.write('usage: holder.ts serve PORT LIFETIME_S | hold HOST PORT COUNT HOLD_S\n');
  process.exit(2);
}
