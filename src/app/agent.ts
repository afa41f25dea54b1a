// The node agent, wired: capture (redirect), config and certificates (a MeshFeed), the
// proxy worker threads, and the metrics / readiness / admin endpoints. This file owns the
// lifecycle: start in order, become ready, drain on SIGTERM, leave the node as found.

import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { networkInterfaces } from 'node:os';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { systemClock } from '../core/clock.ts';
import { describeError } from '../core/errors.ts';
import { findCgroup2Mount } from '../core/cgroup2.ts';
import type { AgentConfig, AgentFairness } from '../config/agent.ts';
import { fairnessLimits, type FairnessLimits } from '../proxy/resilience/source-fairness.ts';
import { CertificateStore, RevocationList, TrustBundle, parseSpiffeId, systemScheduler, type SpiffeId } from '../identity/index.ts';
import type { MeshContent } from '../model/resolve.ts';
import { KernelSpliceProgram, RedirectErrors, type Redirector } from '../redirect/index.ts';
import { startCapture, type RunningMode } from './capture-mode.ts';
import { CertificateMetrics, HttpEndpoint, collectProcessMetrics, readinessRoutes, startAdminServer, type Routes } from '../telemetry/index.ts';
import { LocalFeed } from './local-feed.ts';
import { controlFeed } from './control-feed.ts';
import type { MeshFeed, NodeConfig } from './mesh-feed.ts';
import { ProxyWorkers } from './proxy-workers.ts';
import { fdBudget, perWorker, sharedProxyCounters } from './fd-budget.ts';
import { agentReclaimer } from './memory-reclaim.ts';
import { bucketMemory, DEFAULT_BUCKET_SLOTS } from '../proxy/resilience/token-bucket.ts';
import { counterMemory } from '../proxy/resilience/concurrency-limit.ts';
import { DEFAULT_OUTLIER_SLOTS, outlierMemory } from '../proxy/resilience/outlier-ejection.ts';
import { raiseNofileLimit } from './nofile.ts';
import type { CredentialMaterial } from './credentials.ts';
import { EnrollmentReconciler, type CaptureRequest } from './enrollment.ts';
import { InboundSockets } from './inbound-sockets.ts';
import { inboundExemptSources } from './inbound-exempt.ts';
import { ConfigSourceMetric, LastGoodConfig } from './last-good.ts';
import { ownCgroupPath, PodCgroupLocator } from './pod-cgroups.ts';

export interface RunningAgent {
  /** Drains and stops everything; resolves when the node is left as configured (fail-open or fail-closed). */
  shutdown(): Promise<void>;
  /** Rejects if the agent cannot serve at all (its proxy workers could not listen); never resolves. */
  readonly failed: Promise<never>;
}

/** The agent process's own cgroup v2 directory (SO_ORIGINAL_DST is answered there in eBPF mode). */
export function ownCgroup(): string {
  return join(findCgroup2Mount() ?? '/sys/fs/cgroup', ownCgroupPath());
}

/**
 * Where SO_ORIGINAL_DST is answered: the agent's own pod cgroup when it knows its pod UID (a
 * cgroup namespace may hide its real path), else its process cgroup.
 */
function agentCgroup(config: AgentConfig, locator: PodCgroupLocator): string {
  if (config.ownPodUid === undefined) return ownCgroup();
  return locator.locate({ namespace: 'weft-system', name: `agent on ${config.node}`, uid: config.ownPodUid });
}

