// A listener out of file descriptors (issue 16, point 3), in a child process started with
// RLIMIT_NOFILE 64 (only that process is limited) and flooded with three times that many
// connections: it keeps running, and accepts again once descriptors are free. libuv absorbs
// EMFILE on accept itself (it frees a reserved descriptor, accepts and closes what is queued),
// so no error reaches Node then; what it does report (ENOBUFS, ENOMEM, an EMFILE it could not
// absorb) is counted in weft_proxy_accept_failures_total instead of throwing out of the
// listener, and the agent's descriptor budget (fd-budget.ts) keeps connections from getting
// there. The descriptors in use and the limit are weft_agent_process_open_fds / _max_fds.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';

const SRC = join(import.meta.dirname, '..', '..', '..', 'src');

const CHILD = `
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { InboundPlain } from ${JSON.stringify(join(SRC, 'proxy', 'inbound-plain.ts'))};
import { OverloadTelemetry } from ${JSON.stringify(join(SRC, 'telemetry', 'overload-telemetry.ts'))};
const registry = new Registry();
const overload = new OverloadTelemetry({ registry, logger: pino({ level: 'warn' }, pino.destination(2)), logIntervalMs: 60_000 });
let served = 0;
const plain = new InboundPlain({
  // Each connection holds its descriptor for 300 ms, then is refused (no route).
  originalDestination: () => { served += 1; return new Promise((r) => setTimeout(() => r(undefined), 300)); },
  mesh: { workloadByIp: () => undefined }, authorize: () => ({ allowed: true, reason: '' }), overload,
}, { nodeName: 'n', host: '127.0.0.1', port: 0, reusePort: false });
const address = await plain.listen();
const report = async () => {
  const text = await registry.metrics();
  const failures = [...text.matchAll(/^weft_proxy_accept_failures_total\\{listener="inbound-plain",code="(\\w+)"\\} (\\d+)/gm)].map((m) => [m[1], Number(m[2])]);
  console.log(JSON.stringify({ port: address.port, served, failures }));
};
setInterval(report, 100);
await report();
setTimeout(() => process.exit(0), 30_000).unref();
`;

test('a listener flooded past its descriptors keeps running and accepts again afterwards; nothing is logged per refused connection', async (t) => {
  const child = spawn('sh', ['-c', 'ulimit -n 64 && exec "$0" --input-type=module -e "$1"', process.execPath, CHILD], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const reports: { port: number; served: number; failures: [string, number][] }[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => reports.push(JSON.parse(l) as (typeof reports)[number]));
  const until = async (pred: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 100 && !pred(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(pred(), `${what}; child stderr: ${stderr}`);
  };
  await until(() => reports.length > 0, 'the child listens');
  const port = reports[0]?.port ?? 0;
  // Three times the child's descriptors at once.
  const clients: Socket[] = Array.from({ length: 200 }, () => {
    const s = connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.resume();
    return s;
  });
  // The ones beyond the descriptors are closed at once by libuv; the others are served.
  await until(() => clients.filter((c) => c.destroyed).length === clients.length, 'every flood connection ended');
  const flooded = reports.at(-1);
  assert.ok(flooded !== undefined && flooded.served > 0 && flooded.served < clients.length, `served ${flooded?.served} of ${clients.length}`);
  const servedBefore = reports.at(-1)?.served ?? 0;
  await new Promise((r) => setTimeout(r, 700));
  // Descriptors are free again: a new connection is served.
  const late = connect({ host: '127.0.0.1', port });
  late.on('error', () => undefined);
  late.resume();
  await until(() => (reports.at(-1)?.served ?? 0) > servedBefore, 'a connection served after the flood');
  late.destroy();
  assert.equal(child.exitCode, null, 'the listener process is still running');
  // Whatever accept errors were reported are counted, and logged at most once per interval.
  const counted = (reports.at(-1)?.failures ?? []).reduce((a, [, n]) => a + n, 0);
  const warnings = stderr.split('\n').filter((l) => l.includes('accept failed on a listening socket'));
  assert.ok(warnings.length <= (counted > 0 ? 1 : 0), `at most one warning per interval (${counted} counted): ${stderr.slice(0, 2000)}`);
});
