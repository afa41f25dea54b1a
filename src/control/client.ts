// The agent's side of the control channel. It obtains a node certificate with the bootstrap
// token, holds one DeltaResources stream over mTLS, applies each delta in two phases (bad
// resources are refused alone and named in the NACK; the rest apply), keeps serving its last
// good config while the control plane is away, and reconnects with capped exponential
// backoff and jitter, resyncing by sending the versions it holds. It also signs workload
// certificates through the control plane (a CertificateIssuer for src/identity's store).

import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, type Registry } from 'prom-client';
import { systemClock, type Clock } from '../core/clock.ts';
import { describeError, WeftError } from '../core/errors.ts';
import { applyDelta, type ResourceValidator } from './apply-update.ts';
import { ConfigDigest } from './config-digest.ts';
import { createNodeCsr } from './channel-certificates.ts';
import { CONTROL_SERVER_NAME, checkNodeName, controlIdentity, parseSubjectAltName } from './channel-identity.ts';
import { controlError, ControlErrors, type ControlErrorCode } from './errors.ts';
import { silentLogger, type ControlLogger } from './logger.ts';
import {
  AUTHORIZATION_METADATA, ControlStub, ERROR_CODE_METADATA,
  type BootstrapResponse, type ControlStubMethods, type DeltaRequest, type DeltaResponse,
} from './protocol.ts';
import type { ControlResource, ResourceRejection } from './resource.ts';
import { DEFAULT_RECONNECT_BACKOFF, reconnectDelay, systemScheduler, type ReconnectBackoff, type Scheduler, type TimerHandle } from './timing.ts';

export interface ControlClientOptions {
  /** `host:port` of the control plane. */
  readonly address: string;
  readonly node: string;
  readonly trustDomain: string;
  /**
   * CA certificates (PEM) to verify the control plane with at bootstrap; the bundle returned
   * then is used afterwards. A function is called at each bootstrap attempt, so a CA file
   * that appears after the agent started is picked up.
   */
  readonly trustBundlePem: string | (() => string | Promise<string>);
  /** The bootstrap token; called before each bootstrap so a rotated token file is re-read. */
  readonly bootstrapToken: () => string | Promise<string>;
  readonly validate: ResourceValidator;
  /** Called with the whole config after every update that changed it, and after the first sync. */
  readonly onConfig?: (snapshot: ReadonlyMap<string, ControlResource>, version: string) => void;
  readonly logger?: ControlLogger;
  readonly registry?: Registry;
  readonly scheduler?: Scheduler;
  readonly clock?: Clock;
  /** Jitter source in [0, 1); Math.random by default. */
  readonly random?: () => number;
  readonly backoff?: ReconnectBackoff;
  /** TLS server name and :authority; `weft-control` by default, whatever address is dialled. */
  readonly serverName?: string;
  /** The SPIFFE id the control plane's certificate must carry; derived from the trust domain by default. */
  readonly controlIdentity?: string;
  /** Deadline of unary calls (bootstrap, signing); 10 s by default. */
  readonly requestTimeoutMs?: number;
  /** HTTP/2 keepalive ping interval, to notice a control plane that vanished; 10 s by default. */
  readonly keepaliveMs?: number;
  /** Fraction of the node certificate's lifetime after which it is renewed; 0.5 by default. */
  readonly renewAtFraction?: number;
}

export interface ControlConfigDump {
  readonly node: string;
  readonly version: string;
  /** True once a first response was applied; the config may be stale while `connected` is false. */
  readonly synced: boolean;
  readonly connected: boolean;
  /** ISO time of the last applied response. */
  readonly lastUpdate: string | undefined;
  readonly lastError: string | undefined;
  readonly nodeCertificateNotAfter: string | undefined;
  readonly resources: readonly ControlResource[];
  /** Resources refused from the newest versions pushed; the previous good version (if any) is still served. */
  readonly rejected: readonly ResourceRejection[];
}

interface NodeCertificate {
  readonly keyPem: string;
  readonly certPem: string;
  readonly trustBundlePem: string;
  readonly notAfter: number;
  readonly renewAt: number;
}

interface ClientMetrics {
  readonly connected: Gauge;
  readonly updates: Counter<'result'>;
  readonly reconnects: Counter;
}

