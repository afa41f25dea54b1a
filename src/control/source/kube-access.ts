// How the control plane reaches the Kubernetes API: the server URL and, per request, the TLS
// and auth options, from a kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) or the
// pod's service account (in-cluster). Read here rather than through @kubernetes/client-node's
// KubeConfig, whose import alone loads the whole generated API (~45 MB of the control plane's
// RSS). Tokens, token files (re-read, as projected tokens rotate), client certificates and
// CAs (inline or files) are handled here; a user with an exec plugin or an auth provider, or
// a cluster behind a proxy, is handed to client-node's KubeConfig, loaded only then.

import { readFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { parse } from 'yaml';
import { isRecord } from '../../model/fields.ts';
import { sourceError, SourceErrors } from './errors.ts';

export const IN_CLUSTER_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeAccess {
  /** The API server's base URL, without a trailing slash. */
  readonly server: string;
  /** TLS, agent and auth headers for one request (a token file is read again each time). */
  requestOptions(): Promise<https.RequestOptions>;
}

/** What a kubeconfig's current context says, files already read. */
export interface KubeEndpoint {
  readonly server: string;
  readonly caPem?: string | undefined;
  readonly insecureSkipTlsVerify?: boolean | undefined;
  readonly tlsServerName?: string | undefined;
  readonly token?: string | undefined;
  readonly tokenFile?: string | undefined;
  readonly certPem?: string | undefined;
  readonly keyPem?: string | undefined;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
}

/** Access with the given endpoint; one keep-alive agent for every request. */
export function kubeAccess(e: KubeEndpoint): KubeAccess {
  const server = e.server.replace(/\/+$/, '');
  const tls = server.startsWith('https:');
  const agent = tls
    ? new https.Agent({
      keepAlive: true, ca: e.caPem, cert: e.certPem, key: e.keyPem, rejectUnauthorized: e.insecureSkipTlsVerify !== true,
      ...(e.tlsServerName === undefined ? {} : { servername: e.tlsServerName }),
    })
    : new http.Agent({ keepAlive: true });
  return {
    server,
    requestOptions: () => {
      const headers: Record<string, string> = {};
      const token = e.tokenFile !== undefined ? readFileSync(e.tokenFile, 'utf8').trim() : e.token;
      if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`;
      else if (e.username !== undefined) headers.authorization = `Basic ${Buffer.from(`${e.username}:${e.password ?? ''}`).toString('base64')}`;
      return Promise.resolve({ agent, headers });
    },
  };
}

/** The pod's own service account, as every in-cluster client reads it. */
export function inClusterAccess(dir = IN_CLUSTER_DIR, env: NodeJS.ProcessEnv = process.env): KubeAccess {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (host === undefined || host === '') throw sourceError(SourceErrors.NO_CLUSTER, 'not in a cluster: KUBERNETES_SERVICE_HOST is not set');
  const tokenFile = join(dir, 'token');
  if (!existsSync(tokenFile)) throw sourceError(SourceErrors.NO_CLUSTER, `not in a cluster: ${tokenFile} does not exist`);
  return kubeAccess({ server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`, caPem: readFileSync(join(dir, 'ca.crt'), 'utf8'), tokenFile });
}

type Entry = Record<string, unknown>;

function named(doc: Entry, list: string, item: string, name: unknown, file: string): Entry {
  const entries = Array.isArray(doc[list]) ? (doc[list] as unknown[]) : [];
  const found = entries.find((x) => isRecord(x) && x.name === name);
  if (!isRecord(found) || !isRecord(found[item])) throw sourceError(SourceErrors.BAD_KUBECONFIG, `${file}: no ${item} named ${JSON.stringify(name)} in ${list}`);
  return found[item];
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** `<field>-data` (base64) or `<field>` (a file, relative to the kubeconfig's directory). */
function material(from: Entry, field: string, base: string): string | undefined {
  const data = str(from[`${field}-data`]);
  if (data !== undefined) return Buffer.from(data, 'base64').toString('utf8');
  const file = str(from[field]);
  return file === undefined ? undefined : readFileSync(isAbsolute(file) ? file : join(base, file), 'utf8');
}

/** Access by the current context of a kubeconfig file. */
export async function kubeconfigAccess(file: string): Promise<KubeAccess> {
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err: unknown) {
    throw sourceError(SourceErrors.BAD_KUBECONFIG, `${file}: cannot read it as a kubeconfig`, err);
  }
  if (!isRecord(doc)) throw sourceError(SourceErrors.BAD_KUBECONFIG, `${file}: not a kubeconfig (no mapping at the top)`);
  const contextName = doc['current-context'];
  if (str(contextName) === undefined) throw sourceError(SourceErrors.NO_CLUSTER, `${file}: the kubeconfig has no current-context`);
  const context = named(doc, 'contexts', 'context', contextName, file);
  const cluster = named(doc, 'clusters', 'cluster', context.cluster, file);
  const server = str(cluster.server);
  if (server === undefined) throw sourceError(SourceErrors.NO_CLUSTER, `${file}: cluster ${JSON.stringify(context.cluster)} has no server`);
  const user = context.user === undefined ? {} : named(doc, 'users', 'user', context.user, file);
  if (user.exec !== undefined || user['auth-provider'] !== undefined || cluster['proxy-url'] !== undefined) return clientNodeAccess(file, server);
  const base = dirname(file);
  const tokenFile = str(user.tokenFile) ?? str(user['token-file']);
  return kubeAccess({
    server, caPem: material(cluster, 'certificate-authority', base), insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    tlsServerName: str(cluster['tls-server-name']), token: str(user.token),
    tokenFile: tokenFile === undefined ? undefined : isAbsolute(tokenFile) ? tokenFile : join(base, tokenFile),
    certPem: material(user, 'client-certificate', base), keyPem: material(user, 'client-key', base),
    username: str(user.username), password: str(user.password),
  });
}

/** Auth this module does not do itself (exec plugins, auth providers, proxies): client-node's KubeConfig. */
async function clientNodeAccess(file: string | undefined, server?: string): Promise<KubeAccess> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (file === undefined) kc.loadFromDefault();
  else kc.loadFromFile(file);
  const url = server ?? kc.getCurrentCluster()?.server;
  if (url === undefined) throw sourceError(SourceErrors.NO_CLUSTER, 'the kubeconfig has no current cluster');
  return {
    server: url.replace(/\/+$/, ''),
    requestOptions: async () => {
      const opts: https.RequestOptions = {};
      await kc.applyToHTTPSOptions(opts);
      return opts;
    },
  };
}

/** As kubectl finds it: $KUBECONFIG (several files merged by client-node), else ~/.kube/config, else the pod's service account. */
export async function defaultKubeAccess(env: NodeJS.ProcessEnv = process.env): Promise<KubeAccess> {
  const listed = (env.KUBECONFIG ?? '').split(':').filter((f) => f !== '' && existsSync(f));
  if (listed.length > 1) return clientNodeAccess(undefined);
  const home = join(homedir(), '.kube', 'config');
  const file = listed[0] ?? (existsSync(home) ? home : undefined);
  if (file !== undefined) return kubeconfigAccess(file);
  return inClusterAccess(IN_CLUSTER_DIR, env);
}
