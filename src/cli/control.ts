// `weft control`: the control plane. Runs until SIGTERM/SIGINT, then ends agent streams
// cleanly (they keep serving their config and reconnect) and exits.

import { runControlPlane, type ControlPlaneConfig } from '../app/control.ts';
import { DEFAULT_QUIET_MS } from '../control/source/directory.ts';
import { DEFAULT_REMOVAL_GUARD } from '../control/source/removal-guard.ts';
import { intFlag, parseFlags, requiredFlag, usageError } from './args.ts';

const USAGE = `weft control (--manifests DIR | --kubernetes [--kubeconfig FILE]) --ca-dir DIR [--tokens FILE]
              [--listen HOST:PORT] [--metrics [HOST:]PORT] [--trust-domain TD] [--server-dns NAME,..]
              [--ready-file FILE] [--log-level L] [--manifest-quiet-ms MS] [--removal-grace-ms MS]
  --listen        gRPC for agents (default 0.0.0.0:15010)
  --metrics       Prometheus metrics and /healthz/ready (default 0.0.0.0:15014)
  --tokens        bootstrap tokens, a JSON object token -> node name (weft sim writes it)
  --ca-dir        the mesh CA (ca.key, ca.crt, revoked.json); made on first start
  --manifest-quiet-ms   a changed manifest is read once stable this long (default 200)
  --removal-grace-ms    a reload emptying a file, or removing over half the objects, waits this long (default 10000)`;

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;

export function controlConfig(argv: readonly string[]): ControlPlaneConfig {
  const s = { type: 'string' } as const;
  const { values } = parseFlags(argv, {
    listen: s, metrics: s, manifests: s, kubernetes: { type: 'boolean' }, kubeconfig: s, 'ca-dir': s, tokens: s,
    'trust-domain': s, 'server-dns': s, 'ready-file': s, 'log-level': s, 'manifest-quiet-ms': s, 'removal-grace-ms': s,
  }, USAGE);
  if (values.manifests === undefined && (values['manifest-quiet-ms'] !== undefined || values['removal-grace-ms'] !== undefined)) {
    throw usageError('--manifest-quiet-ms and --removal-grace-ms only go with --manifests', USAGE);
  }
  if ((values.manifests === undefined) === (values.kubernetes !== true)) throw usageError('give exactly one of --manifests DIR or --kubernetes', USAGE);
  if (values.kubeconfig !== undefined && values.kubernetes !== true) throw usageError('--kubeconfig only goes with --kubernetes', USAGE);
  const listen = values.listen ?? '0.0.0.0:15010';
  if (!/^[^:\s]+:\d{1,5}$/.test(listen)) throw usageError(`--listen must be HOST:PORT, got ${JSON.stringify(listen)}`, USAGE);
  const metricsFlag = values.metrics ?? '15014';
  const m = /^(?:([^:\s]+):)?(\d{1,5})$/.exec(metricsFlag);
  if (m === null) throw usageError(`--metrics must be PORT or HOST:PORT, got ${JSON.stringify(metricsFlag)}`, USAGE);
  const metricsPort = intFlag(m[2], '--metrics', undefined, USAGE);
  const trustDomain = values['trust-domain'] ?? 'cluster.local';
  if (!TRUST_DOMAIN.test(trustDomain)) throw usageError(`--trust-domain must be lowercase letters, digits, '.', '-' or '_', got ${JSON.stringify(trustDomain)}`, USAGE);
  if (values.kubernetes !== true && values.tokens === undefined) throw usageError('--tokens FILE is required with --manifests (agents bootstrap with those tokens)', USAGE);
  return Object.freeze({
    listen,
    metrics: Object.freeze({ host: m[1] ?? '0.0.0.0', port: metricsPort }),
    source: values.manifests !== undefined
      ? Object.freeze({
        kind: 'manifests' as const, dir: values.manifests,
        quietMs: intFlag(values['manifest-quiet-ms'], '--manifest-quiet-ms', DEFAULT_QUIET_MS, USAGE),
        removalGraceMs: intFlag(values['removal-grace-ms'], '--removal-grace-ms', DEFAULT_REMOVAL_GUARD.graceMs, USAGE),
      })
      : Object.freeze({ kind: 'kubernetes' as const, kubeconfig: values.kubeconfig }),
    caDir: requiredFlag(values['ca-dir'], '--ca-dir', USAGE),
    tokensFile: values.tokens,
    trustDomain,
    serverDnsNames: Object.freeze((values['server-dns'] ?? '').split(',').map((n) => n.trim()).filter((n) => n !== '')),
    readyFile: values['ready-file'],
    logLevel: values['log-level'] ?? 'info',
  });
}

export async function controlCommand(argv: readonly string[]): Promise<number> {
  const plane = await runControlPlane(controlConfig(argv));
  await new Promise<void>((resolve) => {
    const stop = (): void => void plane.close().then(resolve);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}
