// A lightweight agent for the scale benchmark: the real protocol (token bootstrap for a node
// certificate, then one mTLS DeltaResources stream with an ACK for every response, parts
// included), without what a real agent does with the config (validation, the proxy's
// state). It reads responses with the wire scanner and reports them to its host, which
// looks for the changes the benchmark is waiting for.

import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { createNodeCsr } from '../../src/control/channel-certificates.ts';
import { CONTROL_SERVER_NAME, controlIdentity, parseSubjectAltName } from '../../src/control/channel-identity.ts';
import { AUTHORIZATION_METADATA, controlService, type BootstrapResponse, type DeltaRequest } from '../../src/control/protocol.ts';
import { scanDeltaResponse, type ScannedResponse } from './wire.ts';

const TRUST_DOMAIN = 'cluster.local';

/** The Control service with DeltaResources responses left as bytes for the scanner. */
const definition: grpc.ServiceDefinition = {
  ...controlService,
  DeltaResources: { ...(controlService.DeltaResources as grpc.MethodDefinition<DeltaRequest, unknown>), responseDeserialize: (b: Buffer) => b },
};
const Stub = grpc.makeGenericClientConstructor(definition, 'Control');

interface Stubs {
  DeltaResources(): grpc.ClientDuplexStream<DeltaRequest, Buffer>;
  BootstrapNodeCertificate(req: { csrPem: string; node: string }, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, r?: BootstrapResponse) => void): void;
  close(): void;
}

function checkServer(_host: string, cert: PeerCertificate): Error | undefined {
  return parseSubjectAltName(cert.subjectaltname).uris.includes(controlIdentity(TRUST_DOMAIN)) ? undefined : new Error('not the control plane');
}

function stub(address: string, credentials: grpc.ChannelCredentials): Stubs {
  return new Stub(address, credentials, {
    'grpc.ssl_target_name_override': CONTROL_SERVER_NAME,
    'grpc.default_authority': CONTROL_SERVER_NAME,
    'grpc.max_receive_message_length': 256 * 1024 * 1024,
    'grpc.keepalive_time_ms': 60_000,
  }) as unknown as Stubs;
}

export interface LightAgentEvents {
  /** Every response, as scanned, before its ACK goes. */
  onResponse(r: ScannedResponse, at: number): void;
  /** The first sync's last part arrived. */
  onSynced(at: number): void;
  onError(err: unknown): void;
}

export class LightAgent {
  readonly node: string;
  #stub: Stubs | undefined;
  #call: grpc.ClientDuplexStream<DeltaRequest, Buffer> | undefined;
  #synced = false;

  constructor(node: string) {
    this.node = node;
  }

  /** Bootstraps with the token, then subscribes; resolves once the stream is open. */
  async start(address: string, caPem: string, token: string, events: LightAgentEvents): Promise<void> {
    const { keyPem, csrPem } = await createNodeCsr(this.node, TRUST_DOMAIN);
    const boot = stub(address, grpc.credentials.createSsl(Buffer.from(caPem), null, null, { checkServerIdentity: checkServer }));
    const md = new grpc.Metadata();
    md.set(AUTHORIZATION_METADATA, `Bearer ${token}`);
    let cert: BootstrapResponse;
    try {
      cert = await new Promise<BootstrapResponse>((resolve, reject) => {
        boot.BootstrapNodeCertificate({ csrPem, node: this.node }, md, { deadline: Date.now() + 60_000 }, (err, r) => (err === null && r !== undefined ? resolve(r) : reject(err ?? new Error('no answer'))));
      });
    } finally {
      boot.close();
    }
    const mtls = grpc.credentials.createSsl(Buffer.from(cert.trustBundlePem || caPem), Buffer.from(keyPem), Buffer.from(cert.certPem + cert.chainPem.join('')), { checkServerIdentity: checkServer });
    this.#stub = stub(address, mtls);
    const call = this.#stub.DeltaResources();
    this.#call = call;
    call.on('data', (b: Buffer) => {
      const at = performance.timeOrigin + performance.now();
      let r: ScannedResponse;
      try {
        r = scanDeltaResponse(b);
      } catch (err: unknown) {
        events.onError(err);
        return;
      }
      events.onResponse(r, at);
      call.write({ node: '', initialVersions: {}, responseNonce: r.nonce, errorMessage: '', rejected: [] });
      if (!this.#synced && !r.more) {
        this.#synced = true;
        events.onSynced(at);
      }
    });
    call.on('error', (err: unknown) => events.onError(err));
    call.write({ node: this.node, initialVersions: {}, responseNonce: '', errorMessage: '', rejected: [] });
  }

  close(): void {
    this.#call?.cancel();
    this.#stub?.close();
  }
}
