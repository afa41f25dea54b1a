// Small clients and servers the mesh end-to-end tests run inside pods, nodes or the underlay
// (`node mesh-clients.ts MODE JSON`). Each prints JSON lines on stdout: progress lines while it
// runs ({"event": ...}) and one final {"result": ...} line. Every mode is bounded in time.

import { createCipheriv, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect as h2connect, constants as h2 } from 'node:http2';
import { connect as netConnect, createServer as netServer, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsServer, type TLSSocket } from 'node:tls';

function emit(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function codeOf(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
}

/** Deterministic pseudo-random bytes: AES-128-CTR over zeros, keyed by `seed`. */
function pseudoRandom(seed: string, bytes: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(bytes)), cipher.final()]);
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// ---- half-close: a server that answers only after the client's FIN ----

/** Reads until the client half-closes, then sends everything back and closes. */
function halfCloseServer(o: { port: number }): void {
  const server = netServer({ allowHalfOpen: true }, (socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.on('error', () => undefined);
    socket.on('end', () => {
      const all = Buffer.concat(chunks);
      emit({ event: 'request', bytes: all.length, sha256: sha256(all) });
      socket.end(all);
    });
  });
  server.listen(o.port, '0.0.0.0', () => emit({ event: 'listening', port: o.port, pid: process.pid }));
  setTimeout(() => process.exit(0), 10 * 60_000).unref();
  process.on('SIGTERM', () => process.exit(0));
}

/** Sends `bytes` pseudo-random bytes, shuts down its write side, then reads the whole answer. */
function halfCloseClient(o: { host: string; port: number; bytes: number; seed: string; timeoutMs?: number }): Promise<void> {
  const body = pseudoRandom(o.seed, o.bytes);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ending = 'timeout';
    const socket = netConnect({ host: o.host, port: o.port, allowHalfOpen: true });
    const done = (): void => {
      clearTimeout(timer);
      const got = Buffer.concat(chunks);
      emit({ result: { sent: body.length, sentSha256: sha256(body), received: got.length, receivedSha256: sha256(got), ending } });
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, o.timeoutMs ?? 30_000);
    socket.on('connect', () => socket.end(body));
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.on('end', () => {
      ending = 'end';
      done();
    });
    socket.on('error', (err) => {
      ending = `error:${codeOf(err)}`;
      done();
    });
  });
}

// ---- a slow HTTP server (drain): bytes trickle out, so they are in flight, not in buffers ----

