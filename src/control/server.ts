// `weft control`'s gRPC server: one DeltaResources stream per agent, pushing each node only
// its own slice as deltas (see control.proto), plus certificate signing for workloads and
// for the agents' node certificates.
//
// Authentication: streams and SignCertificate need a node certificate verified by TLS
// against the mesh CA; the node comes from the certificate, never from the request.
// BootstrapNodeCertificate takes a bootstrap token instead (or a node certificate, to renew).

import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { systemClock, type Clock } from '../core/clock.ts';
import { describeError, isWeftError } from '../core/errors.ts';
import { AgentBook, PlanCache, SharedSyncParts, type PushPart, type RejectedVersions } from './agent-book.ts';
import { PushBudget } from './push-budget.ts';
import { SnapshotView, type ResourcesFor, type ResourceView } from './resource-view.ts';
import type { SignedCertificate } from './channel-certificates.ts';
import { checkNodeName, nodeFromCertificate } from './channel-identity.ts';
import { controlError, ControlErrors } from './errors.ts';
import { silentLogger, type ControlLogger } from './logger.ts';
import {
  AUTHORIZATION_METADATA, controlService, ERROR_CODE_METADATA,
  type BootstrapRequest, type BootstrapResponse, type DeltaRequest,
  type SignCertificateRequest, type SignCertificateResponse,
} from './protocol.ts';
import { WireEncoder, type ResourceRejection } from './resource.ts';
import { encodeDeltaResponse, encodeDeltaTail, type EncodedDeltaResponse } from './wire-encoding.ts';
import { createControlServerMetrics, type ControlServerMetrics } from './server-metrics.ts';
import { tokenFingerprint, type TokenReviewer } from './token-reviewer.ts';
import { TlsMaterialProvider, type ServerTlsMaterial } from './tls-material.ts';

/** Signs workload certificates (the app wires the identity CA here). */
export interface CsrSigner {
  /** `node` is the authenticated caller; `identity` a `spiffe://` URI. Rejects with a WeftError to refuse. */
  sign(request: { readonly csrPem: string; readonly node: string; readonly identity: string }): Promise<SignedCertificate>;
}

/** Signs agents' node certificates for this channel (ChannelCertificateIssuer implements it). */
export interface NodeCertificateSigner {
  signNodeCertificate(csrPem: string, node: string): Promise<SignedCertificate>;
}

export type { ResourcesFor, ResourceView } from './resource-view.ts';

export type ControlServerEvent =
  | { readonly type: 'subscribed'; readonly node: string; readonly stream: string }
  | { readonly type: 'disconnected'; readonly node: string; readonly stream: string }
  /** The view moved to `generation`: every agent is to be sent the difference. */
  | { readonly type: 'published'; readonly generation: number }
  /**
   * A part handed to the agent's stream. `generation`: what the agent holds once it applies
   * it; `waitedMs`: since the first change (or the subscription) it carries, so a push that
   * waited for the agent's previous answer or for budget says how long.
   */
  | {
    readonly type: 'pushed'; readonly node: string; readonly nonce: string; readonly changed: number; readonly removed: number;
    readonly trigger: 'subscribe' | 'change'; readonly generation: number; readonly waitedMs: number;
  }
  /** `roundTripMs`: from handing the part to the stream to reading its answer. */
  | { readonly type: 'ack'; readonly node: string; readonly nonce: string; readonly roundTripMs: number }
  | { readonly type: 'nack'; readonly node: string; readonly nonce: string; readonly rejected: readonly ResourceRejection[]; readonly message: string };

export interface ControlServerOptions<S> {
  /**
   * Snapshot mode: the resources of a node in a snapshot given to setSnapshot (O(nodes x
   * resources) per snapshot). Leave it out and call serve(view) for the incremental mode.
   */
  readonly resourcesFor?: ResourcesFor<S>;
  readonly trustDomain: string;
  readonly tls: ServerTlsMaterial;
  readonly tokenReviewer: TokenReviewer;
  readonly nodeSigner: NodeCertificateSigner;
  readonly csrSigner: CsrSigner;
  readonly registry: Registry;
  readonly logger?: ControlLogger;
  readonly clock?: Clock;
  /** Observes what happens on streams (tests, debugging); must not throw. */
  readonly onEvent?: (event: ControlServerEvent) => void;
  /**
   * Operator revocations: a revoked node gets no node certificate (not even with its
   * bootstrap token), no workload certificate and no config; neither does a node certificate
   * whose serial was revoked. Nothing is revoked when absent.
   */
  readonly revoked?: { isRevokedNode(node: string): boolean; isRevokedSerial(serial: string): boolean };
  /** HTTP/2 keepalive ping interval towards agents; 20 s by default. */
  readonly keepaliveMs?: number;
  /** A push bigger than this (encoded resource bytes) goes in parts; 512 KiB by default. */
  readonly maxPushBytes?: number;
  /** Bytes of pushes in flight (sent, not yet answered) over every agent together; 64 MiB by default. */
  readonly pushBudgetBytes?: number;
}

