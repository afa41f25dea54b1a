// The stand-in agent of the capture tests (not a test file): run by redirect-support.ts
// inside the node netns and the agent cgroup. It listens on the outbound capture port,
// reads each connection's original destination, reports it on stdout and relays to it
// (service VIPs mapped to a pod, as the real agent's load balancer would). Inbound
// connections (on the inbound port in iptables mode, on the sockets the redirector opens in
// pods' namespaces in eBPF mode) are reported as 'inbound' and relayed the same way. It
// drives a real redirector, following JSON-line commands on stdin.

import { connect, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { createRedirector, originalDestination, reclaimNode, type RedirectMode, type RedirectorOptions } from '../../src/redirect/index.ts';
import { describeError } from '../../src/core/errors.ts';

interface Config {
  readonly role: 'agent' | 'reclaim';
  readonly mode: RedirectMode;
  readonly options: RedirectorOptions;
  readonly vips: Readonly<Record<string, { address: string; port: number }>>;
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config;
const say = (msg: object): void => void process.stdout.write(`${JSON.stringify(msg)}\n`);
const log = {
  info: (fields: object, msg: string) => say({ event: 'log', level: 'info', msg, fields }),
  warn: (fields: object, msg: string) => say({ event: 'log', level: 'warn', msg, fields }),
};

function relay(client: Socket, event = 'captured'): void {
  let original;
  try {
    original = originalDestination(client);
  } catch (err: unknown) {
    say({ event: 'capture-error', client: client.remoteAddress, error: describeError(err) });
    client.destroy();
    return;
  }
  say({ event, client: client.remoteAddress, original });
  const to = config.vips[`${original.address}:${original.port}`] ?? original;
  const upstream = connect(to.port, to.address);
  client.pipe(upstream).pipe(client);
  const done = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', done).on('close', done);
  upstream.on('error', done).on('close', done);
}

async function main(): Promise<void> {
  if (config.role === 'reclaim') {
    await reclaimNode(config.options.node, { log }, config.options.nodeCgroupRoot);
    say({ event: 'ready' });
    return;
  }
  const server = createServer((c) => relay(c));
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(config.options.outboundPort, config.options.agentAddress, resolve));
  const inboundRelay = (c: Socket): void => relay(c, 'inbound');
  const inboundPort = createServer(inboundRelay);
  await new Promise<void>((resolve, reject) => inboundPort.once('error', reject).listen(config.options.inboundPort ?? 15006, '0.0.0.0', resolve));
  const podServers = new Map<string, ReturnType<typeof createServer>>();
  const redirector = createRedirector(config.mode, config.options, { log });
  const t0 = performance.now();
  await redirector.start();
  say({ event: 'ready', enrolled: redirector.enrolled(), ms: Math.round(performance.now() - t0) });

  const ops: Record<string, (cmd: Record<string, unknown>) => Promise<unknown>> = {
    enroll: async (cmd) => redirector.enroll(cmd.pod as Parameters<typeof redirector.enroll>[0]),
    unenroll: async (cmd) => {
      await redirector.unenroll(String(cmd.podId));
      podServers.get(String(cmd.podId))?.close();
      podServers.delete(String(cmd.podId));
    },
    // eBPF mode: accept the pod's inbound connections on the socket opened in its namespace.
    inbound: async (cmd) => {
      const fd = await redirector.openInboundSocket(String(cmd.podId), 0);
      if (fd === undefined) return 'none';
      const s = createServer(inboundRelay);
      await new Promise<void>((resolve, reject) => s.once('error', reject).listen({ fd }, resolve));
      podServers.set(String(cmd.podId), s);
      return 'listening';
    },
    enrolled: () => Promise.resolve(redirector.enrolled()),
    close: async (cmd) => {
      await redirector.close({ keepCapture: cmd.keepCapture === true });
      server.close();
      inboundPort.close();
      for (const s of podServers.values()) s.close();
    },
    // The agent's own outbound connection: must reach the destination directly.
    dial: (cmd) => new Promise((resolve, reject) => {
      const s = connect(Number(cmd.port), String(cmd.address), () => s.end(`GET / HTTP/1.0\r\n\r\n`));
      let body = '';
      s.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve(body.slice(body.indexOf('\r\n\r\n') + 4))).on('error', reject);
    }),
  };
  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as Record<string, unknown>;
    const op = ops[String(cmd.op)];
    try {
      if (op === undefined) throw new Error(`unknown op ${String(cmd.op)}`);
      const t1 = performance.now();
      const result = await op(cmd);
      say({ reply: cmd.id, op: cmd.op, ok: true, result, ms: Math.round(performance.now() - t1) });
    } catch (err: unknown) {
      say({ reply: cmd.id, ok: false, error: describeError(err) });
    }
  }
}

main().catch((err: unknown) => {
  say({ event: 'fatal', error: describeError(err) });
  process.exitCode = 1;
});