/** Answers `GET /bytes/N` with N bytes written at `bytesPerSecond` (in 50 ms steps), then closes. */
function slowServer(o: { port: number; bytesPerSecond: number }): void {
  const step = Math.max(1, Math.round(o.bytesPerSecond / 20));
  const server = netServer((socket) => {
    socket.on('error', () => undefined);
    let head = '';
    const onData = (b: Buffer): void => {
      head += b.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      const n = Number(/^GET \/bytes\/(\d+) /.exec(head)?.[1] ?? 0);
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${n}\r\nconnection: close\r\n\r\n`);
      let left = n;
      const timer = setInterval(() => {
        const k = Math.min(step, left);
        left -= k;
        socket.write(Buffer.alloc(k, 'x'));
        if (left === 0) {
          clearInterval(timer);
          socket.end();
        }
      }, 50);
      socket.on('close', () => clearInterval(timer));
    };
    socket.on('data', onData);
  });
  server.listen(o.port, '0.0.0.0', () => emit({ event: 'listening', port: o.port, pid: process.pid }));
  setTimeout(() => process.exit(0), 10 * 60_000).unref();
  process.on('SIGTERM', () => process.exit(0));
}

// ---- paced HTTP downloads (drain) ----

interface Download {
  target: string;
  contentLength: number;
  body: number;
  ending: string;
  headersAt: number;
  doneAt: number;
}

/**
 * Opens `count` connections (round robin over `targets`, ip:port) with GET /bytes/N and reads
 * each at `bytesPerSecond`. Emits {"event":"started"} once every one has its headers.
 */
function pacedDownloads(o: { targets: string[]; count: number; bytes: number; bytesPerSecond: number; timeoutMs: number }): Promise<void> {
  const started = Date.now();
  const downloads: Download[] = [];
  let headersSeen = 0;
  let finished = 0;
  return new Promise((resolve) => {
    const finish = (): void => {
      clearTimeout(timer);
      clearInterval(pacer);
      emit({ result: { downloads: downloads.map((d) => ({ ...d, headersAt: d.headersAt - started, doneAt: d.doneAt - started })) } });
      resolve();
    };
    const timer = setTimeout(() => {
      for (const d of downloads) if (d.ending === '') d.ending = 'timeout';
      finish();
    }, o.timeoutMs);
    const sockets: { socket: Socket; d: Download; startedAt: number }[] = [];
    for (let i = 0; i < o.count; i++) {
      const target = o.targets[i % o.targets.length] ?? '';
      const [host, port] = target.split(':');
      const d: Download = { target, contentLength: -1, body: 0, ending: '', headersAt: 0, doneAt: 0 };
      downloads.push(d);
      const socket = netConnect({ host, port: Number(port) });
      const startedAt = Date.now();
      sockets.push({ socket, d, startedAt });
      let head = Buffer.alloc(0);
      const end = (ending: string): void => {
        if (d.ending !== '') return;
        d.ending = ending;
        d.doneAt = Date.now();
        socket.destroy();
        if (++finished === o.count) finish();
      };
      socket.on('connect', () => socket.write(`GET /bytes/${o.bytes} HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`));
      socket.on('data', (b: Buffer) => {
        if (d.contentLength < 0) {
          head = Buffer.concat([head, b]);
          const at = head.indexOf('\r\n\r\n');
          if (at < 0) return;
          const m = /content-length:\s*(\d+)/i.exec(head.subarray(0, at).toString('latin1'));
          d.contentLength = m === null ? 0 : Number(m[1]);
          d.headersAt = Date.now();
          d.body = head.length - at - 4;
          if (++headersSeen === o.count) emit({ event: 'started', afterMs: Date.now() - started });
        } else {
          d.body += b.length;
        }
        if (d.body >= d.contentLength) end('complete');
        // Ahead of schedule: stop reading until the pacer lets it go on.
        else if (d.body > ((Date.now() - startedAt) / 1000) * o.bytesPerSecond) socket.pause();
      });
      socket.on('end', () => end(d.body >= d.contentLength && d.contentLength >= 0 ? 'complete' : 'eof-truncated'));
      socket.on('error', (err) => end(`error:${codeOf(err)}`));
    }
    // Reading at a fixed pace: pause a socket while it is ahead of schedule.
    const pacer = setInterval(() => {
      const now = Date.now();
      for (const { socket, d, startedAt } of sockets) {
        if (d.ending !== '') continue;
        const allowed = ((now - startedAt) / 1000) * o.bytesPerSecond;
        if (d.body > allowed) socket.pause();
        else socket.resume();
      }
    }, 20);
  });
}

// ---- a loop of short connections (rolling restart) ----

/** One HTTP GET / per connection until `stopFile` exists or `durationMs` passed; counts failures. */
async function connectionLoop(o: { targets: string[]; durationMs: number; stopFile: string; parallel: number; timeoutMs: number }): Promise<void> {
  const started = Date.now();
  let ok = 0;
  const failures: { at: number; target: string; error: string }[] = [];
  const answeredBy = new Map<string, number>();
  let uncaptured = 0;
  let n = 0;
  const one = async (target: string): Promise<void> => {
    const [host, port] = target.split(':');
    const { error, text } = await getOnce(host ?? '', Number(port), o.timeoutMs, target);
    const who = /hello from (\S+)/.exec(text)?.[1];
    if (error === undefined && who !== undefined) {
      ok++;
      answeredBy.set(who, (answeredBy.get(who) ?? 0) + 1);
      // Through an agent the server sees its node's bridge address (x.y.z.1), else the client pod.
      if (!/ client=\d+\.\d+\.\d+\.1:/.test(text)) uncaptured++;
    } else {
      failures.push({ at: Date.now() - started, target, error: error ?? `bad answer ${JSON.stringify(text.slice(0, 80))}` });
    }
  };
  const worker = async (): Promise<void> => {
    while (Date.now() - started < o.durationMs && !existsSync(o.stopFile)) {
      const target = o.targets[n++ % o.targets.length] ?? '';
      await one(target);
      if ((ok + failures.length) % 50 === 0) emit({ event: 'progress', ok, failed: failures.length });
    }
  };
  await Promise.all(Array.from({ length: o.parallel }, worker));
  emit({ result: { ok, failed: failures.length, failures: failures.slice(0, 20), answeredBy: Object.fromEntries(answeredBy), uncaptured, ms: Date.now() - started } });
}

// ---- a flood of idle connections ----

/**
 * The first bytes of a TLS ClientHello: a record header promising 512 bytes and a handshake
 * header, then nothing more. A server waits for the rest, so the handshake never completes.
 */
const PARTIAL_CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);

/**
 * Opens `count` TCP connections to `target` (`parallel` connects in flight at a time), sends
 * nothing (`tls`: the start of a ClientHello, never finished) and keeps each open until
 * `holdMs` after the last connect or until the server ends it; then closes whatever is left
 * and reports how each ended. Bounded: `maxMs` in all. Node raises its RLIMIT_NOFILE to the
 * hard limit, which must be above `count`.
 */
async function idleFlood(o: { target: string; count: number; parallel: number; holdMs: number; maxMs: number; tls?: boolean }): Promise<void> {
  const started = Date.now();
  const [host, port] = o.target.split(':');
  const sockets = new Set<Socket>();
  const endings = new Map<string, number>();
  let connected = 0;
  let next = 0;
  let lastConnectAt = Date.now();
  const note = (how: string): void => void endings.set(how, (endings.get(how) ?? 0) + 1);
  const one = (): Promise<void> => new Promise((resolve) => {
    const s = netConnect({ host, port: Number(port) });
    sockets.add(s);
    let how = 'held';
    let settled = false;
    const connectDone = (): void => {
      if (settled) return;
      settled = true;
      resolve();
    };
    s.resume();
    s.on('connect', () => {
      connected++;
      lastConnectAt = Date.now();
      if (o.tls === true) s.write(PARTIAL_CLIENT_HELLO);
      connectDone();
    });
    s.on('end', () => { how = 'fin'; });
    s.on('error', (err) => { how = `error:${codeOf(err)}`; });
    s.on('close', () => {
      sockets.delete(s);
      note(how);
      connectDone();
    });
  });
  const opener = async (): Promise<void> => {
    while (next < o.count && Date.now() - started < o.maxMs) {
      next++;
      await one();
    }
  };
  const progress = setInterval(() => emit({ event: 'progress', opened: next, connected, open: sockets.size, ms: Date.now() - started }), 1000);
  await Promise.all(Array.from({ length: o.parallel }, opener));
  emit({ event: 'opened', opened: next, connected, open: sockets.size, ms: Date.now() - started });
  while (sockets.size > 0 && Date.now() - lastConnectAt < o.holdMs && Date.now() - started < o.maxMs) await new Promise((r) => setTimeout(r, 100));
  const heldToTheEnd = sockets.size;
  for (const s of sockets) s.destroy();
  await new Promise((r) => setTimeout(r, 200));
  clearInterval(progress);
  emit({ result: { opened: next, connected, heldToTheEnd, endings: Object.fromEntries(endings), ms: Date.now() - started } });
}

// ---- hostile tunnel clients and a fake agent ----

interface TunnelClientOptions {
  host: string;
  port: number;
  /** SNI; omitted when undefined. */
  servername?: string;
  certPem?: string;
  keyPem?: string;
  /** Trust for the server certificate; when absent the server is not verified. */
  caPem?: string;
  /** CONNECT target ip:port. */
  authority: string;
  timeoutMs?: number;
}

/** TLS 1.3 + h2 CONNECT like an agent would, with whatever credentials it is given. */
function tunnelClient(o: TunnelClientOptions): Promise<void> {
  const out: Record<string, unknown> = { tls: 'pending' };
  return new Promise((resolve) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      emit({ result: out });
      resolve();
    };
    const timer = setTimeout(() => {
      out.timeout = true;
      finish();
    }, o.timeoutMs ?? 8_000);
    const socket: TLSSocket = tlsConnect({
      host: o.host, port: o.port, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3',
      ...(o.servername === undefined ? {} : { servername: o.servername }),
      ...(o.certPem === undefined ? {} : { cert: o.certPem, key: o.keyPem }),
      ...(o.caPem === undefined ? { rejectUnauthorized: false } : { ca: o.caPem, checkServerIdentity: () => undefined }),
    });
    socket.on('error', (err) => {
      if (out.tls === 'pending') out.tls = `error:${codeOf(err)}`;
      else out.socketError = codeOf(err);
      finish();
    });
    socket.on('secureConnect', () => {
      out.tls = 'ok';
      out.alpn = socket.alpnProtocol;
      out.serverSan = socket.getPeerX509Certificate()?.subjectAltName;
      const session = h2connect(`https://${o.host}:${o.port}`, { createConnection: () => socket });
      session.on('error', (err) => {
        out.sessionError = codeOf(err);
        finish();
      });
      session.on('close', () => {
        out.sessionClosed = true;
        finish();
      });
      const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: h2.HTTP2_METHOD_CONNECT, [h2.HTTP2_HEADER_AUTHORITY]: o.authority });
      const body: Buffer[] = [];
      stream.on('response', (headers) => {
        out.status = headers[h2.HTTP2_HEADER_STATUS];
        if (out.status === 200) stream.end('GET / HTTP/1.0\r\n\r\n');
      });
      stream.on('data', (b: Buffer) => body.push(b));
      stream.on('error', (err) => {
        out.streamError = codeOf(err);
        finish();
      });
      stream.on('end', () => {
        out.body = Buffer.concat(body).toString();
        finish();
      });
    });
  });
}

