// One bulk upload over a socket that is connecting: write `bytes` (256 KiB pieces, honouring
// backpressure), half-close, and resolve on the other end's FIN (whatever it answered is
// discarded). Shared by the loopback benchmarks (bench/proxy-cost.ts,
// test/unit/proxy/tunnel-bench.ts).

import type { Socket } from 'node:net';

const CHUNK = Buffer.alloc(256 * 1024, 0x5a);

export function uploadThrough(s: Socket, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    s.on('error', reject);
    s.on('data', () => undefined);
    s.on('end', () => {
      s.end();
      resolve();
    });
    const pump = (): void => {
      while (sent < bytes) {
        const piece = CHUNK.subarray(0, Math.min(CHUNK.length, bytes - sent));
        sent += piece.length;
        if (!s.write(piece)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    s.once('connect', pump);
  });
}
