// A small, bounded connection holder for the idle-connections scenario. Runs inside pods.
//
//   node holder.ts serve PORT LIFETIME_S        accept and keep connections, read nothing;
//                                               exit after LIFETIME_S or on SIGTERM
//   node holder.ts hold HOST PORT COUNT HOLD_S  open COUNT connections (at most 200 connecting
//                                               at once), print one WEFT_HOLD {...} line, keep
//                                               them until stdin ends or HOLD_S pass, then exit
//
// Every phase has a deadline, so the holder stops by itself whatever its parent does.
// Raise the descriptor limit around it (prlimit --nofile): N connections need N descriptors.

import { connect, createServer, type Socket } from 'node:net';

const CONNECTING_AT_ONCE = 200;
const CONNECT_TIMEOUT_MS = 5000;

function serve(port: number, lifetimeS: number): void {
  const sockets = new Set<Socket>();
  const server = createServer({ pauseOnConnect: true }, (s) => {
    sockets.add(s);
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
  const open: Socket[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const one = (): Promise<void> => new Promise((resolve) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => s.destroy(new Error('connect timeout')), CONNECT_TIMEOUT_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      open.push(s);
      resolve();
    });
    s.on('error', (e: Error) => {
      clearTimeout(timer);
      if (!open.includes(s)) {
        failed++;
        firstError ??= e.message;
        resolve();
      }
    });
  });
  const worker = async (): Promise<void> => {
    while (next < count && Date.now() < deadline) {
      next++;
      await one();
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: Math.min(CONNECTING_AT_ONCE, count) }, worker));
  process.stdout.write(`WEFT_HOLD ${JSON.stringify({ opened: open.length, failed, firstError, ms: Date.now() - started })}\n`);
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