/** Plain bytes to a TLS port: what comes back, and how the connection ended. */
function plainClient(o: { host: string; port: number; text: string; timeoutMs?: number }): Promise<void> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ending = 'timeout';
    const socket = netConnect({ host: o.host, port: o.port });
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      emit({ result: { ending, received: Buffer.concat(chunks).toString('latin1') } });
      resolve();
    };
    const timer = setTimeout(finish, o.timeoutMs ?? 8_000);
    socket.on('connect', () => socket.write(o.text));
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.on('end', () => {
      ending = 'end';
      finish();
    });
    socket.on('error', (err) => {
      ending = `error:${codeOf(err)}`;
      finish();
    });
  });
}

// ---- many held connections: a live re-check at scale ----

/** Echoes whatever each connection sends, for as many connections as come. */
function holdServer(o: { port: number }): void {
  const server = netServer((socket) => {
    socket.on('error', () => undefined);
    socket.on('data', (b: Buffer) => socket.write(b));
  });
  server.maxConnections = 50_000;
  server.listen({ port: o.port, host: '0.0.0.0', backlog: 4096 }, () => emit({ event: 'listening', port: o.port, pid: process.pid }));
  setTimeout(() => process.exit(0), 10 * 60_000).unref();
  process.on('SIGTERM', () => process.exit(0));
}

