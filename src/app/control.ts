// `weft control`, wired: a config source (YAML directory or Kubernetes informers) feeds the
// mesh model; each new MeshState goes to the gRPC server, which pushes every agent its
// node's slice plus the trust bundle; the identity CA signs workload certificates and the
// channel issuer signs node and server certificates from the same root. Metrics and
// readiness on a separate port.
//
// Also exported for the agent side (control-feed): the resource type carrying the trust
// bundle and the validator/decoder agents apply to what they receive.

import { X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { systemClock, type Clock } from '../core/clock.ts';
import { describeError, WeftError } from '../core/errors.ts';
import { ChannelCertificateIssuer } from '../control/channel-certificates.ts';
import type { ControlResource } from '../control/resource.ts';
import { ControlServer, type ControlServerEvent, type CsrSigner, type NodeCertificateSigner } from '../control/server.ts';
import { StaticTokenReviewer, type TokenReviewer } from '../control/token-reviewer.ts';
import type { ConfigSource, SourceChange } from '../control/source/contract.ts';
import { snapshotChanges } from '../control/source/snapshot-changes.ts';
import { CertificateAuthority, FileCaStore, SecretCaStore, parseSpiffeId, type CaStore } from '../identity/index.ts';
import type { ControlPlaneConfig } from '../config/control.ts';
import type { KubeAccess } from '../control/source/kube-access.ts';
import { formatProblem } from '../model/manifests.ts';
import { LiveMesh } from '../model/live-mesh.ts';
import { decodeNodeResources, type DecodedResources } from '../model/resource-codec.ts';
import { resourceVersion, type NodeResource } from '../model/node-slice.ts';
import type { MeshState } from '../model/state.ts';
import { routeStatuses } from '../model/route-check.ts';
import { kubernetesStatusPut, RouteStatusWriter, type RouteObjectCache } from '../control/route-status.ts';
// Not the telemetry index: it brings the OpenTelemetry SDK, which the control plane does not use (6 MB of RSS).
import { HttpEndpoint, metricsRoutes, readinessRoutes } from '../telemetry/http-endpoints.ts';
import { collectProcessMetrics } from '../telemetry/process-metrics.ts';
import { DEFAULT_PORTS } from '../config/agent.ts';
import { startControlDashboard } from './dashboard.ts';
import { startControlAdmin } from './control-admin.ts';
import { normalizedSerial, Revocations } from '../control/revocations.ts';

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
  /** Observes the gRPC server's stream events (benchmarks, tests); must not throw. */
  readonly onServerEvent?: (event: ControlServerEvent) => void;
}

export interface RunningControlPlane {
  readonly port: number;
  readonly metricsPort: number;
  /** The dashboard's port, when it runs. */
  readonly dashboardPort: number | undefined;
  /** The admin endpoint's port (revocation), when it runs. */
  readonly adminPort: number | undefined;
  readonly server: ControlServer<never>;
  readonly trustBundlePem: string;
  /** Stops the source, ends agent streams, closes the ports. Safe to call twice. */
  close(): Promise<void>;
}


/** How the Kubernetes source reaches the API: --kubeconfig, else $KUBECONFIG or ~/.kube/config, else in-cluster. */
async function kubeAccessOf(config: ControlPlaneConfig): Promise<KubeAccess | undefined> {
  if (config.source.kind !== 'kubernetes') return undefined;
  const { defaultKubeAccess, kubeconfigAccess } = await import('../control/source/kube-access.ts');
  return config.source.kubeconfig === undefined ? defaultKubeAccess() : kubeconfigAccess(config.source.kubeconfig);
}

async function makeSource(config: ControlPlaneConfig, kube: KubeAccess | undefined, logger: Logger): Promise<ConfigSource> {
  if (config.source.kind === 'manifests') {
    const { DirectorySource } = await import('../control/source/directory.ts');
    const { dir, quietMs, removalGraceMs } = config.source;
    return new DirectorySource({
      directory: dir, log: logger, ...(quietMs === undefined ? {} : { quietMs }), ...(removalGraceMs === undefined ? {} : { removalGuard: { graceMs: removalGraceMs } }),
    });
  }
  if (kube === undefined) throw new Error('the Kubernetes source needs access to the Kubernetes API');
  const { KubernetesSource } = await import('../control/source/kubernetes.ts');
  return new KubernetesSource({ access: kube, log: logger });
}