export async function runAgent(config: AgentConfig, feed?: MeshFeed): Promise<RunningAgent> {
  const logger: Logger = pino({ level: config.logLevel, base: { node: config.node } });
  const clock = systemClock;
  const registry = new Registry();
  collectProcessMetrics(registry, 'weft_agent_');
  mkdirSync(config.stateDir, { recursive: true });

  const meshFeed: MeshFeed = feed ?? (config.source.kind === 'manifests'
    ? new LocalFeed({ node: config.node, manifestsDir: config.source.dir, stateDir: config.stateDir, trustDomain: config.trustDomain }, logger, clock)
    : controlFeed(config, logger, registry));

  const cgroupMount = findCgroup2Mount() ?? '/sys/fs/cgroup';
  const locator = new PodCgroupLocator({ mount: cgroupMount, ownCgroup: ownCgroupPath(), template: config.podCgroup });
  let redirector: Redirector | undefined;
  const ownerFile = join(config.stateDir, 'capture-owner');
  let captureMode: RunningMode = 'off';
  if (config.mode !== 'off') {
    ({ redirector, mode: captureMode } = await startCapture(config.mode, {
      node: config.pinName, agentAddress: config.captureAddress, outboundPort: config.ports.outbound,
      excludePorts: [...config.excludePorts], excludeCidrs: [...config.excludeCidrs], agentCgroup: agentCgroup(config, locator),
      podInterface: config.podInterface,
      // Leftovers are swept only in this node's cgroup tree (the simulator nests nodes in one).
      nodeCgroupRoot: locator.roots[0],
      // Inbound capture: one socket per pod and worker (eBPF), or a redirect to 15006 (iptables).
      // The node's own addresses are exempt (eBPF): kubelet probes and the agent's connections to pods.
      inboundSlots: config.workers, inboundPort: config.ports.inboundPlain, excludeInboundPorts: [...config.excludeInboundPorts],
      inboundExemptSources: inboundExemptSources([config.captureAddress, config.tunnelAddress], networkInterfaces()),
    }, { log: logger, bpftool: config.bpftool }, registry));
    // The newest agent of a node owns its capture: an older one draining beside it (a rolling
    // restart) must leave capture in place when it stops.
    writeFileSync(ownerFile, `${process.pid}\n`);
    logger.info({ mode: captureMode, adopted: redirector?.enrolled().length ?? 0 }, 'capture ready');
  }

  allowListenerHandover(logger);
  // Descriptors: the hard limit, with a reserve kept from the proxy for this thread's own needs.
  const budget = fdBudget(raiseNofileLimit(logger), config.maxFdsPerSource);
  logger.info({ ...budget }, 'file descriptor budget');
  if (config.maxFdsPerSource !== undefined && budget.perSourceFds < config.maxFdsPerSource) {
    logger.warn({ asked: config.maxFdsPerSource, perSourceFds: budget.perSourceFds, nofile: budget.limit }, '--max-fds-per-source is more than all connections may hold under RLIMIT_NOFILE: capped');
  }
  const shared = sharedProxyCounters();
  const kernelSplice = await startKernelSplice(config, logger);
  const workers = new ProxyWorkers(config.workers, {
    node: config.node, captureAddress: config.captureAddress, tunnelAddress: config.tunnelAddress,
    ports: config.ports, clusterDomain: 'cluster.local', cluster: 'Kubernetes', l7: config.l7, sniffMs: config.sniffMs,
    maxRequestsPerSource: perWorker(config.maxRequestsPerSource, config.workers),
    ...(config.fairness === undefined ? {} : { fairness: workerFairness(config.fairness, config.workers) }),
    ...(kernelSplice === undefined ? {} : { kernelSplice: kernelSplice.pins }),
    limits: { budget, workers: config.workers, shared, buckets: bucketMemory(DEFAULT_BUCKET_SLOTS), pools: counterMemory(DEFAULT_BUCKET_SLOTS), outliers: outlierMemory(DEFAULT_OUTLIER_SLOTS) },
  }, logger, config.logLevel);
  workers.start();
  const inboundSockets = redirector === undefined ? undefined : new InboundSockets(redirector, workers, logger);
  workers.onRestart((slot) => void inboundSockets?.workerRestarted(slot));
  const reclaimer = agentReclaimer(workers, shared, logger, registry);

  const certificates = new CertificateStore({ issuer: meshFeed.issuer, clock, scheduler: systemScheduler });
  let current: NodeConfig | undefined;
  // Every accepted config and its certificates go to disk; one saved before a restart is
  // served while the control plane does not answer (savedAt says so until it does).
  const lastGood = new LastGoodConfig(config.stateDir, logger);
  const configSource = new ConfigSourceMetric(registry);
  let servingSavedFrom: number | undefined;
  const pushCredentials = (): void => {
    if (current === undefined) return;
    const certs: CredentialMaterial[] = [];
    for (const id of certificates.snapshot()) {
      const c = certificates.get(id.identity);
      if (c !== undefined) certs.push({ identity: c.identity.uri, serial: c.serial, keyPem: c.keyPem, certPem: c.certPem, chainPem: c.chainPem });
    }
    workers.setCredentials({ trustBundlePem: current.trustBundlePem, crlPem: current.crlPem, certificates: certs });
    if (servingSavedFrom === undefined) lastGood.save(current, certs);
  };
  const certificateMetrics = new CertificateMetrics(registry);
  certificates.subscribe((event) => {
    certificateMetrics.observe(event.type === 'issued'
      ? { type: 'issued', identity: event.identity.uri, notAfter: event.certificate.notAfter }
      : { type: event.type, identity: event.identity.uri });
    if (event.type === 'failed') logger.warn({ identity: event.identity.uri, stillValid: event.stillValid, err: describeError(event.error) }, 'certificate request failed');
    pushCredentials();
  });

  const enrollment = new EnrollmentReconciler(redirector, logger, inboundSockets === undefined ? undefined : {
    enrolled: (podId) => void inboundSockets.podEnrolled(podId),
    released: (podId) => inboundSockets.podReleased(podId),
  });
  const applyConfig = (next: NodeConfig, saved?: number): void => {
    const crlChanged = next.crlPem !== current?.crlPem;
    current = next;
    servingSavedFrom = saved;
    configSource.set(saved === undefined ? (config.source.kind === 'control' ? 'control' : 'manifests') : 'disk');
    workers.setMesh(next.content);
    const local = localWorkloads(next.content, config.node);
    const ids = new Map<string, SpiffeId>();
    for (const w of local) ids.set(w.identity, parseSpiffeId(w.identity));
    certificates.setIdentities(ids.values());
    pushCredentials();
    if (crlChanged) replaceRevokedCertificates(certificates, next, logger);
    // A pod with IPv6 addresses goes in too, so that capture refuses it loudly (IPv4 only).
    enrollment.reconcile(local.flatMap((w): CaptureRequest[] => {
      if (w.ip === undefined && w.ipv6 === undefined) return [];
      const pod = { namespace: w.namespace, name: w.name, uid: w.uid };
      // iptables matches the pod's IP and never reads the cgroup: an unknown one is no reason to wait.
      const cgroupPath = redirector?.mode === 'iptables' ? () => tryLocate(locator, pod) ?? cgroupMount : () => locator.locate(pod);
      return [{ podId: w.key, ip: w.ip ?? '', cgroupPath, ...(w.ipv6 === undefined ? {} : { ipv6: w.ipv6 }) }];
    }));
    logger.info({ version: next.version, workloads: local.length, services: next.content.services.length }, 'config applied');
  };

  // Ready: config applied, every local identity has a certificate, every enrolled pod captured, workers
  // listening. Only then is a pod's first request sure to go through the mesh.
  const configured = () => {
    if (current === undefined) return { ready: false, reason: 'no config from the control plane yet' };
    const missing = certificates.snapshot().filter((c) => certificates.get(c.identity) === undefined).map((c) => c.identity);
    if (missing.length > 0) return { ready: false, reason: `waiting for certificates: ${missing.join(', ')}` };
    if (servingSavedFrom !== undefined) {
      return { ready: true, note: `serving the last good config saved ${new Date(servingSavedFrom).toISOString()} (${lastGood.path}): the control plane has not answered since this agent started` };
    }
    return { ready: true };
  };
  const readiness = () => {
    // A newer agent took this node's capture over (a rolling restart): readiness is its to
    // answer, and on a shared hostNetwork port this one must not answer for it.
    const owner = captureMode === 'off' ? undefined : readOwner(ownerFile);
    if (owner !== undefined && owner !== process.pid) return { ready: false, reason: `a newer agent (pid ${owner}) owns this node's capture; this one is on its way out` };
    const c = configured();
    if (!c.ready) return c;
    if (!enrollment.settled) return { ready: false, reason: 'capturing the node\'s pods' };
    if (workers.listening < config.workers) return { ready: false, reason: `${workers.listening}/${config.workers} proxy workers listening` };
    return c; // ready, with its note (serving the last good config from disk) if any
  };
  // The agent's own metrics plus every worker's, summed, on one scrape.
  const metricsHandler: Routes = {
    '/metrics': async (_req, res) => {
      const { registry: fromWorkers } = await workers.metrics();
      const body = await Registry.merge([registry, fromWorkers]).metrics();
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(body);
    },
  };
  const endpoints: HttpEndpoint[] = [
    await HttpEndpoint.start({ name: 'metrics', host: '0.0.0.0', port: config.ports.metrics, routes: metricsHandler }),
    await HttpEndpoint.start({ name: 'readiness', host: '0.0.0.0', port: config.ports.ready, routes: readinessRoutes(readiness) }),
    await startAdminServer({
      port: config.ports.admin,
      routes: {
        '/config_dump': async (_req, res) => {
          const { stats } = await workers.metrics();
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(`${JSON.stringify({
            node: config.node, version: current?.version, feed: meshFeed.describe(),
            capture: { mode: captureMode, requested: config.mode, enrolled: redirector?.enrolled() ?? [], refused: enrollment.refused() },
            certificates: certificates.snapshot(), workers: stats, mesh: current?.content,
          }, null, 2)}\n`);
        },
      },
    }),
  ];

  const saved = lastGood.load();
  if (saved !== undefined) {
    applyConfig(saved.config, saved.savedAt);
    const adopted = certificates.adopt(saved.certificates);
    pushCredentials();
    logger.warn({ version: saved.config.version, savedAt: new Date(saved.savedAt).toISOString(), certificates: adopted },
      'serving the last good config from disk until the control plane answers');
  }
  await meshFeed.start((next) => applyConfig(next));
  let fail: (err: unknown) => void = () => undefined;
  const failed = new Promise<never>((_resolve, reject) => { fail = reject; });
  failed.catch(() => undefined); // the CLI observes it; nothing else has to
  let listening: Promise<void> | undefined;
  const readyCheck = setInterval(() => {
    // The listeners open only with config and certificates in place: on a rolling restart the
    // kernel hands every SO_REUSEPORT listener its share of new connections at once, and one
    // that knew no pods yet would refuse them.
    if (listening === undefined && configured().ready) {
      listening = workers.listen().then(
        () => logger.info({ workers: config.workers }, 'proxy workers listening'),
        (err: unknown) => {
          logger.fatal({ err: describeError(err) }, 'proxy workers could not listen');
          fail(err);
        },
      );
    }
    if (!readiness().ready) return;
    clearInterval(readyCheck);
    if (config.readyFile !== undefined) writeFileSync(config.readyFile, `${process.pid}\n`);
    logger.info('agent ready');
  }, 50);

  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      // The drain deadline counts from SIGTERM, as the kubelet's grace period does: the steps
      // before the drain (in-flight enrolments, capture release) take seconds on a busy node,
      // and a drain started after them would run past the SIGKILL.
      const began = Date.now();
      clearInterval(readyCheck);
      reclaimer.stop();
      await enrollment.idle();
      inboundSockets?.close();
      await inboundSockets?.idle();
      const handedOver = readOwner(ownerFile) !== process.pid;
      const keepCapture = config.failClosed || handedOver;
      if (handedOver) logger.info('a newer agent owns capture on this node; leaving it in place');
      // Fail-open with nobody to hand over to: release capture before draining, so new
      // connections go their own way instead of meeting a closed listener. Otherwise the
      // listeners drain while capture keeps pointing at this node's agent(s).
      if (!keepCapture) await redirector?.close({ keepCapture: false });
      const drainMs = Math.max(0, config.drainMs - (Date.now() - began));
      logger.info({ drainMs, sinceSigtermMs: Date.now() - began }, 'draining');
      await workers.drain(drainMs);
      kernelSplice?.close();
      if (keepCapture) await redirector?.close({ keepCapture: true });
      certificates.close();
      await meshFeed.close();
      await Promise.all(endpoints.map((e) => e.close()));
      logger.info({ failClosed: config.failClosed }, 'agent stopped');
      lastGood.flush();
      logger.flush();
    })().catch((err: unknown) => {
      logger.error({ err: describeError(err) }, 'shutdown failed');
    });
    return stopping;
  };
  return { shutdown, failed };
}