function clientMetrics(registry: Registry | undefined): ClientMetrics | undefined {
  if (registry === undefined) return undefined;
  const registers = [registry];
  return {
    connected: new Gauge({ name: 'weft_agent_control_connected', help: '1 while the config stream to the control plane is up', registers }),
    updates: new Counter({
      name: 'weft_agent_config_updates_total', help: 'Config responses handled, by result (ack or nack)',
      labelNames: ['result'] as const, registers,
    }),
    reconnects: new Counter({ name: 'weft_agent_control_reconnects_total', help: 'Attempts to (re)connect to the control plane', registers }),
  };
}

const REBOOTSTRAP_AFTER_FAILURES = 4;

/**
 * A node's first sync carries its whole slice in one response: 1.6 MiB for 5,000 pods and
 * 1,000 services, past gRPC's default 4 MiB at about 13,000 pods — and the agent would then
 * retry forever without a config. The control plane is authenticated and trusted.
 */
export const MAX_CONTROL_MESSAGE_BYTES = 256 * 1024 * 1024;

export class ControlClient {
  readonly #o: ControlClientOptions;
  readonly #log: ControlLogger;
  readonly #scheduler: Scheduler;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #backoff: ReconnectBackoff;
  readonly #serverName: string;
  readonly #controlIdentity: string;
  readonly #timeoutMs: number;
  readonly #metrics: ClientMetrics | undefined;
  #config: ReadonlyMap<string, ControlResource> = new Map();
  #digest = new ConfigDigest();
  #version = '';
  /** The parts of a push applied so far (more to come): served once the last one is applied. */
  #staged: { readonly config: ReadonlyMap<string, ControlResource>; readonly digest: ConfigDigest; readonly changed: boolean } | undefined;
  readonly #rejected = new Map<string, ResourceRejection>();
  #synced = false;
  #connected = false;
  #lastUpdate: number | undefined;
  #lastError: string | undefined;
  #nodeCert: NodeCertificate | undefined;
  #streamStub: ControlStubMethods | undefined;
  #call: grpc.ClientDuplexStream<DeltaRequest, DeltaResponse> | undefined;
  #unary: { stub: ControlStubMethods; cert: NodeCertificate } | undefined;
  #attempt = 0;
  #retry: TimerHandle | undefined;
  #renewal: TimerHandle | undefined;
  #started = false;
  #closed = false;
  #syncWaiters: Array<() => void> = [];

