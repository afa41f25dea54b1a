// The control plane's configuration: read once from flags (and POD_NAMESPACE, which a
// Deployment passes through the downward API), validated, frozen. The one place `weft
// control` reads flags; the refusals name the flag and the value, as the agent's do.

import { DEFAULT_QUIET_MS } from '../control/source/directory.ts';
import { DEFAULT_REMOVAL_GUARD } from '../control/source/removal-guard.ts';
import { DEFAULT_TRUST_DOMAIN, ROOT_NAMESPACE } from '../model/types.ts';
import {
  badFlag, bindAddress, bool, hostPort, int, list, logLevel, matching, OBJECT_NAME, parseFlagArgs, str, trustDomain, usageError,
  type BindAddress, type FlagTable, type FlagValues,
} from './flags.ts';

/** The audience agents' projected tokens are minted for, and the one TokenReview asks about. */
export const DEFAULT_TOKEN_AUDIENCE = 'weft-control';
const DEFAULT_MANIFEST_QUIET_MS = DEFAULT_QUIET_MS;
const DEFAULT_REMOVAL_GRACE_MS = DEFAULT_REMOVAL_GUARD.graceMs;
/** Where the dashboard listens unless told otherwise: loopback only. */
export const DEFAULT_DASHBOARD = '127.0.0.1:15080';
/** The admin endpoint (revocation): loopback only unless told otherwise. */
export const DEFAULT_ADMIN = '127.0.0.1:15015';
export const ADMIN_TOKEN_FILE = 'admin.token';
/** Workload certificate lifetimes accepted: a minute (tests, drills) to 90 days. */
export const MIN_WORKLOAD_CERT_TTL_S = 60;
export const MAX_WORKLOAD_CERT_TTL_S = 90 * 24 * 3600;

export interface ControlPlaneConfig {
  /** `host:port` for gRPC (15010). */
  readonly listen: string;
  /** Metrics and readiness (15014). */
  readonly metrics: BindAddress;
  /** The dashboard's address (15080, loopback by default); undefined with `--dashboard off`. */
  readonly dashboard?: BindAddress | undefined;
  /**
   * The admin endpoint (15015, loopback by default: `weft control revoke`) and the file of its
   * bearer token (made, mode 0600, when missing); undefined with `--admin off`, or with a CA
   * Secret and no --admin-token-file.
   */
  readonly admin?: { readonly address: BindAddress; readonly tokenFile: string } | undefined;
  /** The dashboard reads traffic rates from this Prometheus (else from the agents directly). */
  readonly prometheusUrl?: string | undefined;
  readonly source:
    | {
      readonly kind: 'manifests'; readonly dir: string;
      /** A changed file is read once quiet this long (`--manifest-quiet-ms`). */
      readonly quietMs?: number;
      /** A mass removal is held back this long (`--removal-grace-ms`). */
      readonly removalGraceMs?: number;
    }
    | { readonly kind: 'kubernetes'; readonly kubeconfig: string | undefined };
  /** A directory for the CA's key, certificate and revocations (`--ca-dir`)... */
  readonly caDir: string | undefined;
  /** ...or a Kubernetes Secret every replica shares (`--ca-secret`). Exactly one is set. */
  readonly caSecret?: { readonly namespace: string; readonly name: string } | undefined;
  /** Bootstrap tokens (JSON token -> node); without them, agents' tokens are checked by TokenReview. */
  readonly tokensFile: string | undefined;
  /** The audience TokenReview checks agents' tokens for. */
  readonly tokenAudience?: string;
  /** Publish the trust bundle as this ConfigMap (key `root-cert.pem`) in every namespace. */
  readonly trustBundleConfigMap?: string | undefined;
  readonly trustDomain: string;
  /** Lifetime of the workload certificates the CA signs (`--workload-cert-ttl`, seconds; default 24 h). Agents renew at half of it. */
  readonly workloadCertTtlMs?: number;
  /** Extra DNS names for the server certificate (agents check its SPIFFE id, not these). */
  readonly serverDnsNames: readonly string[];
  /** Written once the server listens and the first snapshot is loaded. */
  readonly readyFile: string | undefined;
  readonly logLevel: string;
}

