// One thread's data plane: the outbound (15001), inbound tunnel (15008) and inbound
// plaintext (15006) listeners, the HTTP layer behind the outbound and tunnel ones, the
// upstream connector and tunnel pool, endpoint health, connection and request telemetry,
// reading the mesh state and credentials the agent hands it. Every proxy worker thread runs
// one (proxy-worker.ts); listeners share ports with SO_REUSEPORT.

import type { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import { authorize } from '../model/authorize.ts';
import { recheckJudge } from '../proxy/policy-recheck.ts';
import { DryRunReporter, reportingDryRun } from '../telemetry/dry-run.ts';
import { decideAtVip, spreadDraws } from '../model/route-match.ts';
import { meshStateFromContent, type MeshState } from '../model/state.ts';
import type { MeshContent } from '../model/resolve.ts';
import {
  ConnectionCaps, ConnectionRegistry, InboundPlain, InboundTunnel, OutboundListener, TunnelPool, UpstreamConnector, UpstreamHealth, workloadName,
  type ConnectionGate, type ConnectionRateGate, type KernelSplicer, type MeshView, type OriginalDestinationReader, type SocketAddress, type SocketCloser, type SpliceOptions,
} from '../proxy/index.ts';
import {
  HttpLayer, admitRateLimited, circuitBreakerStep, fairnessStep, faultStep, protocolSelector, rateLimitStep, requestAuthorizationStep, retryStep, sourceShareStep, type RateLimitStepDeps,
} from '../proxy/http/index.ts';
import { DEFAULT_RETRY_BUDGET, RetryBudgets } from '../proxy/resilience/retry-budget.ts';
import { SourceShares } from '../proxy/resilience/source-shares.ts';
import { SourceFairness, type FairnessLimits } from '../proxy/resilience/source-fairness.ts';
import { DEFAULT_OUTLIER_SLOTS, OutlierEjections, OutlierTable, outlierMemory } from '../proxy/resilience/outlier-ejection.ts';
import { ConcurrencyLimits, counterMemory } from '../proxy/resilience/concurrency-limit.ts';
import { BucketTable, DEFAULT_BUCKET_SLOTS, bucketMemory } from '../proxy/resilience/token-bucket.ts';
import { connectionRateVerdict } from '../proxy/resilience/rate-limit-decision.ts';
import { rateLimitApplies } from '../model/traffic-policy-slice.ts';
import type { DestinationPolicyObject, FaultInjectionObject, RateLimitPolicyObject } from '../model/traffic-policy-types.ts';
import type { Workload } from '../model/types.ts';
import {
  ConnectionTelemetry, OverloadTelemetry, RequestTelemetry, composeObservers, composeRequestObservers, type LiveWorkload, type Observer, type RequestObserverLike,
} from '../telemetry/index.ts';
import { perWorker, type FdBudget } from './fd-budget.ts';
import { WorkloadCredentials, type CredentialSet } from './credentials.ts';
import type { AgentPorts } from '../config/agent.ts';
import type { KernelSplicePins } from '../redirect/index.ts';

export interface ProxyRuntimeOptions {
  readonly node: string;
  /** Where captured outbound connections arrive (the node's address as its pods see it). */
  readonly captureAddress: string;
  /** Where peer agents' tunnels arrive. */
  readonly tunnelAddress: string;
  readonly ports: AgentPorts;
  readonly clusterDomain: string;
  readonly cluster: string;
  /** Serve HTTP request by request on the outbound side. Default true. */
  readonly l7?: boolean;
  /** Sniff bound for undeclared ports, ms. Default 100. */
  readonly sniffMs?: number;
  /** HTTP requests of one source pod this worker serves at once; more wait their turn. Default 512. */
  readonly maxRequestsPerSource?: number;
  /** The kernel splice's pinned maps, when the agent loaded it (absent: user-space splice only). */
  readonly kernelSplice?: KernelSplicePins;
  /** Holding back a source that saturates this worker's event loop; off when absent. */
  readonly fairness?: FairnessLimits;
  /** Connection and handshake caps from the agent's descriptor budget; none when absent (tests). */
  readonly limits?: ProxyLimits;
}

/** The RateLimitPolicies that apply to a workload, for the destination side's rate-limit step. */
function rateLimitsFor(state: MeshState, w: Workload): readonly RateLimitPolicyObject[] {
  if (state.trafficPolicies.length === 0) return [];
  return state.trafficPolicies.filter((p): p is RateLimitPolicyObject => p.kind === 'RateLimitPolicy' && rateLimitApplies(state, p, w));
}

/** The DestinationPolicy of a Service (the first by name, as vet warns), for the caller side's circuit breaker. */
function destinationPolicyFor(state: MeshState, serviceKey: string): DestinationPolicyObject | undefined {
  if (state.trafficPolicies.length === 0) return undefined;
  return state.trafficPolicies.find((p): p is DestinationPolicyObject => p.kind === 'DestinationPolicy' && `${p.namespace}/${p.targetRef.name}` === serviceKey);
}

/** A FaultInjection by `namespace/name`, for the caller side's fault step. */
function faultInjection(state: MeshState, key: string): FaultInjectionObject | undefined {
  if (state.trafficPolicies.length === 0) return undefined;
  return state.trafficPolicies.find((p): p is FaultInjectionObject => p.kind === 'FaultInjection' && `${p.namespace}/${p.name}` === key);
}

/** The caps every worker applies, and the counters they share. */
export interface ProxyLimits {
  readonly budget: FdBudget;
  readonly workers: number;
  /** Over a SharedArrayBuffer: [0] descriptors held by connections, [1] pending handshakes, [2] sources held back, all workers. */
  readonly shared: Int32Array;
  /** The token buckets of every RateLimitPolicy and retry budget reserve (bucketMemory), one table for all workers. */
  readonly buckets?: SharedArrayBuffer;
  /** DestinationPolicy connection-pool counters (counterMemory), one set for all workers. */
  readonly pools?: SharedArrayBuffer;
  /** DestinationPolicy outlierDetection's endpoint records (outlierMemory), one table for all workers. */
  readonly outliers?: SharedArrayBuffer;
}

export interface ProxyRuntimeDeps {
  readonly logger: Logger;
  readonly registry: Registry;
  readonly clock: Clock;
  readonly originalDestination: (socket: Socket) => SocketAddress;
  /** Admits or refuses connections at accept, on every listener (per-source caps). */
  readonly gate?: ConnectionGate;
  /** How spliced sockets close (SO_LINGER 0 while bytes are in flight). */
  readonly closer?: SocketCloser;
  /** Traces connections beside the metrics (only when OTEL_* asks for traces). */
  readonly tracer?: Observer;
  /** Traces HTTP requests beside the request metrics (only when OTEL_* asks for traces). */
  readonly requestTracer?: RequestObserverLike;
  /** Same-node kernel splice (absent: every connection is spliced in user space). */
  readonly kernel?: KernelSplicer;
}

export class ProxyRuntime {
  /** Every open connection of this runtime's listeners (policy re-checks and caps read it). */
  readonly connections = new ConnectionRegistry();
  readonly #credentials: WorkloadCredentials;
  #state: MeshState;
  readonly #outbound: OutboundListener;
  readonly #tunnel: InboundTunnel;
  readonly #plain: InboundPlain;
  readonly #pool: TunnelPool;
  readonly #http: HttpLayer | undefined;
  readonly #outliers: OutlierEjections;
  readonly #fairness: SourceFairness | undefined;
  /** Metric label-set maps that drop the series of workloads that are gone. */
  readonly #series: readonly { retain(live: LiveWorkload): number }[];
  #closed: Promise<void> | undefined;

  constructor(options: ProxyRuntimeOptions, deps: ProxyRuntimeDeps) {
    this.#credentials = new WorkloadCredentials(deps.clock);
    this.#state = meshStateFromContent({ trustDomain: 'cluster.local', workloads: [], services: [], policies: [], nodes: [] });
    this.#outliers = new OutlierEjections(deps.clock, new OutlierTable(options.limits?.outliers ?? outlierMemory(DEFAULT_OUTLIER_SLOTS)));
    // The listeners read the current state through this view, so a config swap is one assignment.
    const mesh: MeshView = {
      workloadByIp: (ip) => this.#state.workloadByIp(ip),
      serviceByVip: (ip, port) => this.#state.serviceByVip(ip, port),
      endpoints: (key, port) => this.#state.endpoints(key, port),
      nodeAddress: (node) => this.#state.nodeAddress(node),
      mtlsMode: (workload) => this.#state.mtlsModeFor(workload),
    };
    const dryRun = new DryRunReporter({ registry: deps.registry, logger: deps.logger, clock: deps.clock });
    const authorizer = reportingDryRun((req: Parameters<typeof authorize>[1]) => authorize(this.#state, req), dryRun);
    const overflowed = new Counter({
      name: 'weft_request_overflow_total', help: 'Requests refused at once (503 UO) because the DestinationPolicy connection pool of their Service was full.',
      labelNames: ['destination_service'], registers: [deps.registry],
    });
    const rateLimited = new Counter({
      name: 'weft_rate_limited_requests_total', help: 'Requests a RateLimitPolicy refused (mode="enforce") or would have refused (mode="shadow"), by policy.',
      labelNames: ['policy', 'mode'], registers: [deps.registry],
    });
    const retried = new Counter({
      name: 'weft_request_retries_total', help: 'Retries sent by an HTTPRoute retry (GEP-1731), by the destination Service.',
      labelNames: ['destination_service'], registers: [deps.registry],
    });
    const budgetExhausted = new Counter({
      name: 'weft_retry_budget_exhausted_total', help: 'Retries an HTTPRoute asked for that the destination Service\'s retry budget refused.',
      labelNames: ['destination_service'], registers: [deps.registry],
    });
    const faults = new Counter({
      name: 'weft_fault_injected_total', help: 'Requests a FaultInjection delayed (kind="delay") or aborted (kind="abort"), by FaultInjection.',
      labelNames: ['fault', 'kind'], registers: [deps.registry],
    });
    const mirrors = new Counter({
      name: 'weft_request_mirrors_total', help: 'HTTPRoute RequestMirror copies: outcome="sent", or "skipped_body" when the request body was over the 64 KiB kept for copies, by mirror Service.',
      labelNames: ['destination_service', 'outcome'], registers: [deps.registry],
    });
    // One table of token buckets for every worker: RateLimitPolicies' and the retry budgets' reserves.
    const buckets = new BucketTable(deps.clock, options.limits?.buckets ?? bucketMemory(DEFAULT_BUCKET_SLOTS));
    const budgets = new RetryBudgets(deps.clock, DEFAULT_RETRY_BUDGET, undefined, buckets);
    const weightDraws = spreadDraws();
    const ejections = new Counter({
      name: 'weft_outlier_ejections_total', help: 'Endpoints a DestinationPolicy outlierDetection ejected (consecutive 5xx), by destination Service.',
      labelNames: ['destination_service'], registers: [deps.registry],
    });
    const ejectionsRefused = new Counter({
      name: 'weft_outlier_ejections_refused_total', help: 'Ejections outlierDetection would have made but maxEjectionPercent of the Service\'s endpoints were already out, by destination Service.',
      labelNames: ['destination_service'], registers: [deps.registry],
    });
    const sourceWaits = new Counter({
      name: 'weft_source_request_waits_total', help: 'HTTP requests that waited for their source pod\'s share of the agent (--max-requests-per-source), by source workload.',
      labelNames: ['source_workload_namespace', 'source_workload'], registers: [deps.registry],
    });
    const throttled = new Counter({
      name: 'weft_source_throttled_total', registers: [deps.registry],
      help: 'Connections and requests of a source pod held back because it was saturating a proxy worker (outcome="waited": served after a wait; "refused": too many already waiting, reset or 503 OL), by source workload',
      labelNames: ['source_workload_namespace', 'source_workload', 'kind', 'outcome'],
    });
    const holds = new Counter({
      name: 'weft_source_throttle_cuts_total', registers: [deps.registry],
      help: 'Times a proxy worker near saturation halved the admission rate of the source pod asking for most of its work, by source workload',
      labelNames: ['source_workload_namespace', 'source_workload'],
    });
    const workloadLabels = (ip: string): { source_workload_namespace: string; source_workload: string } => {
      const w = this.#state.workloadByIp(ip);
      return { source_workload_namespace: w?.namespace ?? 'unknown', source_workload: w === undefined ? 'unknown' : workloadName(w.name) };
    };
    let elu = performance.eventLoopUtilization();
    this.#fairness = options.fairness === undefined ? undefined : new SourceFairness(options.fairness, {
      now: () => deps.clock.monotonic(),
      ...(options.limits === undefined ? {} : { shared: options.limits.shared }),
      utilization: () => {
        const next = performance.eventLoopUtilization();
        const u = performance.eventLoopUtilization(next, elu).utilization;
        elu = next;
        return u;
      },
      observer: {
        held: (ip) => holds.inc(workloadLabels(ip)),
        admitted: (ip, kind, outcome) => throttled.inc({ ...workloadLabels(ip), kind, outcome }),
      },
    });
    const fairness = this.#fairness;
    if (fairness !== undefined) {
      new Gauge({
        name: 'weft_proxy_event_loop_utilization', registers: [deps.registry], aggregator: 'max',
        help: 'Share of the last fairness interval a proxy worker\'s event loop was busy (the busiest worker)',
        collect() {
          this.set(fairness.utilization);
        },
      });
      new Gauge({
        name: 'weft_source_throttled_sources', registers: [deps.registry], aggregator: 'sum',
        help: 'Source pods held back now because they were saturating a proxy worker (summed over workers)',
        collect() {
          this.set(fairness.held().size);
        },
      });
    }
    const metrics = new ConnectionTelemetry({ registry: deps.registry, logger: deps.logger, clock: deps.clock, cluster: options.cluster });
    const observer = deps.tracer === undefined ? metrics : composeObservers(metrics, deps.tracer);
    const reader: OriginalDestinationReader = deps.originalDestination;
    const splice: SpliceOptions = deps.closer === undefined ? {} : { closer: deps.closer };
    const limits = options.limits;
    const rateLimits: RateLimitStepDeps = {
      policiesFor: (w) => rateLimitsFor(this.#state, w),
      buckets,
      limited: (policy, shadow) => rateLimited.inc({ policy, mode: shadow ? 'shadow' : 'enforce' }),
    };
    const connectionsLimited = new Counter({
      name: 'weft_rate_limited_connections_total', help: 'New opaque connections a RateLimitPolicy\'s connections limit refused (mode="enforce") or would have refused (mode="shadow"), by policy.',
      labelNames: ['policy', 'mode'], registers: [deps.registry],
    });
    const connectionRate: ConnectionRateGate = (w) => {
      const policies = rateLimitsFor(this.#state, w);
      if (policies.length === 0) return undefined;
      const v = connectionRateVerdict(policies, rateLimits.buckets);
      if (v.policy !== undefined) connectionsLimited.inc({ policy: v.policy, mode: v.shadow === true ? 'shadow' : 'enforce' });
      return v.allowed ? undefined : `rate limited by RateLimitPolicy ${v.policy ?? ''} (new connections per second)`;
    };
    const poolLimits = new ConcurrencyLimits(limits?.pools ?? counterMemory(DEFAULT_BUCKET_SLOTS));
    const caps = limits === undefined ? undefined : new ConnectionCaps({
      globalFds: limits.budget.connectionFds, perSourceFds: perWorker(limits.budget.perSourceFds, limits.workers), shared: limits.shared,
    });
    const handshakeCaps = limits === undefined ? {} : {
      maxPending: limits.budget.maxPendingHandshakes, maxPendingPerSource: perWorker(limits.budget.maxPendingHandshakesPerSource, limits.workers),
    };
    const overload = new OverloadTelemetry({
      registry: deps.registry, logger: deps.logger, clock: deps.clock,
      ...(limits === undefined || caps === undefined ? {} : {
        limits: {
          connectionFds: () => ({ cap: caps.limits.globalFds, held: caps.heldGlobally, perSourceCap: limits.budget.perSourceFds, heldHere: caps.held }),
          handshakes: () => ({ cap: limits.budget.maxPendingHandshakes, perSourceCap: limits.budget.maxPendingHandshakesPerSource, pending: this.#tunnel.stats().pendingHandshakes }),
        },
      }),
    });
    caps?.observe(overload);
    const gate = deps.gate ?? caps;
    this.#pool = new TunnelPool({ credentials: this.#credentials, observer });
    // One connector for both paths: L4 splices and the HTTP layer's pooled connections.
    const upstream = new UpstreamConnector(this.#pool, { tunnelPort: options.ports.tunnel });
    const requestTelemetry = options.l7 === false ? undefined
      : new RequestTelemetry({ registry: deps.registry, logger: deps.logger, clock: deps.clock, cluster: options.cluster });
    this.#series = requestTelemetry === undefined ? [metrics.metrics] : [metrics.metrics, requestTelemetry.metrics];
    this.#http = requestTelemetry === undefined ? undefined : new HttpLayer({
      mesh: {
        workloadByIp: (ip) => this.#state.workloadByIp(ip),
        service: (key) => this.#state.service(key),
        endpoints: (key, port) => this.#state.endpoints(key, port),
        nodeAddress: (node) => this.#state.nodeAddress(node),
      },
      authorize: authorizer, connector: upstream, now: () => deps.clock.monotonic(),
      ...(deps.closer === undefined ? {} : { closer: deps.closer }),
      // Its pooled pod sockets take descriptors from the same caps as connections.
      ...(caps === undefined ? {} : { descriptors: caps }),
      // The destination side checks each tunnelled request against L7 AuthorizationPolicy rules,
      // then draws on its RateLimitPolicies' buckets.
      inboundSteps: [requestAuthorizationStep(authorizer), rateLimitStep(rateLimits)],
      // A request from a pod of this node to one of this node: the same rate limits, before it goes straight there.
      admitLocal: (x, pod) => admitRateLimited(rateLimits, x, pod),
      mirrored: (service, outcome) => mirrors.inc({ destination_service: service, outcome }),
      outliers: (key) => this.#outliers.for(key, destinationPolicyFor(this.#state, key)?.outlierDetection),
      poolFor: (key) => {
        const pool = destinationPolicyFor(this.#state, key)?.connectionPool;
        return pool === undefined || (pool.maxConnections === undefined && pool.maxRequestsPerConnection === undefined) ? undefined
          : { serviceKey: key, maxConnections: pool.maxConnections, maxRequestsPerConnection: pool.maxRequestsPerConnection };
      },
      connectionLimits: poolLimits,
      overflowed: (service) => overflowed.inc({ destination_service: service }),
      outlierEvent: (service, event) => (event === 'ejected' ? ejections : ejectionsRefused).inc({ destination_service: service }),
      // Between routing and forwarding: the routed Service's DestinationPolicy pool limits, the
      // route's FaultInjections, then its retries (so injected faults are never retried away).
      steps: [...(fairness === undefined ? [] : [fairnessStep(fairness)]), sourceShareStep({
        shares: new SourceShares(options.maxRequestsPerSource ?? 512),
        waited: (src) => sourceWaits.inc({ source_workload_namespace: src.namespace ?? 'unknown', source_workload: src.workload ?? 'unknown' }),
      }), circuitBreakerStep({
        policyFor: (key) => destinationPolicyFor(this.#state, key),
        limits: poolLimits,
        overflowed: (service) => overflowed.inc({ destination_service: service }),
      }), faultStep({
        fault: (key) => faultInjection(this.#state, key),
        injected: (fault, kind) => faults.inc({ fault, kind }),
      }), retryStep({
        budgetFor: (key) => budgets.for(key, destinationPolicyFor(this.#state, key)?.retryBudget ?? DEFAULT_RETRY_BUDGET),
        retried: (service) => retried.inc({ destination_service: service }),
        budgetExhausted: (service) => budgetExhausted.inc({ destination_service: service }),
      })],
      // Gateway API routes (HTTPRoute, GRPCRoute with a Service parent), decided over the current snapshot;
      // weighted backends from evenly spread draws per rule (this worker's).
      route: (at, request) => decideAtVip(this.#state, at, request, Math.random, weightDraws),
      observer: composeRequestObservers(
        requestTelemetry,
        ...(deps.requestTracer === undefined ? [] : [deps.requestTracer]),
      ),
    }, { nodeName: options.node, clusterDomain: options.clusterDomain });
    const http = this.#http;
    if (http !== undefined) {
      new Gauge({
        name: 'weft_http_sockets', registers: [deps.registry], aggregator: 'sum',
        help: 'Pod sockets the HTTP layer holds (HTTP connections are not in istio_tcp_connections_*); those its pools opened take a descriptor each from the connection caps',
        collect() {
          this.set(http.podSockets.held);
        },
      });
    }
    const kernelSpliced = new Counter({
      name: 'weft_kernel_splice_connections_total', registers: [deps.registry], labelNames: ['result'],
      help: 'Opaque connections between two pods of this node: result="kernel" when the kernel moved their bytes, else why user space did (buffered: bytes had already reached the proxy; refused: the kernel map refused the pair)',
    });
    const kernelPassing = new Counter({
      name: 'weft_kernel_splice_passing_total', registers: [deps.registry],
      help: 'Kernel-spliced connections of which the kernel keeps one direction for the proxy (a segment came while the two sockets were entering its map), which then moves that direction itself, in order',
    });
    const fair = fairness === undefined ? {} : { fairness };
    const kernel = deps.kernel === undefined ? {} : {
      kernel: deps.kernel, kernelSpliced: (result: string): void => kernelSpliced.inc({ result }), kernelPassing: (): void => kernelPassing.inc(),
    };
    this.#outbound = new OutboundListener({
      originalDestination: reader, mesh, authorize: authorizer, tunnels: this.#pool, upstream,
      health: new UpstreamHealth(deps.clock), observer, registry: this.connections, gate, splice, overload, connectionRate, ...kernel, ...fair,
      // tcp.maxConnections on opaque connections: the same counter the HTTP layer's upstream connections draw on.
      connectionPool: (key) => {
        const max = destinationPolicyFor(this.#state, key)?.connectionPool.maxConnections;
        if (max === undefined) return undefined;
        return poolLimits.tryAcquire(`connections|${key}`, max) ?? { overflow: `DestinationPolicy of ${key}: ${max} connections at most` };
      },
      ...(this.#http === undefined ? {} : { protocol: protocolSelector({ sniffMs: options.sniffMs }), http: this.#http }),
    }, {
      nodeName: options.node, host: options.captureAddress, port: options.ports.outbound, reusePort: true,
      tunnelPort: options.ports.tunnel, clusterDomain: options.clusterDomain,
    });
    this.#tunnel = new InboundTunnel({
      mesh, credentials: this.#credentials, authorize: authorizer, observer, registry: this.connections, gate, splice, overload, http: this.#http, connectionRate, ...fair,
      ...(limits === undefined ? {} : { sharedCounters: limits.shared }),
    }, {
      nodeName: options.node, host: options.tunnelAddress, port: options.ports.tunnel, reusePort: true, handshakes: handshakeCaps,
    });
    this.#plain = new InboundPlain({ originalDestination: reader, mesh, authorize: authorizer, observer, registry: this.connections, gate, splice, overload, connectionRate, ...fair }, {
      // Every address: iptables redirects inbound connections to the address they arrived on
      // (the pods' bridge, or the node's own from another node).
      nodeName: options.node, host: '0.0.0.0', port: options.ports.inboundPlain, reusePort: true,
    });
  }

  /**
   * Swaps in a new mesh state and judges every open connection again under it (live
   * re-check): those its AuthorizationPolicy or PeerAuthentication no longer allows are reset,
   * recorded with the policy that closed them. Metric series of workloads no longer in the
   * mesh go after one more scrape. The new state serves new connections at once; the closing
   * runs in batches (ConnectionRegistry.endWhere) and resolves how many connections it closed,
   * and why (each ending's detail names the policy, with how many it closed).
   */
  async setMesh(content: MeshContent): Promise<{ closed: number; reasons: ReadonlyMap<string, number> }> {
    const state = meshStateFromContent(content);
    this.#state = state;
    this.#outliers.retain((key) => destinationPolicyFor(state, key)?.outlierDetection !== undefined);
    const live = new Set(content.workloads.map((w) => `${w.namespace}/${workloadName(w.name)}`));
    for (const s of this.#series) s.retain((namespace, workload) => live.has(`${namespace}/${workload}`));
    const reasons = new Map<string, number>();
    const judge = recheckJudge(state);
    const closed = await this.connections.endWhere((c) => {
      const ending = judge(c);
      if (ending !== undefined) reasons.set(ending.detail, (reasons.get(ending.detail) ?? 0) + 1);
      return ending;
    });
    return { closed, reasons };
  }

  /** Serves a pod's inbound socket (eBPF capture), keyed by pod; replaces the previous one of that pod. */
  adoptInbound(pod: string, fd: number): Promise<void> {
    return this.#plain.adopt(pod, fd);
  }

  releaseInbound(pod: string): void {
    this.#plain.release(pod);
  }

  /**
   * Swaps in new credentials. A new CRL ends, at once, every tunnel session (both
   * directions) that used a certificate it revokes; returns how many ended.
   */
  setCredentials(set: CredentialSet): number {
    if (!this.#credentials.update(set)) return 0;
    const revoked = (c: X509Certificate): boolean => this.#credentials.isRevoked(c);
    return this.#tunnel.closeRevoked(revoked) + this.#pool.closeRevoked(revoked);
  }

  async listen(): Promise<void> {
    await Promise.all([this.#outbound.listen(), this.#tunnel.listen(), this.#plain.listen()]);
    this.#fairness?.start();
  }

  stats(): { tunnelSessions: number; tunnelStreams: number; pool: ReturnType<TunnelPool['stats']> } {
    const t = this.#tunnel.stats();
    return { tunnelSessions: t.sessions, tunnelStreams: t.streams, pool: this.#pool.stats() };
  }

  /** Stops accepting, lets open connections finish for up to `deadlineMs`, then closes the rest. Safe to call twice. */
  drain(deadlineMs: number): Promise<void> {
    this.#closed ??= (async () => {
      this.#fairness?.close();
      await Promise.all([this.#outbound.drain(deadlineMs), this.#tunnel.drain(deadlineMs), this.#plain.drain(deadlineMs)]);
      await this.#http?.close();
      await this.#pool.close();
    })();
    return this.#closed;
  }
}
