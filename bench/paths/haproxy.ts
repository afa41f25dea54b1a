// The HAProxy path: starts one HAProxy per node (configs in haproxy-config.ts) with a
// throwaway ECDSA P-256 CA and node certificates, pinned to the proxy CPU.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../src/core/exec.ts';
import { startDetached } from '../../src/sim/processes.ts';
import type { BenchCluster } from '../cluster.ts';
import type { StartedProcesses } from '../pids.ts';
import { waitListening } from '../servers.ts';
import { RELAY_PORT, node1Config, node2Config, type TlsFiles } from './haproxy-config.ts';
import type { BenchPath } from './types.ts';
import { SERVICE_KINDS } from '../cluster.ts';

export interface HaproxyPathSetup {
  readonly cluster: BenchCluster;
  readonly workDir: string;
  readonly cpus: string;
  readonly started: StartedProcesses;
  /** Most connections one HAProxy may hold (bounded by the fd limit). */
  readonly maxconn: number;
}

async function makeTls(dir: string): Promise<TlsFiles> {
  mkdirSync(dir, { recursive: true });
  const f = (n: string) => join(dir, n);
  const ssl = (args: string[]) => run('openssl', args, { code: 'WEFT_BENCH_OPENSSL' });
  await ssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ca.key')]);
  await ssl(['req', '-x509', '-new', '-key', f('ca.key'), '-subj', '/CN=weft-bench-ca', '-days', '2', '-out', f('ca.pem')]);
  for (const node of ['node-1', 'node-2']) {
    await ssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f(`${node}.key`)]);
    await ssl(['req', '-new', '-key', f(`${node}.key`), '-subj', `/CN=${node}`, '-out', f(`${node}.csr`)]);
    await ssl(['x509', '-req', '-in', f(`${node}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-out', f(`${node}.crt`)]);
    const { stdout: crt } = await run('cat', [f(`${node}.crt`), f(`${node}.key`)]);
    writeFileSync(f(`${node}.pem`), crt);
  }
  return { caFile: f('ca.pem'), node1Pem: f('node-1.pem'), node2Pem: f('node-2.pem') };
}

export async function startHaproxyPath(s: HaproxyPathSetup): Promise<BenchPath> {
  const { cluster } = s;
  const dir = join(s.workDir, 'haproxy');
  const tls = await makeTls(join(dir, 'tls'));
  const node1 = cluster.node(cluster.plain.client.node);
  const node2 = cluster.node(cluster.plain.server['cross-node'].node);
  const addrs = {
    node1Listen: node1.bridgeIp, node2Underlay: node2.ip,
    sameNodeServer: cluster.plain.server['same-node'].ip, crossNodeServer: cluster.plain.server['cross-node'].ip,
  };
  const configs = [
    { node: node1.name, cfg: join(dir, 'node-1.cfg'), text: node1Config(addrs, tls, s.maxconn), ports: SERVICE_KINDS.flatMap((k) => [RELAY_PORT.sameNode(k), RELAY_PORT.crossOut(k)]) },
    { node: node2.name, cfg: join(dir, 'node-2.cfg'), text: node2Config(addrs, tls, s.maxconn), ports: SERVICE_KINDS.map((k) => RELAY_PORT.crossIn(k)) },
  ];
  const pids: Record<string, number> = {};
  for (const c of configs) {
    writeFileSync(c.cfg, c.text);
    await run('haproxy', ['-c', '-q', '-f', c.cfg], { code: 'WEFT_BENCH_HAPROXY_CONFIG' });
    const where = cluster.nodeRole(c.node, 'bench-haproxy');
    pids[c.node] = s.started.add(startDetached(where, ['taskset', '-c', s.cpus, 'haproxy', '-db', '-f', c.cfg], { PATH: process.env.PATH }, join(dir, `${c.node}.log`)));
    await waitListening(where, c.ports, `HAProxy in ${c.node} (log: ${join(dir, `${c.node}.log`)})`);
  }
  const p1 = pids[node1.name] ?? 0;
  const p2 = pids[node2.name] ?? 0;
  let closed = false;
  return {
    name: 'haproxy',
    unavailable: undefined,
    route: (variant) => ({
      client: cluster.pod(cluster.plain.client),
      server: cluster.pod(cluster.plain.server[variant]),
      target: (service) => ({
        host: node1.bridgeIp,
        port: variant === 'same-node' ? RELAY_PORT.sameNode(service) : RELAY_PORT.crossOut(service),
      }),
      proxyPids: () => (variant === 'same-node' ? [p1] : [p1, p2]),
      proxyCount: variant === 'same-node' ? 1 : 2,
    }),
    close: async () => {
      if (closed) return;
      closed = true;
      await s.started.stop([p1, p2]);
    },
  };
}
