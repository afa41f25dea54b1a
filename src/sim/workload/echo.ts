// The sample workload every simulated pod runs: an HTTP server on $PORT (8080) that
//   GET /          -> "hello from <pod> ns=<namespace> node=<node> client=<ip:port>\n"
//   GET /bytes/N   -> N bytes (for transfers and benchmarks)
//   POST|PUT /     -> the request body, streamed back (for copy-correctness checks)
// A request with an `x-weft-echo` header also gets the request as the pod saw it, for route
// tests: `x-weft-path` (the request target) and `x-weft-request-headers` (its headers, JSON).
//   GET /weft/seen -> the last 200 requests it answered, oldest first, as JSON lines of
//                     {method, path, host, bytes} (bytes: the request body's length), so a test
//                     sees what reached a pod whose answers nobody reads (a request mirror)
// It touches $WEFT_READY_FILE once listening, so the simulator knows it is up.

import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';

const pod = process.env.WEFT_POD ?? 'unknown';
const namespace = process.env.WEFT_NAMESPACE ?? 'unknown';
const node = process.env.WEFT_NODE ?? 'unknown';
const port = Number(process.env.PORT ?? 8080);
const MAX_BYTES = 1 << 30;
const chunk = Buffer.alloc(64 * 1024, 'x');
const SEEN_MAX = 200;

interface Seen { method: string; path: string; host: string; bytes: number }
const seen: Seen[] = [];

const server = createServer((req, res) => {
  res.setHeader('x-weft-pod', pod);
  if (req.method === 'GET' && req.url === '/weft/seen') {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.end(seen.map((s) => `${JSON.stringify(s)}\n`).join(''));
    return;
  }
  const entry: Seen = { method: req.method ?? '', path: req.url ?? '', host: req.headers.host ?? '', bytes: 0 };
  req.on('data', (d: Buffer) => { entry.bytes += d.length; });
  req.on('end', () => {
    seen.push(entry);
    if (seen.length > SEEN_MAX) seen.shift();
  });
  if (req.headers['x-weft-echo'] !== undefined) {
    res.setHeader('x-weft-path', req.url ?? '');
    res.setHeader('x-weft-request-headers', JSON.stringify(req.headers));
  }
  if (req.method === 'POST' || req.method === 'PUT') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    req.pipe(res);
    return;
  }
  const bytes = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
  if (bytes !== null) {
    let left = Math.min(Number(bytes[1]), MAX_BYTES);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(left) });
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`hello from ${pod} ns=${namespace} node=${node} client=${req.socket.remoteAddress}:${req.socket.remotePort}\n`);
});
server.keepAliveTimeout = 60_000;
server.listen(port, '0.0.0.0', () => {
  const ready = process.env.WEFT_READY_FILE;
  if (ready !== undefined) writeFileSync(ready, String(process.pid));
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