/** The same-node kernel splice, or undefined (off, or this kernel cannot: one warning names why). */
async function startKernelSplice(config: AgentConfig, logger: Logger): Promise<KernelSpliceProgram | undefined> {
  if (config.kernelSplice === 'off') return undefined;
  try {
    return await KernelSpliceProgram.start(config.pinName, { bpftool: config.bpftool, log: logger });
  } catch (err: unknown) {
    logger.warn({ code: RedirectErrors.KERNEL_SPLICE_UNAVAILABLE, err: describeError(err) }, 'same-node connections are spliced in user space');
    return undefined;
  }
}

/**
 * With SO_REUSEPORT, connections still in a closing listener's accept queue are reset unless
 * the kernel may migrate them to another listener of the group (net.ipv4.tcp_migrate_req,
 * Linux 5.14, per network namespace). A rolling restart closes the old agent's listeners.
 */
function allowListenerHandover(logger: Logger): void {
  const knob = '/proc/sys/net/ipv4/tcp_migrate_req';
  try {
    if (readFileSync(knob, 'utf8').trim() !== '1') writeFileSync(knob, '1\n');
  } catch (err: unknown) {
    logger.warn({ knob, err: describeError(err) }, 'cannot let the kernel hand queued connections to a restarted agent (Linux 5.14+): a rolling restart may reset a few connections');
  }
}