export const CONTROL_USAGE = `weft control (--manifests DIR | --kubernetes [--kubeconfig FILE]) (--ca-dir DIR | --ca-secret [NS/]NAME)
              [--tokens FILE | --token-audience AUD] [--trust-bundle-configmap NAME]
              [--listen HOST:PORT] [--metrics [HOST:]PORT] [--dashboard [HOST:]PORT|off] [--prometheus URL] [--trust-domain TD]
              [--server-dns NAME,..] [--ready-file FILE] [--log-level L]
              [--manifest-quiet-ms MS] [--removal-grace-ms MS] [--admin [HOST:]PORT|off] [--admin-token-file FILE]
              [--workload-cert-ttl SECONDS]
  --listen        gRPC for agents (default 0.0.0.0:15010)
  --metrics       Prometheus metrics and /healthz/ready (default 0.0.0.0:15014)
  --dashboard     the dashboard (default ${DEFAULT_DASHBOARD}; off: none)
  --admin         the admin endpoint, for weft control revoke (default ${DEFAULT_ADMIN}; off: none)
  --admin-token-file  its bearer token, made when missing (default: ${ADMIN_TOKEN_FILE} in --ca-dir)
  --prometheus    the dashboard reads traffic rates from this Prometheus (else from the agents)
  --ca-dir        the mesh CA (ca.key, ca.crt, revoked.json); made on first start
  --ca-secret     the mesh CA in a Secret (namespace: POD_NAMESPACE, else ${ROOT_NAMESPACE}); made on first
                  start by whichever replica gets there first, then shared by every replica
  --tokens        bootstrap tokens, a JSON object token -> node name (weft sim's static mode)
  --token-audience  without --tokens, agents' projected tokens are checked with TokenReview for this
                  audience (default ${DEFAULT_TOKEN_AUDIENCE}; needs --kubernetes)
  --trust-bundle-configmap  publish the CA certificate in this ConfigMap in every namespace (needs --kubernetes)
  --manifest-quiet-ms  a changed manifest file is read once it has been quiet this long (default ${DEFAULT_MANIFEST_QUIET_MS})
  --removal-grace-ms   a reload that empties a file, or removes over half the objects, waits this long (default ${DEFAULT_REMOVAL_GRACE_MS})
  --workload-cert-ttl  lifetime of workload certificates in seconds, ${MIN_WORKLOAD_CERT_TTL_S} to ${MAX_WORKLOAD_CERT_TTL_S} (default 86400); agents renew at half-life`;

export const CONTROL_FLAGS: FlagTable = Object.freeze({
  listen: { type: 'string' }, metrics: { type: 'string' }, dashboard: { type: 'string' }, prometheus: { type: 'string' }, manifests: { type: 'string' },
  kubernetes: { type: 'boolean' }, kubeconfig: { type: 'string' }, 'ca-dir': { type: 'string' }, 'ca-secret': { type: 'string' },
  tokens: { type: 'string' }, 'token-audience': { type: 'string' }, 'trust-bundle-configmap': { type: 'string' },
  'trust-domain': { type: 'string' }, 'server-dns': { type: 'string' }, 'ready-file': { type: 'string' }, 'log-level': { type: 'string' },
  'manifest-quiet-ms': { type: 'string' }, 'removal-grace-ms': { type: 'string' },
  admin: { type: 'string' }, 'admin-token-file': { type: 'string' }, 'workload-cert-ttl': { type: 'string' },
});