export interface AgentStreamStatus {
  readonly stream: string;
  readonly node: string;
  readonly peer: string;
  /** Epoch ms. */
  readonly connectedAt: number;
  /** `type/name` -> version the agent acknowledged (computed when read: O(the node's resources)). */
  readonly acked: ReadonlyMap<string, string>;
  readonly pendingPushes: number;
  /** The view generation the agent acknowledged holding. */
  readonly ackedGeneration: number | undefined;
}

interface PushMeta {
  readonly trigger: 'subscribe' | 'change';
  /** Monotonic ms of the change or subscription that caused the push. */
  readonly startedAt: number;
  /** Budget bytes the part holds until its answer. */
  readonly bytes: number;
  /** Monotonic ms when it was handed to the stream. */
  readonly sentAt: number;
}

interface AgentStream {
  readonly id: string;
  readonly node: string;
  readonly peer: string;
  readonly call: grpc.ServerDuplexStream<DeltaRequest, EncodedDeltaResponse>;
  readonly connectedAt: number;
  readonly subscribedAt: number;
  book: AgentBook<PushMeta> | undefined;
  /** A part cut and waiting for budget. */
  waiting: { readonly part: PushPart; readonly bytes: number } | undefined;
  /** Monotonic ms of the first change not yet in a push to this agent. */
  changedSince: number | undefined;
  seq: number;
  closed: boolean;
}

/** The part of a server call authentication reads. */
type AuthenticatedCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>;

/** A refusal with its gRPC status; grpc-js reads code, details and metadata off the error. */
class StatusError extends Error {
  readonly code: grpc.status;
  readonly details: string;
  readonly metadata = new grpc.Metadata();

  constructor(code: grpc.status, details: string, weftCode?: string) {
    super(details);
    this.code = code;
    this.details = details;
    if (weftCode !== undefined) this.metadata.set(ERROR_CODE_METADATA, weftCode);
  }
}

function statusError(code: grpc.status, details: string, weftCode?: string): StatusError {
  return new StatusError(code, details, weftCode);
}

function asStatusError(err: unknown): StatusError {
  return err instanceof StatusError ? err : statusError(grpc.status.INTERNAL, `the control plane failed: ${describeError(err)}`);
}

export class ControlServer<S> {
  readonly #o: ControlServerOptions<S>;
  readonly #log: ControlLogger;
  readonly #clock: Clock;
  readonly #metrics: ControlServerMetrics;
  readonly #tls: TlsMaterialProvider;
  readonly #grpc: grpc.Server;
  readonly #encoder = new WireEncoder();
  /** Plans, and each part's encoding, shared by the agents given the same changes. */
  readonly #plans = new PlanCache();
  /** The shared entries' parts for every fresh agent's first sync (the same bytes for all). */
  readonly #sharedSync: SharedSyncParts;
  readonly #tails = new WeakMap<PushPart, Buffer>();
  readonly #streams = new Set<AgentStream>();
  readonly #rejected = new Map<string, RejectedVersions>();
  readonly #snapshots: SnapshotView<S> | undefined;
  #view: ResourceView | undefined;
  readonly #budget: PushBudget<AgentStream>;
  readonly #maxPushBytes: number;
  #closing: Promise<void> | undefined;

