// `weft control`, wired: a config source (YAML directory or Kubernetes informers) feeds the
// mesh model; each new MeshState goes to the gRPC server, which pushes every agent its
// node's slice plus the trust bundle; the identity CA signs workload certificates and the
// channel issuer signs node and server certificates from the same root. Metrics and
// readiness on a separate port.
//
// Also exported for the agent side (control-feed): the resource type carrying the trust
// bundle and the validator/decoder agents apply to what they receive.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { systemClock, type Clock } from '../core/clock.ts';
import { describeError, WeftError } from '../core/errors.ts';
import { ChannelCertificateIssuer } from '../control/channel-certificates.ts';
import type { ControlResource } from '../control/resource.ts';
import { ControlServer, type CsrSigner } from '../control/server.ts';
import { StaticTokenReviewer, type TokenReviewer } from '../control/token-reviewer.ts';
import type { ConfigSource } from '../control/source/contract.ts';
import { CertificateAuthority, FileCaStore, SecretCaStore, parseSpiffeId, type CaStore } from '../identity/index.ts';
import type { ControlPlaneConfig } from '../config/control.ts';
import type { KubeConfig } from '@kubernetes/client-node';
import { formatProblem, type ManifestProblem } from '../model/manifests.ts';
import { loadMesh, type LoadResult } from '../model/load.ts';
import { decodeNodeResources, type DecodedResources } from '../model/resource-codec.ts';
import { nodeResources, ResourceCache, resourceVersion, type NodeResource } from '../model/node-slice.ts';
import type { RawObject } from '../model/types.ts';
import type { MeshState } from '../model/state.ts';
import { routeStatuses } from '../model/route-check.ts';
import { kubernetesStatusPut, RouteStatusWriter, type RouteObjectCache } from '../control/route-status.ts';
import { HttpEndpoint, collectProcessMetrics, metricsRoutes, readinessRoutes } from '../telemetry/index.ts';
import { DEFAULT_PORTS } from '../config/agent.ts';
import { IssuedCertificates, startControlDashboard } from './dashboard.ts';

// ---- resources shared with agents -----------------------------------------------------------

/** Pushed to every node next to its model resources: `trust/bundle`. */
export const TRUST_RESOURCE_TYPE = 'trust';
export const TRUST_RESOURCE_NAME = 'bundle';

export interface TrustBody {
  /** PEM of every trusted root. */
  readonly trustBundlePem: string;
  /** The CA's current CRL (PEM), if it publishes one. */
  readonly crlPem: string | undefined;
}

export function trustResource(body: TrustBody): ControlResource {
  const plain = { trustBundlePem: body.trustBundlePem, ...(body.crlPem === undefined ? {} : { crlPem: body.crlPem }) };
  return Object.freeze({ type: TRUST_RESOURCE_TYPE, name: TRUST_RESOURCE_NAME, version: resourceVersion(plain), body: plain });
}

/** The agent's ResourceValidator: the trust bundle checked here, everything else by the model's decoder. */
export function validateAgentResource(r: ControlResource): string | undefined {
  if (r.type === TRUST_RESOURCE_TYPE) {
    const b = r.body as Partial<Record<keyof TrustBody, unknown>> | null;
    if (r.name !== TRUST_RESOURCE_NAME) return `the trust resource must be named ${TRUST_RESOURCE_NAME}`;
    if (b === null || typeof b !== 'object' || typeof b.trustBundlePem !== 'string' || !b.trustBundlePem.includes('-----BEGIN CERTIFICATE-----')) {
      return 'body.trustBundlePem must hold PEM certificates';
    }
    if (b.crlPem !== undefined && (typeof b.crlPem !== 'string' || !b.crlPem.includes('-----BEGIN X509 CRL-----'))) return 'body.crlPem must be a PEM X509 CRL';
    if (resourceVersion(b) !== r.version) return `version ${JSON.stringify(r.version)} does not match the body's content hash`;
    return undefined;
  }
  const problems = decodeNodeResources([r as NodeResource]).problems;
  return problems.length === 0 ? undefined : problems.map((p) => p.message).join('; ');
}

export interface AgentConfigFromControl {
  readonly decoded: DecodedResources;
  readonly trust: TrustBody | undefined;
}