/** `weft control` argv -> frozen config. */
export function controlConfigFromArgv(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ControlPlaneConfig {
  return controlConfig(parseFlagArgs(argv, CONTROL_FLAGS, CONTROL_USAGE), env);
}

export function controlConfig(flags: FlagValues, env: NodeJS.ProcessEnv = {}): ControlPlaneConfig {
  const manifests = str(flags, 'manifests');
  const kubernetes = bool(flags, 'kubernetes');
  if ((manifests === undefined) === !kubernetes) throw usageError('give exactly one of --manifests DIR or --kubernetes', CONTROL_USAGE);
  const kubeconfig = str(flags, 'kubeconfig');
  if (kubeconfig !== undefined && !kubernetes) badFlag('kubeconfig', kubeconfig, 'only goes with --kubernetes');
  const listen = hostPort(flags, 'listen', '0.0.0.0:15010');
  const metrics = bindAddress(flags, 'metrics', '15014', '0.0.0.0');
  const dashboardFlag = str(flags, 'dashboard');
  const dashboard = dashboardFlag === 'off' ? undefined : bindAddress(flags, 'dashboard', DEFAULT_DASHBOARD, '127.0.0.1');
  for (const f of ['manifest-quiet-ms', 'removal-grace-ms']) {
    const v = str(flags, f);
    if (v !== undefined && manifests === undefined) badFlag(f, v, 'only goes with --manifests');
  }
  const quietMs = int(flags, 'manifest-quiet-ms', DEFAULT_MANIFEST_QUIET_MS, 0, 60_000);
  const removalGraceMs = int(flags, 'removal-grace-ms', DEFAULT_REMOVAL_GRACE_MS, 0, 3_600_000);
  const prometheusUrl = str(flags, 'prometheus');
  if (prometheusUrl !== undefined) {
    if (dashboard === undefined) badFlag('prometheus', prometheusUrl, 'is for the dashboard, which --dashboard off turns off');
    if (!/^https?:\/\/[^\s/]+(\/\S*)?$/.test(prometheusUrl)) badFlag('prometheus', prometheusUrl, 'must be an http(s) URL, e.g. http://127.0.0.1:9090');
  }

  const caDir = str(flags, 'ca-dir');
  const caSecretFlag = str(flags, 'ca-secret');
  if ((caDir === undefined) === (caSecretFlag === undefined)) throw usageError('give exactly one of --ca-dir DIR or --ca-secret [NS/]NAME', CONTROL_USAGE);
  let caSecret: { namespace: string; name: string } | undefined;
  if (caSecretFlag !== undefined) {
    if (!kubernetes) badFlag('ca-secret', caSecretFlag, 'a Secret lives in the Kubernetes API: give --kubernetes too');
    caSecret = namespacedName('ca-secret', caSecretFlag, env);
  }
  if (caDir === '') badFlag('ca-dir', caDir, 'must be a directory');

  const tokensFile = str(flags, 'tokens');
  const audienceFlag = str(flags, 'token-audience');
  if (tokensFile !== undefined && audienceFlag !== undefined) badFlag('token-audience', audienceFlag, 'goes with TokenReview; --tokens replaces it');
  if (tokensFile === undefined && !kubernetes) badFlag('tokens', tokensFile, 'is required with --manifests (agents bootstrap with those tokens; TokenReview needs --kubernetes)');
  const tokenAudience = matching(flags, 'token-audience', /^[^\s,]{1,253}$/, 'a token audience (no spaces or commas)', DEFAULT_TOKEN_AUDIENCE);

  const configMap = str(flags, 'trust-bundle-configmap');
  if (configMap !== undefined) {
    if (!kubernetes) badFlag('trust-bundle-configmap', configMap, 'a ConfigMap lives in the Kubernetes API: give --kubernetes too');
    matching(flags, 'trust-bundle-configmap', OBJECT_NAME, 'a ConfigMap name (lowercase letters, digits, - and .)');
  }
  return Object.freeze({
    listen,
    metrics,
    dashboard,
    prometheusUrl,
    source: manifests !== undefined
      ? Object.freeze({ kind: 'manifests' as const, dir: manifests, quietMs, removalGraceMs })
      : Object.freeze({ kind: 'kubernetes' as const, kubeconfig }),
    caDir,
    caSecret: caSecret === undefined ? undefined : Object.freeze(caSecret),
    tokensFile,
    tokenAudience,
    trustBundleConfigMap: configMap,
    trustDomain: trustDomain(flags, DEFAULT_TRUST_DOMAIN),
    workloadCertTtlMs: int(flags, 'workload-cert-ttl', 24 * 3600, MIN_WORKLOAD_CERT_TTL_S, MAX_WORKLOAD_CERT_TTL_S) * 1000,
    serverDnsNames: Object.freeze(list(flags, 'server-dns')),
    readyFile: str(flags, 'ready-file'),
    logLevel: logLevel(flags),
    admin: adminConfig(flags, caDir),
  });
}

function adminConfig(flags: FlagValues, caDir: string | undefined): ControlPlaneConfig['admin'] {
  const adminFlag = str(flags, 'admin');
  const tokenFlag = str(flags, 'admin-token-file');
  if (adminFlag === 'off') {
    if (tokenFlag !== undefined) badFlag('admin-token-file', tokenFlag, 'goes with the admin endpoint, which --admin off turns off');
    return undefined;
  }
  const address = bindAddress(flags, 'admin', DEFAULT_ADMIN, '127.0.0.1');
  if (tokenFlag !== undefined && !tokenFlag.startsWith('/')) badFlag('admin-token-file', tokenFlag, 'must be an absolute path');
  const tokenFile = tokenFlag ?? (caDir === undefined ? undefined : `${caDir.replace(/\/+$/, '')}/${ADMIN_TOKEN_FILE}`);
  if (tokenFile === undefined) {
    if (adminFlag !== undefined) badFlag('admin', adminFlag, 'needs --admin-token-file when the CA is in a Secret');
    return undefined;
  }
  return Object.freeze({ address, tokenFile });
}

function namespacedName(flag: string, value: string, env: NodeJS.ProcessEnv): { namespace: string; name: string } {
  const [ns, name] = value.includes('/') ? value.split('/', 2) : [env.POD_NAMESPACE ?? ROOT_NAMESPACE, value];
  if (ns === undefined || name === undefined || !OBJECT_NAME.test(ns) || !OBJECT_NAME.test(name) || value.split('/').length > 2) {
    badFlag(flag, value, 'must be NAME or NAMESPACE/NAME (Kubernetes object names)');
  }
  return { namespace: ns, name };
}

// ---- weft control revoke ----------------------------------------------------------------

export interface RevokeConfig {
  /** The admin endpoint, `host:port`. */
  readonly admin: string;
  readonly tokenFile: string;
  readonly request: { readonly serial: string } | { readonly node: string } | { readonly identity: string };
}

export const REVOKE_USAGE = `weft control revoke (--serial S | --node NODE | --identity SPIFFE-ID)
              [--admin HOST:PORT] (--token-file FILE | --ca-dir DIR)
  --serial        one certificate, by serial (hex, as openssl prints it)
  --node          every certificate issued to the node; the node gets no certificate or config any more
  --identity      every workload certificate issued for the identity
  --admin         the control plane's admin endpoint (default ${DEFAULT_ADMIN})
  --token-file    the admin token (default: ${ADMIN_TOKEN_FILE} in --ca-dir)`;

export const REVOKE_FLAGS: FlagTable = Object.freeze({
  serial: { type: 'string' }, node: { type: 'string' }, identity: { type: 'string' }, admin: { type: 'string' },
  'token-file': { type: 'string' }, 'ca-dir': { type: 'string' },
});

export function revokeConfigFromArgv(argv: readonly string[]): RevokeConfig {
  const flags = parseFlagArgs(argv, REVOKE_FLAGS, REVOKE_USAGE);
  const given = (['serial', 'node', 'identity'] as const).filter((f) => str(flags, f) !== undefined);
  if (given.length !== 1) throw usageError(`give exactly one of --serial, --node, --identity (got ${given.length === 0 ? 'none' : given.map((g) => `--${g}`).join(', ')})`, REVOKE_USAGE);
  const which = given[0] ?? 'serial';
  const value = str(flags, which) ?? '';
  const admin = hostPort(flags, 'admin', DEFAULT_ADMIN);
  const tokenFlag = str(flags, 'token-file');
  const caDir = str(flags, 'ca-dir');
  if (tokenFlag !== undefined && caDir !== undefined) badFlag('ca-dir', caDir, 'goes instead of --token-file, not with it');
  const tokenFile = tokenFlag ?? (caDir === undefined ? undefined : `${caDir.replace(/\/+$/, '')}/${ADMIN_TOKEN_FILE}`);
  if (tokenFile === undefined) throw usageError('give --token-file FILE or --ca-dir DIR (the admin token is there)', REVOKE_USAGE);
  const request = which === 'serial' ? { serial: value } : which === 'node' ? { node: value } : { identity: value };
  return Object.freeze({ admin, tokenFile, request: Object.freeze(request) });
}