  constructor(options: ControlServerOptions<S>) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.#metrics = createControlServerMetrics(options.registry);
    this.#tls = new TlsMaterialProvider(options.tls);
    this.#maxPushBytes = options.maxPushBytes ?? 512 * 1024;
    this.#budget = new PushBudget(options.pushBudgetBytes ?? 64 * 1024 * 1024);
    this.#sharedSync = new SharedSyncParts(this.#maxPushBytes, (r) => this.#encoder.size(r));
    if (options.resourcesFor !== undefined) {
      this.#snapshots = new SnapshotView(options.resourcesFor, (node, err) => {
        // One node's slice failing must not hold back the others; this node keeps its last config.
        this.#log.error({ node, err: describeError(err) }, 'cannot compute the node\'s resources; not pushing to it');
      });
    }
    const keepalive = options.keepaliveMs ?? 20_000;
    this.#grpc = new grpc.Server({
      'grpc.keepalive_time_ms': keepalive,
      'grpc.keepalive_timeout_ms': Math.max(1_000, Math.floor(keepalive / 2)),
      // A resync lists every key and version the agent holds (about 60 bytes each): past the
      // default 4 MiB at some 70,000 resources. Agents are authenticated before they stream.
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      // channelz (grpc-js's introspection service, which weft does not serve) would count every
      // message of every agent's stream and keep a trace per connection: CPU per push and
      // memory per agent for nothing.
      'grpc.enable_channelz': 0,
    });
    // Responses go out with their resources already encoded (wire-encoding.ts): the same bytes for every agent.
    const service: grpc.ServiceDefinition = {
      ...controlService,
      DeltaResources: { ...(controlService.DeltaResources as grpc.MethodDefinition<DeltaRequest, EncodedDeltaResponse>), responseSerialize: encodeDeltaResponse },
    };
    this.#grpc.addService(service, {
      DeltaResources: (call: grpc.ServerDuplexStream<DeltaRequest, EncodedDeltaResponse>) => this.#onStream(call),
      SignCertificate: (call: grpc.ServerUnaryCall<SignCertificateRequest, SignCertificateResponse>, done: grpc.sendUnaryData<SignCertificateResponse>) => {
        this.#onSign(call).then((r) => done(null, r), (e: unknown) => done(asStatusError(e)));
      },
      BootstrapNodeCertificate: (call: grpc.ServerUnaryCall<BootstrapRequest, BootstrapResponse>, done: grpc.sendUnaryData<BootstrapResponse>) => {
        this.#onBootstrap(call).then((r) => done(null, r), (e: unknown) => done(asStatusError(e)));
      },
    });
  }

  /** Listens on `host:port` (port 0 picks one); resolves to the bound port. */
  async listen(address: string): Promise<number> {
    // Client certificates are requested but not required at the TLS layer: bootstrap comes
    // without one. Each RPC then decides what it needs (see the file comment).
    const credentials = grpc.experimental.createCertificateProviderServerCredentials(this.#tls, this.#tls, false);
    return new Promise((resolve, reject) => {
      this.#grpc.bindAsync(address, credentials, (err, port) => {
        if (err !== null) reject(controlError(ControlErrors.LISTEN_FAILED, `control server cannot listen on ${address}: ${err.message}`, err));
        else resolve(port);
      });
    });
  }

  /** Rotates the server certificate (and trust bundle) for new connections. */
  updateTls(material: ServerTlsMaterial): void {
    this.#tls.update(material);
  }

  get trustBundlePem(): string {
    return this.#tls.material.trustBundlePem;
  }

  /** Snapshot mode: a new mesh snapshot; every subscribed agent whose slice changed gets the difference. */
  setSnapshot(snapshot: S): void {
    if (this.#snapshots === undefined) throw controlError(ControlErrors.BAD_OPTIONS, 'setSnapshot needs the resourcesFor option (or use serve(view) and publish())');
    this.#snapshots.set(snapshot);
    this.#view = this.#snapshots;
    this.publish();
  }

  /** Incremental mode: pushes from `view` from now on (call publish() when it changed). */
  serve(view: ResourceView): void {
    this.#view = view;
    this.publish();
  }

  /** The view moved to a new generation: every agent not busy with a push gets the difference now, the others once they answer. */
  publish(): void {
    this.#metrics.snapshots.inc();
    const now = this.#clock.monotonic();
    const view = this.#view;
    if (view !== undefined) this.#o.onEvent?.({ type: 'published', generation: view.generation });
    if (view !== undefined) {
      // Every agent's changes move on with the view now, busy or not (shared by the agents that hold the same generation).
      const books: AgentBook<PushMeta>[] = [];
      for (const s of this.#streams) if (s.book !== undefined && !s.closed) books.push(s.book);
      AgentBook.observe(books, view);
    }
    for (const s of this.#streams) {
      if (s.book === undefined) continue;
      s.changedSince ??= now;
      this.#pump(s);
    }
  }

  /** One entry per open agent stream. */
  agents(): AgentStreamStatus[] {
    const view = this.#view;
    return [...this.#streams].flatMap((s) => {
      const book = s.book;
      if (book === undefined) return [];
      let acked: ReadonlyMap<string, string> | undefined;
      return [Object.freeze({
        stream: s.id,
        node: s.node,
        peer: s.peer,
        connectedAt: s.connectedAt,
        get acked(): ReadonlyMap<string, string> {
          acked ??= view === undefined ? new Map<string, string>() : book.acked(view);
          return acked;
        },
        pendingPushes: book.pendingCount + (s.waiting === undefined ? 0 : 1),
        ackedGeneration: book.ackedGeneration,
      })];
    });
  }

  /** Versions the node's newest open stream acknowledged, or undefined when it has none. */
  ackedVersions(node: string): ReadonlyMap<string, string> | undefined {
    return this.agents().filter((a) => a.node === node).at(-1)?.acked;
  }

  /** Resource versions the node refused that the server will not send again. */
  rejectedVersions(node: string): readonly ResourceRejection[] {
    return [...(this.#rejected.get(node)?.values() ?? [])];
  }

  /**
   * Ends every agent stream cleanly (agents reconnect, to another replica if there is one),
   * then stops; connections still open after `graceMs` are cut. Safe to call twice.
   */
  close(graceMs = 5_000): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      for (const s of this.#streams) this.#end(s);
      const force = setTimeout(() => this.#grpc.forceShutdown(), graceMs);
      force.unref();
      this.#grpc.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    return this.#closing;
  }

  /** Cuts every connection at once, as a crash would. Safe to call twice. */
  destroy(): void {
    this.#grpc.forceShutdown();
    for (const s of [...this.#streams]) this.#forget(s);
    this.#closing ??= Promise.resolve();
  }

  // ---- streams -------------------------------------------------------------------------

  #onStream(call: grpc.ServerDuplexStream<DeltaRequest, EncodedDeltaResponse>): void {
    let node: string;
    try {
      node = this.#nodeFromCertificate(call, 'DeltaResources');
    } catch (err: unknown) {
      call.emit('error', err);
      return;
    }
    const now = this.#clock.now();
    const stream: AgentStream = {
      id: randomBytes(4).toString('hex'), node, peer: call.getPeer(), call,
      connectedAt: now, subscribedAt: this.#clock.monotonic(),
      book: undefined, waiting: undefined, changedSince: undefined, seq: 0, closed: false,
    };
    this.#streams.add(stream);
    this.#metrics.connectedAgents.inc();
    call.on('data', (req: DeltaRequest) => {
      try {
        this.#onRequest(stream, req);
      } catch (err: unknown) {
        this.#log.error({ node, stream: stream.id, err: describeError(err) }, 'control stream request failed');
        this.#fail(stream, statusError(grpc.status.INTERNAL, `the control plane failed on a request: ${describeError(err)}`));
      }
    });
    call.on('end', () => this.#end(stream));
    call.on('error', (err: Error) => {
      this.#log.debug({ node, stream: stream.id, err: err.message }, 'control stream error');
      this.#forget(stream);
    });
    call.on('cancelled', () => this.#forget(stream));
    call.on('close', () => this.#forget(stream));
  }

  #onRequest(stream: AgentStream, req: DeltaRequest): void {
    if (stream.closed) return;
    const book = stream.book;
    if (book === undefined) {
      this.#subscribe(stream, req);
      return;
    }
    if (req.responseNonce === '') {
      this.#log.warn({ node: stream.node, stream: stream.id }, 'agent sent a second subscription on one stream; ignored');
      return;
    }
    const answered = (meta: PushMeta, last: boolean): void => {
      this.#budget.release(meta.bytes);
      if (last) this.#metrics.pushLatency.observe({ trigger: meta.trigger }, (this.#clock.monotonic() - meta.startedAt) / 1_000);
    };
    if (req.errorMessage === '' && req.rejected.length === 0) {
      const push = book.ack(req.responseNonce);
      if (push === undefined) return this.#log.debug({ node: stream.node, nonce: req.responseNonce }, 'ACK for an unknown nonce');
      this.#metrics.acks.inc();
      answered(push.meta, !push.more);
      this.#o.onEvent?.({ type: 'ack', node: stream.node, nonce: push.nonce, roundTripMs: this.#clock.monotonic() - push.meta.sentAt });
      this.#pump(stream);
      return;
    }
    const message = req.errorMessage || `${req.rejected.length} resources refused`;
    const outcome = book.nack(req.responseNonce, req.rejected, message);
    if (outcome === undefined) return this.#log.debug({ node: stream.node, nonce: req.responseNonce }, 'NACK for an unknown nonce');
    this.#metrics.nacks.inc();
    answered(outcome.push.meta, !outcome.push.more);
    for (const r of outcome.rejected) this.#metrics.rejectedResources.inc({ type: r.key.slice(0, Math.max(0, r.key.indexOf('/'))) || 'unknown' });
    this.#log.warn(
      { node: stream.node, nonce: outcome.push.nonce, rejected: outcome.rejected.map((r) => `${r.key}@${r.version}: ${r.message}`) },
      `agent on ${stream.node} refused config: ${message}`,
    );
    this.#o.onEvent?.({ type: 'nack', node: stream.node, nonce: outcome.push.nonce, rejected: outcome.rejected, message });
    if (outcome.resync) {
      // It applied none of the push: only what it holds (sent again when it resubscribes) can tell.
      this.#fail(stream, statusError(grpc.status.ABORTED, `the agent refused a whole config push (${message}); resubscribe with the versions held`, ControlErrors.RESYNC));
      return;
    }
    this.#pump(stream);
  }

  #subscribe(stream: AgentStream, req: DeltaRequest): void {
    if (req.node !== '' && req.node !== stream.node) {
      this.#metrics.authFailures.inc({ rpc: 'DeltaResources', reason: 'wrong_node' });
      this.#fail(stream, statusError(
        grpc.status.PERMISSION_DENIED,
        `this connection's node certificate is for node ${stream.node}; it cannot subscribe to the config of node ${req.node}`,
        ControlErrors.WRONG_NODE,
      ));
      return;
    }
    const initial = new Map(Object.entries(req.initialVersions).filter(([k, v]) => typeof k === 'string' && typeof v === 'string' && v !== ''));
    let rejected = this.#rejected.get(stream.node);
    if (rejected === undefined) this.#rejected.set(stream.node, (rejected = new Map() as RejectedVersions));
    stream.book = new AgentBook<PushMeta>(stream.node, initial, rejected, this.#maxPushBytes, (r) => this.#encoder.size(r), this.#plans, this.#sharedSync);
    this.#log.info({ node: stream.node, stream: stream.id, peer: stream.peer, known: initial.size }, 'agent subscribed');
    this.#o.onEvent?.({ type: 'subscribed', node: stream.node, stream: stream.id });
    this.#pump(stream);
  }

  // Sends the stream's next part if it has one and is not waiting for an answer or for budget.
  #pump(stream: AgentStream): void {
    const book = stream.book;
    const view = this.#view;
    if (stream.closed || book === undefined || view === undefined || stream.waiting !== undefined) return;
    let part: ReturnType<AgentBook<PushMeta>['next']>;
    try {
      part = book.next(view);
    } catch (err: unknown) {
      // One node's slice failing must not hold back the others; this node keeps its last config.
      this.#log.error({ node: stream.node, err: describeError(err) }, 'cannot compute the node\'s resources; not pushing to it');
      return;
    }
    if (part === undefined) return;
    if (part === 'resync') {
      this.#log.warn({ node: stream.node, stream: stream.id }, 'agent is further behind than the change history kept; ending its stream so it resubscribes');
      this.#fail(stream, statusError(grpc.status.ABORTED, 'this agent fell further behind than the control plane\'s change history; resubscribe with the versions held', ControlErrors.RESYNC));
      return;
    }
    const cut = part;
    const bytes = this.#tailOf(cut).length + 64;
    if (this.#budget.take(stream, bytes, () => this.#send(stream, cut, bytes))) this.#send(stream, cut, bytes);
    else stream.waiting = { part: cut, bytes };
  }

  // Fields 3-5 of the part's response, encoded once for every agent it goes to.
  #tailOf(part: PushPart): Buffer {
    let tail = this.#tails.get(part);
    if (tail === undefined) {
      tail = encodeDeltaTail({ resources: part.changed.map((r) => this.#encoder.encode(r)), removed: part.removed, more: part.more });
      this.#tails.set(part, tail);
    }
    return tail;
  }

  #send(stream: AgentStream, part: PushPart, bytes: number): void {
    stream.waiting = undefined;
    const book = stream.book;
    if (stream.closed || book === undefined) {
      this.#budget.release(bytes);
      return;
    }
    const startedAt = part.trigger === 'change' ? (stream.changedSince ?? this.#clock.monotonic()) : stream.subscribedAt;
    if (part.trigger === 'change') stream.changedSince = undefined;
    const nonce = `${stream.id}-${++stream.seq}`;
    const sentAt = this.#clock.monotonic();
    book.sent(nonce, part, { trigger: part.trigger, startedAt, bytes, sentAt });
    stream.call.write({ systemVersion: String(this.#view?.generation ?? 0), nonce, tail: this.#tailOf(part) });
    this.#metrics.pushes.inc({ trigger: part.trigger });
    this.#metrics.pushedResources.inc({ change: 'upsert' }, part.changed.length);
    this.#metrics.pushedResources.inc({ change: 'remove' }, part.removed.length);
    this.#log.debug({ node: stream.node, nonce, changed: part.changed.length, removed: part.removed.length, more: part.more }, 'pushed config');
    this.#o.onEvent?.({
      type: 'pushed', node: stream.node, nonce, changed: part.changed.length, removed: part.removed.length,
      trigger: part.trigger, generation: book.heldGeneration ?? 0, waitedMs: sentAt - startedAt,
    });
  }

  #fail(stream: AgentStream, err: StatusError): void {
    if (stream.closed) return;
    this.#forget(stream);
    stream.call.emit('error', err);
  }

  #end(stream: AgentStream): void {
    if (stream.closed) return;
    this.#forget(stream);
    stream.call.end();
  }

  #forget(stream: AgentStream): void {
    if (!this.#streams.delete(stream)) return;
    stream.closed = true;
    this.#budget.forget(stream);
    const inFlight = stream.book?.inFlight;
    if (inFlight !== undefined) this.#budget.release(inFlight.meta.bytes);
    this.#metrics.connectedAgents.dec();
    if (stream.book !== undefined) {
      this.#log.info({ node: stream.node, stream: stream.id }, 'agent disconnected');
      this.#o.onEvent?.({ type: 'disconnected', node: stream.node, stream: stream.id });
    }
  }

  // ---- authentication and certificates --------------------------------------------------

  #verifiedSubjectAltName(call: AuthenticatedCall): string | undefined {
    const peer = call.getAuthContext().sslPeerCertificate; // present only when TLS verified it
    return peer === undefined ? undefined : peer.subjectaltname ?? '';
  }

  #nodeFromCertificate(call: AuthenticatedCall, rpc: string): string {
    const san = this.#verifiedSubjectAltName(call);
    if (san === undefined) {
      this.#metrics.authFailures.inc({ rpc, reason: 'no_certificate' });
      throw statusError(
        grpc.status.UNAUTHENTICATED,
        `${rpc} needs a node certificate signed by the mesh CA (get one with BootstrapNodeCertificate); this connection presented none that verified`,
        ControlErrors.UNAUTHENTICATED,
      );
    }
    let node: string;
    try {
      node = nodeFromCertificate(san, this.#o.trustDomain);
    } catch (err: unknown) {
      this.#metrics.authFailures.inc({ rpc, reason: 'not_a_node_certificate' });
      throw statusError(grpc.status.UNAUTHENTICATED, describeError(err), ControlErrors.UNAUTHENTICATED);
    }
    const serial = call.getAuthContext().sslPeerCertificate?.serialNumber ?? '';
    if (this.#o.revoked?.isRevokedNode(node) === true || (serial !== '' && this.#o.revoked?.isRevokedSerial(serial) === true)) {
      this.#metrics.authFailures.inc({ rpc, reason: 'revoked' });
      throw statusError(grpc.status.PERMISSION_DENIED, `${rpc}: node ${node} (certificate ${serial.toLowerCase()}) was revoked by an operator`, ControlErrors.REVOKED);
    }
    return node;
  }

  /** Ends the config streams of a node (revoked: it must not keep receiving config). */
  disconnect(node: string, why: string): number {
    let n = 0;
    for (const s of [...this.#streams]) {
      if (s.node !== node) continue;
      this.#fail(s, statusError(grpc.status.PERMISSION_DENIED, why, ControlErrors.REVOKED));
      n++;
    }
    return n;
  }

  async #onSign(call: grpc.ServerUnaryCall<SignCertificateRequest, SignCertificateResponse>): Promise<SignCertificateResponse> {
    const node = this.#nodeFromCertificate(call, 'SignCertificate');
    const { csrPem, identity } = call.request;
    try {
      const cert = await this.#o.csrSigner.sign({ csrPem, node, identity });
      this.#metrics.certificates.inc({ kind: 'workload', result: 'issued' });
      this.#log.info({ node, identity }, 'signed a workload certificate');
      return { certPem: cert.certPem, chainPem: [...cert.chainPem] };
    } catch (err: unknown) {
      this.#metrics.certificates.inc({ kind: 'workload', result: 'refused' });
      this.#log.warn({ node, identity, err: describeError(err) }, 'refused a workload certificate');
      throw signFailure(err, `node ${node} asked for ${identity}`);
    }
  }

  async #onBootstrap(call: grpc.ServerUnaryCall<BootstrapRequest, BootstrapResponse>): Promise<BootstrapResponse> {
    const node = await this.#bootstrapNode(call);
    const asked = call.request.node;
    if (asked !== '' && asked !== node) {
      this.#metrics.authFailures.inc({ rpc: 'BootstrapNodeCertificate', reason: 'wrong_node' });
      throw statusError(grpc.status.PERMISSION_DENIED, `the credential presented belongs to node ${node}, not to node ${asked}`, ControlErrors.WRONG_NODE);
    }
    try {
      const cert = await this.#o.nodeSigner.signNodeCertificate(call.request.csrPem, node);
      this.#metrics.certificates.inc({ kind: 'node', result: 'issued' });
      this.#log.info({ node }, 'issued a node certificate');
      return { certPem: cert.certPem, chainPem: [...cert.chainPem], trustBundlePem: this.#tls.material.trustBundlePem };
    } catch (err: unknown) {
      this.#metrics.certificates.inc({ kind: 'node', result: 'refused' });
      this.#log.warn({ node, err: describeError(err) }, 'refused a node certificate');
      throw signFailure(err, `node ${node} asked for its node certificate`);
    }
  }

  async #bootstrapNode(call: grpc.ServerUnaryCall<BootstrapRequest, BootstrapResponse>): Promise<string> {
    const rpc = 'BootstrapNodeCertificate';
    if (this.#verifiedSubjectAltName(call) !== undefined) return this.#nodeFromCertificate(call, rpc); // a renewal
    const header = call.metadata.get(AUTHORIZATION_METADATA)[0];
    const token = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
    if (token === undefined) {
      this.#metrics.authFailures.inc({ rpc, reason: 'no_token' });
      throw statusError(
        grpc.status.UNAUTHENTICATED,
        `${rpc} needs a bootstrap token in metadata "authorization: Bearer <token>" (or a node certificate to renew)`,
        ControlErrors.UNAUTHENTICATED,
      );
    }
    let node: string | undefined;
    try {
      node = await this.#o.tokenReviewer.review(token);
    } catch (err: unknown) {
      this.#log.error({ err: describeError(err) }, 'token review failed');
      throw statusError(grpc.status.UNAVAILABLE, `the bootstrap token could not be checked: ${describeError(err)}`);
    }
    if (node === undefined) {
      this.#metrics.authFailures.inc({ rpc, reason: 'unknown_token' });
      this.#log.warn({ token: tokenFingerprint(token), peer: call.getPeer() }, 'unknown bootstrap token');
      throw statusError(
        grpc.status.UNAUTHENTICATED,
        `bootstrap token ${tokenFingerprint(token)} is not known to this control plane; ${this.#o.tokenReviewer.refusalHint ?? 'check the agent\'s token'}`,
        ControlErrors.UNAUTHENTICATED,
      );
    }
    if (this.#o.revoked?.isRevokedNode(node) === true) {
      this.#metrics.authFailures.inc({ rpc, reason: 'revoked' });
      throw statusError(grpc.status.PERMISSION_DENIED, `node ${node} was revoked by an operator: its bootstrap token no longer gets it a certificate`, ControlErrors.REVOKED);
    }
    return checkNodeName(node);
  }
}

// Deliberate refusals (WeftErrors) keep their code and message for the agent; anything else
// is an internal failure the agent may retry.
function signFailure(err: unknown, what: string): StatusError {
  if (isWeftError(err)) return statusError(grpc.status.PERMISSION_DENIED, `${what}: ${err.message}`, err.code);
  return statusError(grpc.status.INTERNAL, `${what}: the signer failed: ${describeError(err)}`);
}