/** Turns the validated resources an agent holds into model content plus the trust bundle. */
export function decodeAgentResources(resources: ReadonlyMap<string, ControlResource>, trustDomain: string): AgentConfigFromControl {
  const model: NodeResource[] = [];
  let trust: TrustBody | undefined;
  for (const r of resources.values()) {
    if (r.type === TRUST_RESOURCE_TYPE) trust = r.body as TrustBody;
    else model.push(r as NodeResource);
  }
  return { decoded: decodeNodeResources(model, trustDomain), trust };
}

// ---- the control plane process ----------------------------------------------------------------

export type { ControlPlaneConfig } from '../config/control.ts';

export interface ControlPlaneDeps {
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Replaces the source the config names (tests). */
  readonly source?: ConfigSource;
}

export interface RunningControlPlane {
  readonly port: number;
  readonly metricsPort: number;
  /** The dashboard's port, when it runs. */
  readonly dashboardPort: number | undefined;
  readonly server: ControlServer<ControlSnapshot>;
  readonly trustBundlePem: string;
  /** Stops the source, ends agent streams, closes the ports. Safe to call twice. */
  close(): Promise<void>;
}

/** What the gRPC server pushes from: the mesh state and the trust resource of the moment. */
export interface ControlSnapshot {
  readonly state: MeshState;
  readonly trust: ControlResource;
}

/**
 * One ResourceCache for every node (and every snapshot; entries go with their model objects),
 * so each workload, service and policy of a state is hashed once rather than once per node.
 */
function resourcesForEachNode(): (snapshot: ControlSnapshot, node: string) => ControlResource[] {
  const cache = new ResourceCache();
  return (snapshot, node) => [...nodeResources(snapshot.state, node, cache).values(), snapshot.trust];
}

/** The KubeConfig of the Kubernetes source: in-cluster when running in a pod, else ~/.kube/config or --kubeconfig. */
async function kubeConfigOf(config: ControlPlaneConfig): Promise<KubeConfig | undefined> {
  if (config.source.kind !== 'kubernetes') return undefined;
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kubeConfig = new KubeConfig();
  if (config.source.kubeconfig === undefined) kubeConfig.loadFromDefault();
  else kubeConfig.loadFromFile(config.source.kubeconfig);
  return kubeConfig;
}

async function makeSource(config: ControlPlaneConfig, kubeConfig: KubeConfig | undefined, logger: Logger): Promise<ConfigSource> {
  if (config.source.kind === 'manifests') {
    const { DirectorySource } = await import('../control/source/directory.ts');
    const { dir, quietMs, removalGraceMs } = config.source;
    return new DirectorySource({
      directory: dir, log: logger, ...(quietMs === undefined ? {} : { quietMs }), ...(removalGraceMs === undefined ? {} : { removalGuard: { graceMs: removalGraceMs } }),
    });
  }
  if (kubeConfig === undefined) throw new Error('the Kubernetes source needs a KubeConfig');
  const { KubernetesSource } = await import('../control/source/kubernetes.ts');
  return new KubernetesSource({ kubeConfig, log: logger });
}

async function makeTokenReviewer(config: ControlPlaneConfig, kubeConfig: KubeConfig | undefined): Promise<TokenReviewer> {
  if (config.tokensFile !== undefined) return StaticTokenReviewer.fromFile(config.tokensFile);
  if (kubeConfig === undefined) {
    throw new WeftError('WEFT_CONTROL_BAD_OPTIONS', 'agents need a way to bootstrap: give --tokens FILE (or use the Kubernetes source for TokenReview)');
  }
  const { KubernetesTokenReviewer } = await import('../control/kubernetes-token-reviewer.ts');
  return new KubernetesTokenReviewer({ kubeConfig, ...(config.tokenAudience === undefined ? {} : { audience: config.tokenAudience }) });
}

async function makeCaStore(config: ControlPlaneConfig, kubeConfig: KubeConfig | undefined): Promise<CaStore> {
  if (config.caSecret === undefined) {
    if (config.caDir === undefined) throw new WeftError('WEFT_CONTROL_BAD_OPTIONS', 'the CA needs a home: give --ca-dir DIR or --ca-secret NAME');
    return new FileCaStore(config.caDir);
  }
  if (kubeConfig === undefined) throw new WeftError('WEFT_CONTROL_BAD_OPTIONS', '--ca-secret needs the Kubernetes source (--kubernetes)');
  const { kubernetesSecret } = await import('../control/kubernetes-objects.ts');
  return new SecretCaStore(kubernetesSecret(kubeConfig, config.caSecret.namespace, config.caSecret.name));
}

