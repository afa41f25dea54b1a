// The simulated cluster's API server as a process (`weft sim up --install` starts it in the
// underlay namespace): HTTPS on the address pods reach it at, RBAC from the installed Roles,
// and a Unix socket in the cluster's directory where the simulator (playing kubelet and the
// controllers) talks to it as administrator. Objects to start with come from a JSON file.
//
//   node main.ts CONFIG.json     (see KubeApiProcessConfig)

import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { KubeApiServer } from './server.ts';

export interface KubeApiProcessConfig {
  /** `host:port` to serve HTTPS on (inside the underlay namespace). */
  readonly listen: { readonly host: string; readonly port: number };
  readonly tls: { readonly keyFile: string; readonly certFile: string };
  /** The administrator's Unix socket (plain HTTP; the file's mode guards it). */
  readonly socketPath: string;
  /** A JSON array of objects applied in order at start (CustomResourceDefinitions first). */
  readonly objectsFile: string;
  /** Written once both listeners are up. */
  readonly readyFile: string;
}

/** Kinds a cluster running Gateway API routes has (their CRDs are not weft's to install). */
const GATEWAY_KINDS = [
  { path: '/apis/gateway.networking.k8s.io/v1/httproutes', kind: 'HTTPRoute', apiVersion: 'gateway.networking.k8s.io/v1' },
  { path: '/apis/gateway.networking.k8s.io/v1/grpcroutes', kind: 'GRPCRoute', apiVersion: 'gateway.networking.k8s.io/v1' },
] as const;

async function main(configFile: string): Promise<void> {
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as KubeApiProcessConfig;
  const server = new KubeApiServer([...GATEWAY_KINDS], { rbac: true }).serveBuiltins();
  const objects = JSON.parse(readFileSync(config.objectsFile, 'utf8')) as Record<string, unknown>[];
  for (const o of objects) server.apply(o);
  rmSync(config.socketPath, { force: true });
  await server.listen({ socketPath: config.socketPath });
  await server.listen({ host: config.listen.host, port: config.listen.port, tls: { keyPem: readFileSync(config.tls.keyFile, 'utf8'), certPem: readFileSync(config.tls.certFile, 'utf8') } });
  writeFileSync(config.readyFile, `${process.pid}\n`);
  const stop = (): void => void server.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write('usage: node main.ts CONFIG.json\n');
  process.exit(2);
}
main(file).catch((err: unknown) => {
  process.stderr.write(`kube-api: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