async function makeTokenReviewer(config: ControlPlaneConfig, kube: KubeAccess | undefined): Promise<TokenReviewer> {
  if (config.tokensFile !== undefined) return StaticTokenReviewer.fromFile(config.tokensFile);
  if (kube === undefined) {
    throw new WeftError('WEFT_CONTROL_BAD_OPTIONS', 'agents need a way to bootstrap: give --tokens FILE (or use the Kubernetes source for TokenReview)');
  }
  const { KubernetesTokenReviewer } = await import('../control/kubernetes-token-reviewer.ts');
  return new KubernetesTokenReviewer({ access: kube, ...(config.tokenAudience === undefined ? {} : { audience: config.tokenAudience }) });
}

async function makeCaStore(config: ControlPlaneConfig, kube: KubeAccess | undefined): Promise<CaStore> {
  if (config.caSecret === undefined) {
    if (config.caDir === undefined) throw new WeftError('WEFT_CONTROL_BAD_OPTIONS', 'the CA needs a home: give --ca-dir DIR or --ca-secret NAME');
    return new FileCaStore(config.caDir);
  }
  if (kube === undefined) throw new WeftError('WEFT_CONTROL_BAD_OPTIONS', '--ca-secret needs the Kubernetes source (--kubernetes)');
  const { kubernetesSecret } = await import('../control/kubernetes-objects.ts');
  return new SecretCaStore(kubernetesSecret(kube, config.caSecret.namespace, config.caSecret.name));
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
    const kube = await kubeAccessOf(config);
    const store = await makeCaStore(config, kube);
    const ca = await CertificateAuthority.open({
      store, clock, trustDomain: config.trustDomain, workloadTtlMs: config.workloadCertTtlMs,
      authorizer: { mayIssue: (node, ns, sa) => state?.hasServiceAccountOnNode(node, ns, sa) ?? false },
    });
    const stored = await store.load();
    if (stored === undefined) throw new WeftError('WEFT_CONTROL_BAD_CA_MATERIAL', `the CA in ${config.caDir ?? `Secret ${config.caSecret?.namespace}/${config.caSecret?.name}`} vanished right after it was opened`);
    const channel = await ChannelCertificateIssuer.create({ caCertPem: stored.certPem, caKeyPem: stored.keyPem, trustDomain: config.trustDomain, clock });
    let serverCert = await channel.issueServerCertificate(config.serverDnsNames);
    const trustBundlePem = ca.trustBundlePem();

    // Everything signed is remembered, so an operator can revoke by node or identity.
    const revocations = new Revocations(config.caDir);
    const csrSigner: CsrSigner = {
      sign: async ({ csrPem, node, identity }) => {
        const cert = await ca.sign({ csrPem, node, identity: parseSpiffeId(identity) });
        revocations.record({ serial: cert.serial, kind: 'workload', identity, node, notAfter: cert.notAfter.getTime() });
        return cert;
      },
    };
    const nodeSigner: NodeCertificateSigner = {
      signNodeCertificate: async (csrPem, node) => {
        const signed = await channel.signNodeCertificate(csrPem, node);
        const cert = new X509Certificate(signed.certPem);
        revocations.record({ serial: cert.serialNumber, kind: 'node', identity: `node ${node}`, node, notAfter: cert.validToDate.getTime() });
        return signed;
      },
    };
    let revokedSerials = new Set(ca.revokedSerials());
    // The live model: each change from the source costs what it touches (live-mesh.ts).
    // Objects from the API server were validated against the Kubernetes schemas when they
    // were written; files were not, so only they are checked again here.
    const live = new LiveMesh({ trustDomain: config.trustDomain, kubernetesSchema: config.source.kind !== 'kubernetes' });
    let manifestProblems: readonly string[] = [];
    const server = new ControlServer<never>({
      trustDomain: config.trustDomain,
      tls: { trustBundlePem, certPem: serverCert.certPem, keyPem: serverCert.keyPem },
      tokenReviewer: await makeTokenReviewer(config, kube),
      nodeSigner,
      csrSigner,
      revoked: {
        isRevokedNode: (node) => revocations.isRevokedNode(node),
        isRevokedSerial: (serial) => revokedSerials.has(normalizedSerial(serial)),
      },
      registry,
      logger,
      clock,
      ...(deps.onServerEvent === undefined ? {} : { onEvent: deps.onServerEvent }),
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
      if (kube === undefined) throw new WeftError('WEFT_CONTROL_BAD_OPTIONS', '--trust-bundle-configmap needs the Kubernetes source (--kubernetes)');
      const { TrustBundlePublisher } = await import('../control/kubernetes-objects.ts');
      publisher = new TrustBundlePublisher(kube, config.trustBundleConfigMap, logger);
      cleanups.push(() => publisher?.close());
    }

    // Source -> model -> server, one change at a time: each object is validated aside (an
    // object that turned invalid keeps its last good version), the model updates what the
    // change touches, and the server pushes each agent the difference since what it holds.
    let ready = false;
    let loaded = false;
    let shownProblems = new Set<string>();
    let namespaces = '';
    let trust: ControlResource | undefined;
    // The trust bundle and the CRL, pushed to every node (also at once after a revocation).
    const refreshTrust = async (): Promise<void> => {
      const nextTrust = trustResource({ trustBundlePem, crlPem: await ca.crlPem() });
      if (nextTrust.version !== trust?.version) live.slices.setGlobal(nextTrust);
      trust = nextTrust;
      revokedSerials = new Set(ca.revokedSerials());
    };
    const onChange = async (change: SourceChange): Promise<void> => {
      const started = performance.now();
      const update = live.apply(change);
      const problems = [...change.problems.map(formatProblem), ...live.problems().map(formatProblem)];
      // Problems are logged when they appear, not again with every change.
      const fresh = problems.filter((p) => !shownProblems.has(p));
      for (const p of fresh.slice(0, 50)) logger.warn({ problem: p }, 'manifest problem');
      if (fresh.length > 50) logger.warn({ more: fresh.length - 50 }, 'more manifest problems not shown');
      shownProblems = new Set(problems);
      manifestProblems = problems.slice(0, 200);
      await refreshTrust();
      state = live.state;
      server.publish();
      routeStatus(live.state);
      const ns = live.namespaces();
      if (ns.join('\0') !== namespaces) {
        namespaces = ns.join('\0');
        void publisher?.publish(ns, trustBundlePem);
      }
      const counts = live.counts();
      const summary = { objects: update.objects, workloads: counts.workloads, services: counts.resolvedServices, generation: update.generation, problems: problems.length, ms: Math.round(performance.now() - started) };
      if (loaded) logger.debug(summary, 'mesh change applied');
      else logger.info(summary, 'mesh loaded');
      loaded = true;
    };
    const source = deps.source ?? await makeSource(config, kube, logger);
    // Route status goes back through the API's status subresource; files have nowhere to keep it.
    const statusWriter = kube !== undefined && isRouteObjectCache(source)
      ? new RouteStatusWriter({ objects: source, put: kubernetesStatusPut(kube), log: logger })
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
    const enqueue = (change: SourceChange): void => {
      // One change at a time, in order; a failure is logged and the model keeps what it had.
      queue = queue.then(() => onChange(change)).catch((err: unknown) => {
        logger.error({ err: describeError(err) }, 'could not apply a mesh change; keeping the last good state');
      });
    };
    server.serve(live.slices);
    await (source.startChanges === undefined ? source.start(snapshotChanges(enqueue)) : source.startChanges(enqueue));
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
        desired: (node) => [...live.slices.resources(node).values()],
        rejected: (node) => server.rejectedVersions(node),
        manifestProblems: () => manifestProblems,
        revokedSerials: () => ca.revokedSerials(),
        logger,
      }, revocations);
      cleanups.push(() => dashboard.close());
      dashboardPort = dashboard.address.port;
    }
    let adminPort: number | undefined;
    if (config.admin !== undefined) {
      const admin = await startControlAdmin({ host: config.admin.address.host, port: config.admin.address.port, tokenFile: config.admin.tokenFile }, {
        revocations,
        logger,
        revokedSerials: () => ca.revokedSerials(),
        disconnect: (node, why) => server.disconnect(node, why),
        // Through the change queue, so the CRL goes out in order with the mesh changes.
        revokeSerials: (serials) => {
          const done = queue.then(async () => {
            for (const s of serials) await ca.revoke(s);
            await refreshTrust();
            server.publish();
          });
          queue = done.catch(() => undefined);
          return done;
        },
      });
      cleanups.push(() => admin.close());
      adminPort = admin.address.port;
    }
    ready = loaded;
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
      adminPort,
      server,
      trustBundlePem,
      close: () => (closing ??= closeAll()),
    };
  } catch (err: unknown) {
    await closeAll();
    throw err;
  }
}

/** Sources that keep the objects they watched (the Kubernetes source), so status can be written against them. */
function isRouteObjectCache(source: ConfigSource): source is ConfigSource & RouteObjectCache {
  return typeof (source as Partial<RouteObjectCache>).object === 'function';
}