export async function runControlPlane(config: ControlPlaneConfig, deps: ControlPlaneDeps = {}): Promise<RunningControlPlane> {
  const logger = deps.logger ?? pino({ level: config.logLevel, base: { component: 'control' } });
  const clock = deps.clock ?? systemClock;
  const registry = new Registry();
  collectProcessMetrics(registry, 'weft_control_process_');
  const cleanups: Array<() => Promise<void> | void> = [];
  const closeAll = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err: unknown) {
        logger.warn({ err: describeError(err) }, 'error while stopping');
      }
    }
  };

  try {
    // The CA answers "is such a pod on that node?" from the newest state.
    let state: MeshState | undefined;
    const kubeConfig = await kubeConfigOf(config);
    const store = await makeCaStore(config, kubeConfig);
    const ca = await CertificateAuthority.open({
      store, clock, trustDomain: config.trustDomain,
      authorizer: { mayIssue: (node, ns, sa) => state?.hasServiceAccountOnNode(node, ns, sa) ?? false },
    });
    const stored = await store.load();
    if (stored === undefined) throw new WeftError('WEFT_CONTROL_BAD_CA_MATERIAL', `the CA in ${config.caDir ?? `Secret ${config.caSecret?.namespace}/${config.caSecret?.name}`} vanished right after it was opened`);
    const channel = await ChannelCertificateIssuer.create({ caCertPem: stored.certPem, caKeyPem: stored.keyPem, trustDomain: config.trustDomain, clock });
    let serverCert = await channel.issueServerCertificate(config.serverDnsNames);
    const trustBundlePem = ca.trustBundlePem();

    const issued = new IssuedCertificates();
    const csrSigner: CsrSigner = {
      sign: async ({ csrPem, node, identity }) => {
        const cert = await ca.sign({ csrPem, node, identity: parseSpiffeId(identity) });
        issued.record(cert.serial, identity, node, cert.notAfter);
        return cert;
      },
    };
    const resourcesFor = resourcesForEachNode();
    let snapshot: ControlSnapshot | undefined;
    let manifestProblems: readonly string[] = [];
    const server = new ControlServer<ControlSnapshot>({
      resourcesFor,
      trustDomain: config.trustDomain,
      tls: { trustBundlePem, certPem: serverCert.certPem, keyPem: serverCert.keyPem },
      tokenReviewer: await makeTokenReviewer(config, kubeConfig),
      nodeSigner: channel,
      csrSigner,
      registry,
      logger,
      clock,
    });
    cleanups.push(() => server.close());

    // The server certificate is renewed at half-life; agents verify it by SPIFFE id.
    let renewal: NodeJS.Timeout | undefined;
    const scheduleRenewal = (): void => {
      const lifetime = serverCert.notAfter.getTime() - clock.now();
      renewal = setTimeout(() => {
        channel.issueServerCertificate(config.serverDnsNames).then((next) => {
          serverCert = next;
          server.updateTls({ trustBundlePem, certPem: next.certPem, keyPem: next.keyPem });
          logger.info({ notAfter: next.notAfter.toISOString() }, 'renewed the control server certificate');
        }, (err: unknown) => logger.error({ err: describeError(err) }, 'server certificate renewal failed')).finally(scheduleRenewal);
      }, Math.max(60_000, Math.min(lifetime / 2, 2 ** 31 - 1)));
      renewal.unref();
    };
    scheduleRenewal();
    cleanups.push(() => clearTimeout(renewal));

    // The root, where every pod can mount it (as istiod's istio-ca-root-cert).
    let publisher: { publish(namespaces: readonly string[], pem: string): Promise<void>; close(): void } | undefined;
    if (config.trustBundleConfigMap !== undefined) {
      if (kubeConfig === undefined) throw new WeftError('WEFT_CONTROL_BAD_OPTIONS', '--trust-bundle-configmap needs the Kubernetes source (--kubernetes)');
      const { TrustBundlePublisher } = await import('../control/kubernetes-objects.ts');
      publisher = new TrustBundlePublisher(kubeConfig, config.trustBundleConfigMap, logger);
      cleanups.push(() => publisher?.close());
    }

    // Source -> model -> server. Each snapshot is validated aside; an object that turned
    // invalid keeps its last good version (loadMesh's `previous`).
    let last: LoadResult | undefined;
    let ready = false;
    const onSnapshot = async (objects: readonly RawObject[], sourceProblems: readonly ManifestProblem[]): Promise<void> => {
      const loaded = loadMesh(objects, { trustDomain: config.trustDomain, ...(last === undefined ? {} : { previous: last.objects }) });
      const problems = [...sourceProblems, ...loaded.problems];
      for (const p of problems.slice(0, 50)) logger.warn({ problem: formatProblem(p) }, 'manifest problem');
      if (problems.length > 50) logger.warn({ more: problems.length - 50 }, 'more manifest problems not shown');
      last = loaded;
      state = loaded.state;
      manifestProblems = problems.slice(0, 200).map(formatProblem);
      const trust = trustResource({ trustBundlePem, crlPem: await ca.crlPem() });
      snapshot = { state: loaded.state, trust };
      server.setSnapshot(snapshot);
      void publisher?.publish(namespacesOf(objects), trustBundlePem);
      routeStatus(loaded.state);
      logger.info({ workloads: loaded.state.workloads.length, services: loaded.state.services.length, policies: loaded.state.policies.length, problems: problems.length }, 'mesh snapshot loaded');
    };
    const source = deps.source ?? await makeSource(config, kubeConfig, logger);
    // Route status goes back through the API's status subresource; files have nowhere to keep it.
    const statusWriter = kubeConfig !== undefined && isRouteObjectCache(source)
      ? new RouteStatusWriter({ objects: source, put: kubernetesStatusPut(kubeConfig), log: logger })
      : undefined;
    if (statusWriter !== undefined) cleanups.push(() => statusWriter.close());
    let statusNoted = false;
    const routeStatus = (s: MeshState): void => {
      if (statusWriter !== undefined) {
        statusWriter.update(routeStatuses(s));
        return;
      }
      if (s.routes.length === 0 || statusNoted) return;
      statusNoted = true;
      logger.info({ routes: s.routes.length }, 'route status is not written back: this config source has nowhere to keep it (weft vet shows what it would say)');
    };
    let queue = Promise.resolve();
    await source.start((objects, problems) => {
      // One snapshot at a time, in order; a failure is logged and the last good state stays.
      queue = queue.then(() => onSnapshot(objects, problems)).catch((err: unknown) => {
        logger.error({ err: describeError(err) }, 'could not load a mesh snapshot; keeping the last good one');
      });
    });
    cleanups.push(() => source.close());
    await queue;

    const port = await server.listen(config.listen);
    const metrics = await HttpEndpoint.start({
      name: 'metrics', host: config.metrics.host, port: config.metrics.port,
      routes: { ...metricsRoutes(registry), ...readinessRoutes(() => (ready ? { ready } : { ready, reason: 'no mesh snapshot loaded yet' })) },
    });
    cleanups.push(() => metrics.close());
    let dashboardPort: number | undefined;
    if (config.dashboard !== undefined) {
      const dashboard = await startControlDashboard({
        host: config.dashboard.host, port: config.dashboard.port, prometheusUrl: config.prometheusUrl, agentMetricsPort: DEFAULT_PORTS.metrics,
      }, {
        state: () => state,
        agents: () => server.agents(),
        desired: (node) => (snapshot === undefined ? [] : resourcesFor(snapshot, node)),
        rejected: (node) => server.rejectedVersions(node),
        manifestProblems: () => manifestProblems,
        revokedSerials: () => ca.revokedSerials(),
        logger,
      }, issued);
      cleanups.push(() => dashboard.close());
      dashboardPort = dashboard.address.port;
    }
    ready = last !== undefined;
    if (config.readyFile !== undefined) {
      mkdirSync(dirname(config.readyFile), { recursive: true });
      writeFileSync(config.readyFile, `${process.pid}\n`);
    }
    logger.info({ listen: config.listen, port, metrics: metrics.address.port, dashboard: dashboardPort, trustDomain: config.trustDomain }, 'control plane ready');

    let closing: Promise<void> | undefined;
    return {
      port,
      metricsPort: metrics.address.port,
      dashboardPort,
      server,
      trustBundlePem,
      close: () => (closing ??= closeAll()),
    };
  } catch (err: unknown) {
    await closeAll();
    throw err;
  }
}

function namespacesOf(objects: readonly RawObject[]): string[] {
  const out: string[] = [];
  for (const o of objects) {
    const name = (o.body.metadata as { name?: unknown } | undefined)?.name;
    if (o.kind === 'Namespace' && typeof name === 'string') out.push(name);
  }
  return out.sort();
}

/** Sources that keep the objects they watched (the Kubernetes source), so status can be written against them. */
function isRouteObjectCache(source: ConfigSource): source is ConfigSource & RouteObjectCache {
  return typeof (source as Partial<RouteObjectCache>).object === 'function';
}