function tryLocate(locator: PodCgroupLocator, pod: Parameters<PodCgroupLocator['locate']>[0]): string | undefined {
  try {
    return locator.locate(pod);
  } catch {
    return undefined;
  }
}

function readOwner(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
}

function localWorkloads(content: MeshContent, node: string) {
  return content.workloads.filter((w) => w.node === node && w.enrolled);
}

/** Our own certificates a new CRL revokes are replaced (with new keys) at once, not at half-life. */
function replaceRevokedCertificates(certificates: CertificateStore, next: NodeConfig, logger: Logger): void {
  if (next.crlPem === undefined) return;
  let crl: RevocationList;
  try {
    crl = RevocationList.parse(next.crlPem, TrustBundle.parse(next.trustBundlePem));
  } catch (err: unknown) {
    logger.error({ err: describeError(err) }, 'the CRL from the control plane does not verify; own certificates not checked against it');
    return;
  }
  const replaced = certificates.replaceRevoked((c) => crl.revokes(new X509Certificate(c.certPem)));
  if (replaced.length > 0) logger.warn({ identities: replaced.map((i) => i.uri) }, 'own certificates revoked: asking for new ones');
}

/** The agent's fairness flags as one worker's limits: rates and queues split over the workers. */
export function workerFairness(f: AgentFairness, workers: number): FairnessLimits {
  return fairnessLimits({
    highWater: f.highWater, lowWater: f.lowWater, minRate: f.minRate / Math.max(1, workers),
    maxWaiting: f.maxWaiting === 0 ? 0 : perWorker(f.maxWaiting, workers),
  });
}