  constructor(options: ControlClientOptions) {
    checkNodeName(options.node);
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
    this.#scheduler = options.scheduler ?? systemScheduler;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#backoff = options.backoff ?? DEFAULT_RECONNECT_BACKOFF;
    this.#serverName = options.serverName ?? CONTROL_SERVER_NAME;
    this.#controlIdentity = options.controlIdentity ?? controlIdentity(options.trustDomain);
    this.#timeoutMs = options.requestTimeoutMs ?? 10_000;
    if (!(this.#backoff.initialMs > 0 && this.#backoff.maxMs >= this.#backoff.initialMs)) {
      throw controlError(ControlErrors.BAD_OPTIONS, `ControlClient backoff needs 0 < initialMs <= maxMs, got ${JSON.stringify(this.#backoff)}`);
    }
    const renewAt = options.renewAtFraction ?? 0.5;
    if (!(renewAt > 0 && renewAt < 1)) throw controlError(ControlErrors.BAD_OPTIONS, `ControlClient renewAtFraction must be in (0, 1), got ${renewAt}`);
    this.#metrics = clientMetrics(options.registry);
  }

  /** Starts connecting in the background; the agent serves whatever config it has meanwhile. */
  start(): void {
    if (this.#closed) throw controlError(ControlErrors.CLOSED, 'start() on a closed ControlClient');
    if (this.#started) return;
    this.#started = true;
    void this.#connect();
  }

  /** Resolves once a first response has been applied (at once if one has). */
  whenSynced(): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise((resolve) => this.#syncWaiters.push(resolve));
  }

  /** The config being served and its version ('' before the first sync). */
  config(): { readonly version: string; readonly resources: ReadonlyMap<string, ControlResource> } {
    return { version: this.#version, resources: this.#config };
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** For the admin port's /config_dump. */
  configDump(): ControlConfigDump {
    return {
      node: this.#o.node,
      version: this.#version,
      synced: this.#synced,
      connected: this.#connected,
      lastUpdate: this.#lastUpdate === undefined ? undefined : new Date(this.#lastUpdate).toISOString(),
      lastError: this.#lastError,
      nodeCertificateNotAfter: this.#nodeCert === undefined ? undefined : new Date(this.#nodeCert.notAfter).toISOString(),
      resources: [...this.#config.values()],
      rejected: [...this.#rejected.values()],
    };
  }

  /**
   * Asks the control plane to sign a workload certificate (src/identity's CertificateIssuer
   * shape). The control plane checks the identity against the node in our certificate.
   */
  async sign(csrPem: string, identity: string | { readonly uri: string }): Promise<{ readonly certPem: string; readonly chainPem: readonly string[] }> {
    if (this.#closed) throw controlError(ControlErrors.CLOSED, 'sign() on a closed ControlClient');
    const cert = this.#nodeCert;
    if (cert === undefined) {
      throw controlError(ControlErrors.SIGN_FAILED, `cannot ask for a certificate yet: node ${this.#o.node} has no node certificate (control plane not reached${this.#lastError === undefined ? '' : `: ${this.#lastError}`})`);
    }
    if (this.#unary?.cert !== cert) {
      this.#unary?.stub.close();
      this.#unary = { stub: this.#stub(this.#mtls(cert)), cert };
    }
    const uri = typeof identity === 'string' ? identity : identity.uri;
    const stub = this.#unary.stub;
    const response = await new Promise<{ certPem: string; chainPem: string[] }>((resolve, reject) => {
      stub.SignCertificate({ csrPem, identity: uri }, new grpc.Metadata(), { deadline: Date.now() + this.#timeoutMs }, (err, r) => {
        if (err !== null) reject(fromStatus(err, `signing ${uri}`, ControlErrors.SIGN_FAILED));
        else resolve(r as { certPem: string; chainPem: string[] });
      });
    });
    return { certPem: response.certPem, chainPem: response.chainPem };
  }

  /** Stops for good: ends the stream and cancels timers. Safe to call twice. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#retry?.cancel();
    this.#renewal?.cancel();
    this.#dropStream();
    this.#unary?.stub.close();
    this.#unary = undefined;
    return Promise.resolve();
  }

  // ---- connection ----------------------------------------------------------------------

  async #connect(): Promise<void> {
    this.#retry = undefined;
    if (this.#closed) return;
    this.#metrics?.reconnects.inc();
    // After repeated failures with a certificate in hand, start over from the configured trust
    // bundle and the token: the control plane may have come back with a new CA.
    if (this.#attempt >= REBOOTSTRAP_AFTER_FAILURES && this.#attempt % REBOOTSTRAP_AFTER_FAILURES === 0) this.#nodeCert = undefined;
    try {
      if (this.#nodeCert === undefined || this.#clock.now() >= this.#nodeCert.notAfter) await this.#bootstrap(false);
    } catch (err: unknown) {
      this.#failed(err, 'cannot obtain a node certificate');
      return;
    }
    if (this.#closed) return;
    this.#openStream(this.#nodeCert as NodeCertificate);
  }

  #openStream(cert: NodeCertificate): void {
    const stub = this.#stub(this.#mtls(cert));
    const call = stub.DeltaResources();
    this.#streamStub = stub;
    this.#call = call;
    let ended = false;
    const end = (err: unknown): void => {
      if (ended) return;
      ended = true;
      if (this.#call === call) this.#dropStream();
      if (!this.#closed) this.#failed(err, 'config stream ended');
    };
    call.on('data', (response: DeltaResponse) => {
      if (this.#call !== call) return;
      this.#onResponse(call, response);
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code === grpc.status.UNAUTHENTICATED && this.#nodeCert === cert) {
        this.#nodeCert = undefined; // the server no longer takes it (CA rotated?): bootstrap again
      }
      end(fromStatus(err, 'config stream'));
    });
    call.on('status', (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) end(new Error('the control plane closed the stream'));
    });
    call.write({
      node: this.#o.node,
      initialVersions: Object.fromEntries([...this.#config].map(([key, r]) => [key, r.version])),
      responseNonce: '',
      errorMessage: '',
      rejected: [],
    });
    this.#log.debug({ address: this.#o.address, known: this.#config.size }, 'subscribed to the control plane');
  }

  #onResponse(call: grpc.ClientDuplexStream<DeltaRequest, DeltaResponse>, response: DeltaResponse): void {
    const staged = this.#staged;
    const base = staged?.config ?? this.#config;
    const applied = applyDelta(base, response, this.#o.validate);
    const digest = (staged?.digest ?? this.#digest).copy();
    for (const key of applied.changedKeys) {
      const before = base.get(key);
      const after = applied.next.get(key);
      if (before !== undefined) digest.remove(key, before.version);
      if (after !== undefined) digest.add(key, after.version);
    }
    const changed = (staged?.changed ?? false) || applied.changedKeys.length > 0;
    const more = response.more === true;
    const firstSync = !this.#synced && !more;
    // Phase two: one swap once the push is whole; readers see the old config or the new one, never a mix.
    if (more) {
      this.#staged = { config: applied.next, digest, changed };
    } else {
      this.#staged = undefined;
      this.#config = applied.next;
      this.#digest = digest;
      this.#version = digest.value;
      this.#lastUpdate = this.#clock.now();
    }
    for (const key of applied.changedKeys) this.#rejected.delete(key);
    for (const key of response.removed) this.#rejected.delete(key);
    for (const r of applied.rejected) this.#rejected.set(r.key, r);
    if (!more) this.#synced = true;
    this.#attempt = 0;
    this.#lastError = undefined;
    if (!this.#connected) {
      this.#connected = true;
      this.#metrics?.connected.set(1);
      this.#log.info({ address: this.#o.address, generation: response.systemVersion }, 'connected to the control plane');
    }
    if (applied.rejected.length === 0) {
      call.write({ node: '', initialVersions: {}, responseNonce: response.nonce, errorMessage: '', rejected: [] });
      this.#metrics?.updates.inc({ result: 'ack' });
    } else {
      const summary = `${applied.rejected.length} of ${response.resources.length} resources refused: ${applied.rejected.map((r) => `${r.key}: ${r.message}`).join('; ')}`;
      this.#log.warn({ generation: response.systemVersion, rejected: applied.rejected }, `refused config from the control plane: ${summary}`);
      call.write({ node: '', initialVersions: {}, responseNonce: response.nonce, errorMessage: summary, rejected: [...applied.rejected] });
      this.#metrics?.updates.inc({ result: 'nack' });
    }
    if (more) return;
    if (changed || firstSync) {
      try {
        this.#o.onConfig?.(this.#config, this.#version);
      } catch (err: unknown) {
        this.#log.error({ err: describeError(err) }, 'onConfig failed');
      }
    }
    if (firstSync) for (const resolve of this.#syncWaiters.splice(0)) resolve();
  }

  #failed(err: unknown, what: string): void {
    if (this.#closed) return;
    this.#lastError = describeError(err);
    const delay = reconnectDelay(this.#backoff, this.#attempt++, this.#random);
    this.#log.warn({ address: this.#o.address, err: this.#lastError, retryInMs: delay }, `${what}; retrying`);
    this.#retry = this.#scheduler.schedule(delay, () => void this.#connect());
  }

  #dropStream(): void {
    this.#staged = undefined;
    const call = this.#call;
    const stub = this.#streamStub;
    this.#call = undefined;
    this.#streamStub = undefined;
    if (this.#connected) {
      this.#connected = false;
      this.#metrics?.connected.set(0);
      this.#log.warn({ address: this.#o.address, version: this.#version }, 'lost the control plane; serving the last good config');
    }
    call?.cancel();
    stub?.close();
  }

  // ---- node certificate ------------------------------------------------------------------

  /** Gets a node certificate: with the token, or (renew) with the current certificate. */
  async #bootstrap(renew: boolean): Promise<void> {
    const current = this.#nodeCert;
    const { keyPem, csrPem } = await createNodeCsr(this.#o.node, this.#o.trustDomain);
    const metadata = new grpc.Metadata();
    let credentials: grpc.ChannelCredentials;
    let trustBundlePem: string;
    if (renew && current !== undefined) {
      credentials = this.#mtls(current);
      trustBundlePem = current.trustBundlePem;
    } else {
      const given = this.#o.trustBundlePem;
      trustBundlePem = typeof given === 'string' ? given : await given();
      if (!trustBundlePem.includes('-----BEGIN CERTIFICATE-----')) {
        throw controlError(ControlErrors.BAD_OPTIONS, 'the trust bundle for verifying the control plane holds no PEM certificate');
      }
      metadata.set(AUTHORIZATION_METADATA, `Bearer ${(await this.#o.bootstrapToken()).trim()}`);
      credentials = grpc.credentials.createSsl(Buffer.from(trustBundlePem), null, null, { checkServerIdentity: this.#checkServer });
    }
    const stub = this.#stub(credentials);
    let response: BootstrapResponse;
    try {
      response = await new Promise<BootstrapResponse>((resolve, reject) => {
        stub.BootstrapNodeCertificate({ csrPem, node: this.#o.node }, metadata, { deadline: Date.now() + this.#timeoutMs }, (err, r) => {
          if (err !== null) reject(fromStatus(err, 'bootstrap'));
          else resolve(r as BootstrapResponse);
        });
      });
    } finally {
      stub.close();
    }
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(response.certPem);
    } catch (err: unknown) {
      throw controlError(ControlErrors.SIGN_FAILED, 'the control plane returned a node certificate that does not parse', err);
    }
    const notBefore = cert.validFromDate.getTime();
    const notAfter = cert.validToDate.getTime();
    const renewAt = notBefore + (notAfter - notBefore) * (this.#o.renewAtFraction ?? 0.5);
    this.#nodeCert = Object.freeze({
      keyPem,
      certPem: response.certPem + response.chainPem.join(''),
      trustBundlePem: response.trustBundlePem || trustBundlePem,
      notAfter,
      renewAt,
    });
    this.#log.info({ node: this.#o.node, notAfter: cert.validTo, renew }, 'obtained a node certificate');
    this.#scheduleRenewal();
  }

  #scheduleRenewal(): void {
    this.#renewal?.cancel();
    const cert = this.#nodeCert;
    if (cert === undefined || this.#closed) return;
    this.#renewal = this.#scheduler.schedule(Math.max(1_000, cert.renewAt - this.#clock.now()), () => {
      this.#renewal = undefined;
      // The stream keeps running on the old certificate; the new one serves new connections.
      this.#bootstrap(this.#clock.now() < cert.notAfter).catch((err: unknown) => {
        this.#log.warn({ err: describeError(err) }, 'node certificate renewal failed; will retry');
        if (this.#closed) return;
        this.#renewal = this.#scheduler.schedule(reconnectDelay(this.#backoff, 3, this.#random), () => this.#scheduleRenewal());
      });
    });
  }

  // ---- plumbing --------------------------------------------------------------------------

  readonly #checkServer = (_host: string, cert: PeerCertificate): Error | undefined => {
    const { uris } = parseSubjectAltName(cert.subjectaltname);
    if (uris.includes(this.#controlIdentity)) return undefined;
    return controlError(
      ControlErrors.UNAUTHENTICATED,
      `the server at ${this.#o.address} presented [${uris.join(', ')}], not the control plane's identity ${this.#controlIdentity}`,
    );
  };

  #mtls(cert: NodeCertificate): grpc.ChannelCredentials {
    return grpc.credentials.createSsl(Buffer.from(cert.trustBundlePem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem), {
      checkServerIdentity: this.#checkServer,
    });
  }

  #stub(credentials: grpc.ChannelCredentials): ControlStubMethods {
    const keepalive = this.#o.keepaliveMs ?? 10_000;
    return new ControlStub(this.#o.address, credentials, {
      'grpc.ssl_target_name_override': this.#serverName,
      'grpc.default_authority': this.#serverName,
      'grpc.keepalive_time_ms': keepalive,
      'grpc.keepalive_timeout_ms': Math.max(1_000, Math.floor(keepalive / 2)),
      'grpc.keepalive_permit_without_calls': 1,
      // Our own loop decides when to retry; keep the channel's backoff from adding minutes.
      'grpc.initial_reconnect_backoff_ms': this.#backoff.initialMs,
      'grpc.max_reconnect_backoff_ms': this.#backoff.maxMs,
      'grpc.max_receive_message_length': MAX_CONTROL_MESSAGE_BYTES,
    }) as unknown as ControlStubMethods;
  }
}

/** A gRPC failure as a WeftError: the server's code when it sent one, else UNAUTHENTICATED or `otherwise`. */
function fromStatus(err: grpc.ServiceError, what: string, otherwise: ControlErrorCode = ControlErrors.UNAVAILABLE): WeftError {
  const code = err.metadata?.get(ERROR_CODE_METADATA)[0];
  if (typeof code === 'string' && code !== '') return new WeftError(code, `${what}: ${err.details}`, { cause: err });
  const fallback = err.code === grpc.status.UNAUTHENTICATED ? ControlErrors.UNAUTHENTICATED : otherwise;
  return controlError(fallback, `${what}: ${grpc.status[err.code] ?? err.code}: ${err.details}`, err);
}