interface Held { socket: Socket; lastEchoAt: number; closedAt?: number; code?: string }

/**
 * Opens `connections` connections (`parallel` at a time), each answered once before it counts
 * as open; then every one sends 8 bytes every `pingMs` (staggered) and notes when its echo
 * comes, and when and how it ends (wall-clock ms, comparable with the agents' log times).
 * Reports when `stopFile` appears (or after `seconds`): per connection, closedAt and code, or
 * the time of its last echo.
 */
async function holdMany(o: { host: string; port: number; connections: number; parallel: number; pingMs: number; stopFile: string; seconds: number }): Promise<void> {
  const held: Held[] = [];
  let failed = 0;
  const failures: Record<string, number> = {};
  const ping = Buffer.from('ping\r\n\r\n');
  const openOne = (): Promise<void> => new Promise((resolve) => {
    const socket = netConnect({ host: o.host, port: o.port });
    let opened = false;
    const fail = (code: string): void => {
      if (opened) return;
      failed += 1;
      failures[code] = (failures[code] ?? 0) + 1;
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(() => fail('timeout'), 20_000);
    socket.once('connect', () => socket.write(ping));
    socket.on('error', (err) => fail(codeOf(err)));
    socket.once('close', () => fail('closed'));
    socket.once('data', () => {
      clearTimeout(timer);
      opened = true;
      const h: Held = { socket, lastEchoAt: Date.now() };
      held.push(h);
      socket.on('data', () => { h.lastEchoAt = Date.now(); });
      socket.on('error', (err) => { h.code ??= codeOf(err); });
      socket.on('close', () => {
        h.closedAt ??= Date.now();
        h.code ??= 'closed';
      });
      resolve();
    });
  });
  let next = 0;
  await Promise.all(Array.from({ length: o.parallel }, async () => {
    while (next < o.connections) {
      next += 1;
      await openOne();
    }
  }));
  emit({ event: 'open', opened: held.length, failed, failures });
  for (const h of held) {
    const tick = (): void => {
      if (h.closedAt === undefined && !h.socket.destroyed) h.socket.write(ping);
    };
    setTimeout(() => {
      tick();
      setInterval(tick, o.pingMs).unref();
    }, Math.random() * o.pingMs).unref();
  }
  const deadline = Date.now() + o.seconds * 1000;
  while (!existsSync(o.stopFile) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  const codes: Record<string, number> = {};
  for (const h of held) if (h.code !== undefined) codes[h.code] = (codes[h.code] ?? 0) + 1;
  const closedAt = held.flatMap((h) => (h.closedAt === undefined ? [] : [h.closedAt]));
  const lastEchoOfOpen = held.flatMap((h) => (h.closedAt === undefined ? [h.lastEchoAt] : []));
  emit({ result: { opened: held.length, failed, closed: closedAt.length, codes, closedAt, lastEchoOfOpen } });
  for (const h of held) h.socket.destroy();
  process.exit(0);
}

/** An impostor on a node's tunnel port: TLS 1.3 + h2 with the given certificate; reports what it got. */
function fakeAgent(o: { host: string; port: number; certPem: string; keyPem: string }): void {
  const server = tlsServer({ cert: o.certPem, key: o.keyPem, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false }, (socket) => {
    let appBytes = 0;
    const clientSan = socket.getPeerX509Certificate()?.subjectAltName;
    socket.on('data', (b: Buffer) => {
      appBytes += b.length;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => emit({ event: 'connection', servername: socket.servername, appBytes, clientSan }));
  });
  // A client that refuses this server mid-handshake shows up here, not as a connection.
  server.on('tlsClientError', (err, socket) => emit({ event: 'tlsClientError', code: codeOf(err), servername: socket.servername, appBytes: 0 }));
  server.listen(o.port, o.host, () => emit({ event: 'listening', port: o.port, pid: process.pid }));
  setTimeout(() => process.exit(0), 5 * 60_000).unref();
  process.on('SIGTERM', () => process.exit(0));
}

// ---- a noisy neighbour and a paced caller (fair sharing) ----

/**
 * One HTTP GET / on a fresh connection (Connection: close): resolves with an error code or
 * undefined (a non-200 answer is an error), and the answer's text. `hostHeader`: the Host sent.
 */
function getOnce(host: string, port: number, timeoutMs: number, hostHeader = host): Promise<{ error?: string; text: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const socket = netConnect({ host, port });
    const settle = (error: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString();
      resolve(error === undefined && !text.startsWith('HTTP/1.1 200') ? { error: `bad answer ${JSON.stringify(text.slice(0, 60))}`, text } : { ...(error === undefined ? {} : { error }), text });
    };
    const timer = setTimeout(() => settle('timeout'), timeoutMs);
    socket.on('connect', () => socket.write(`GET / HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.on('end', () => settle(undefined));
    socket.on('error', (err) => settle(`error:${codeOf(err)}`));
  });
}

/**
 * Alternating phases on the wall clock, shared by two processes: from `t0` on, even phases
 * of `phaseMs` are at rest, odd ones flooded.
 */
interface Phases {
  readonly t0: number;
  readonly phaseMs: number;
}

const phaseAt = (p: Phases, at: number): { flooded: boolean; into: number } => {
  const k = Math.floor((at - p.t0) / p.phaseMs);
  return { flooded: k >= 0 && k % 2 === 1, into: at - p.t0 - k * p.phaseMs };
};

/** Ms until the next flooded phase (0 while in one). */
const restLeft = (p: Phases): number => {
  const now = Date.now();
  const { flooded, into } = phaseAt(p, now);
  return flooded ? 0 : (now < p.t0 ? p.t0 - now : 0) + p.phaseMs - Math.max(0, into);
};

/**
 * As fast as it can (with `phases`: only in the flooded phases): `parallel` loops, each opening a connection, sending one GET and reading
 * the answer, then the next, until `count` requests were sent or `maxMs` passed (or the stop
 * file exists). Emits progress each second; the result counts answers and failures by kind.
 */
async function httpFlood(o: { target: string; parallel: number; count: number; maxMs: number; stopFile?: string; timeoutMs?: number; phases?: Phases }): Promise<void> {
  const started = Date.now();
  const [host, port] = o.target.split(':');
  let sent = 0;
  let ok = 0;
  const failures: Record<string, number> = {};
  const progress = setInterval(() => emit({ event: 'progress', sent, ok, ms: Date.now() - started }), 1000);
  emit({ event: 'started', pid: process.pid });
  const stopped = (): boolean => Date.now() - started >= o.maxMs || (o.stopFile !== undefined && existsSync(o.stopFile));
  let checks = 0;
  let stop = false;
  await Promise.all(Array.from({ length: o.parallel }, async () => {
    while (!stop && sent < o.count) {
      // existsSync is a syscall: look every 64 requests.
      if ((checks++ & 63) === 0 && stopped()) stop = true;
      if (stop) break;
      const rest = o.phases === undefined ? 0 : restLeft(o.phases);
      if (rest > 0) {
        await new Promise((r) => setTimeout(r, rest));
        continue;
      }
      sent++;
      const r = await getOnce(host ?? '', Number(port), o.timeoutMs ?? 10_000);
      if (r.error === undefined) ok++;
      else failures[r.error] = (failures[r.error] ?? 0) + 1;
    }
  }));
  clearInterval(progress);
  emit({ result: { sent, ok, failures, ms: Date.now() - started } });
}

/**
 * A fixed-rate caller: one GET on a fresh connection every 1/`rate` s for `durationMs`, each
 * sent at its own scheduled time whatever the earlier ones do (open loop), its latency taken
 * from that scheduled time to the end of the answer (so a late start counts too). With
 * `phases` (and `t0` as its start), each call is put with the phase it was scheduled in, and
 * those in the first `settleMs` of a phase are left out (the flood's start, or its tail
 * draining); percentiles in milliseconds, per phase kind.
 */
async function pacedCalls(o: { target: string; rate: number; durationMs: number; timeoutMs?: number; phases?: Phases; settleMs?: number; tailMs?: number }): Promise<void> {
  const [host, port] = o.target.split(':');
  const n = Math.floor((o.durationMs / 1000) * o.rate);
  // Without phases: a second for this process to settle after its start (module loading,
  // JIT), so the first calls measure the path, not the client's own start-up.
  const startWall = o.phases?.t0 ?? Date.now() + 1000;
  const start = performance.now() + (startWall - Date.now());
  const groups = new Map<string, { latencies: number[]; timeline: [number, number][]; failures: Record<string, number>; sent: number }>();
  const group = (name: string): NonNullable<ReturnType<typeof groups.get>> => {
    let g = groups.get(name);
    if (g === undefined) {
      g = { latencies: [], timeline: [], failures: {}, sent: 0 };
      groups.set(name, g);
    }
    return g;
  };
  const calls: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const at = start + (i * 1000) / o.rate;
    const wait = at - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const offset = (i * 1000) / o.rate;
    let name = 'all';
    if (o.phases !== undefined) {
      const ph = phaseAt(o.phases, startWall + offset);
      const edge = ph.into < (o.settleMs ?? 0) || ph.into >= o.phases.phaseMs - (o.tailMs ?? 0);
      name = edge ? 'settling' : ph.flooded ? 'flooded' : 'rest';
    }
    const g = group(name);
    g.sent += 1;
    calls.push(getOnce(host ?? '', Number(port), o.timeoutMs ?? 10_000).then((r) => {
      if (r.error === undefined) {
        g.latencies.push(performance.now() - at);
        g.timeline.push([Math.round(offset), performance.now() - at]);
      } else {
        g.failures[r.error] = (g.failures[r.error] ?? 0) + 1;
      }
    }));
  }
  await Promise.all(calls);
  const round = (x: number): number => Math.round(x * 100) / 100;
  const out: Record<string, unknown> = {};
  for (const [name, g] of groups) {
    const l = g.latencies.sort((a, b) => a - b);
    const q = (p: number): number => l[Math.min(l.length - 1, Math.max(0, Math.ceil(p * l.length) - 1))] ?? Number.NaN;
    // The ten slowest, [ms into the run, latency], to see whether they come together.
    const slowest = g.timeline.sort((a, b) => b[1] - a[1]).slice(0, 10).map(([t, x]) => [t, round(x)]);
    out[name] = { sent: g.sent, ok: l.length, failures: g.failures, p50: round(q(0.5)), p90: round(q(0.9)), p99: round(q(0.99)), max: round(q(1)), slowest };
  }
  emit({ result: o.phases === undefined ? out.all : out });
}

const [mode, json] = process.argv.slice(2);
const args: unknown = JSON.parse(json ?? '{}');
const modes: Record<string, () => void | Promise<void>> = {
  'halfclose-server': () => halfCloseServer(args as never),
  halfclose: () => halfCloseClient(args as never),
  'paced-downloads': () => pacedDownloads(args as never),
  'slow-server': () => slowServer(args as never),
  'connection-loop': () => connectionLoop(args as never),
  'idle-flood': () => idleFlood(args as never),
  'tunnel-client': () => tunnelClient(args as never),
  'plain-client': () => plainClient(args as never),
  'fake-agent': () => fakeAgent(args as never),
  'hold-server': () => holdServer(args as never),
  'hold-many': () => holdMany(args as never),
  'http-flood': () => httpFlood(args as never),
  'paced-calls': () => pacedCalls(args as never),
};
const run = mode === undefined ? undefined : modes[mode];
if (run === undefined) {
  process.stderr.write(`usage: mesh-clients.ts (${Object.keys(modes).join('|')}) JSON\n`);
  process.exit(2);
}
await run();
