// A real control server and real agent clients on 127.0.0.1, with a test CA from the openssl
// CLI. Snapshots here are plain per-node resource lists so the tests control exactly which
// node's slice changes; one test also runs the real mesh model through it.

import { createHash, randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { systemClock } from '../../../src/core/clock.ts';
import { ChannelCertificateIssuer } from '../../../src/control/channel-certificates.ts';
import { ControlClient, type ControlClientOptions } from '../../../src/control/client.ts';
import type { ControlResource } from '../../../src/control/resource.ts';
import { ControlServer, type ControlServerEvent, type ControlServerOptions, type CsrSigner } from '../../../src/control/server.ts';
import { StaticTokenReviewer } from '../../../src/control/token-reviewer.ts';
import { testCa } from '../../support/certs.ts';

export const TD = 'cluster.local';

/** node -> key (`type/name`) -> body */
export type TestSnapshot = ReadonlyMap<string, ReadonlyMap<string, unknown>>;

export function res(key: string, body: unknown): ControlResource {
  const slash = key.indexOf('/');
  const version = createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 12);
  return Object.freeze({ type: key.slice(0, slash), name: key.slice(slash + 1), version, body });
}

export function resourcesFor(snapshot: TestSnapshot, node: string): ControlResource[] {
  return [...(snapshot.get(node) ?? new Map<string, unknown>())].map(([k, b]) => res(k, b));
}

export function snapshot(nodes: Record<string, Record<string, unknown>>): TestSnapshot {
  return new Map(Object.entries(nodes).map(([n, r]) => [n, new Map(Object.entries(r))]));
}

/** A body with `{ bad: "why" }` is refused by the test validator with that reason. */
export function testValidator(r: ControlResource): string | undefined {
  const b = r.body as { bad?: unknown } | null;
  if (b === null || typeof b !== 'object') return 'body must be an object';
  return typeof b.bad === 'string' ? `body.bad: ${b.bad}` : undefined;
}

export interface Pki {
  readonly issuer: ChannelCertificateIssuer;
  readonly trustBundlePem: string;
}

const pkis = new Map<string, Promise<Pki>>();

/** A CA (cached by name) and an issuer of channel certificates from it. */
export function testPki(name = 'control'): Promise<Pki> {
  let pki = pkis.get(name);
  if (pki === undefined) {
    pki = (async () => {
      const ca = testCa(name);
      const issuer = await ChannelCertificateIssuer.create({ caCertPem: ca.cert, caKeyPem: ca.key, trustDomain: TD, clock: systemClock });
      return { issuer, trustBundlePem: issuer.trustBundlePem };
    })();
    pkis.set(name, pki);
  }
  return pki;
}

export const NODES = ['node-a', 'node-b', 'node-c'] as const;

export function tokenOf(node: string): string {
  return `token-${node}-0123456789abcdef`;
}

export interface SignCall {
  readonly csrPem: string;
  readonly node: string;
  readonly identity: string;
}

export interface ServerHarness {
  readonly server: ControlServer<TestSnapshot>;
  readonly port: number;
  readonly registry: Registry;
  readonly events: ControlServerEvent[];
  readonly signCalls: SignCall[];
  /** Resolves at the next event matching `match`, or rejects after `timeoutMs`. */
  next(match: (e: ControlServerEvent) => boolean, timeoutMs?: number): Promise<ControlServerEvent>;
}

export async function startServer(port = 0, extra: Partial<ControlServerOptions<TestSnapshot>> = {}, caName = 'control'): Promise<ServerHarness> {
  const { issuer, trustBundlePem } = await testPki(caName);
  const serverCert = await issuer.issueServerCertificate(['localhost']);
  const events: ControlServerEvent[] = [];
  const waiters: Array<{ match: (e: ControlServerEvent) => boolean; resolve: (e: ControlServerEvent) => void }> = [];
  const signCalls: SignCall[] = [];
  const csrSigner: CsrSigner = {
    sign: (request) => {
      signCalls.push(request);
      return Promise.resolve({ certPem: `cert for ${request.identity} on ${request.node}`, chainPem: [] });
    },
  };
  const registry = new Registry();
  const server = new ControlServer<TestSnapshot>({
    resourcesFor,
    trustDomain: TD,
    tls: { trustBundlePem, certPem: serverCert.certPem, keyPem: serverCert.keyPem },
    nodeSigner: issuer,
    tokenReviewer: new StaticTokenReviewer(new Map(NODES.map((n) => [tokenOf(n), n]))),
    csrSigner,
    registry,
    onEvent: (e) => {
      events.push(e);
      for (const w of [...waiters]) {
        if (w.match(e)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(e);
        }
      }
    },
    ...extra,
  });
  const bound = await server.listen(`127.0.0.1:${port}`);
  return {
    server, port: bound, registry, events, signCalls,
    next: (match, timeoutMs = 5_000) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching server event within ${timeoutMs} ms; saw ${JSON.stringify(events.slice(-10))}`)), timeoutMs);
      waiters.push({ match, resolve: (e) => { clearTimeout(timer); resolve(e); } });
    }),
  };
}

export interface AgentHarness {
  readonly client: ControlClient;
  /** Every onConfig call, in order. */
  readonly configs: Array<{ readonly version: string; readonly snapshot: ReadonlyMap<string, ControlResource> }>;
  /** Resolves when an onConfig satisfies `match` (checks the latest one first). */
  until(match: (snapshot: ReadonlyMap<string, ControlResource>, version: string) => boolean, timeoutMs?: number): Promise<void>;
}

export async function startAgent(node: string, port: number, extra: Partial<ControlClientOptions> = {}): Promise<AgentHarness> {
  const { trustBundlePem } = await testPki();
  const configs: AgentHarness['configs'] = [];
  const waiters: Array<{ match: (s: ReadonlyMap<string, ControlResource>, v: string) => boolean; resolve: () => void }> = [];
  const client = new ControlClient({
    address: `127.0.0.1:${port}`,
    node,
    trustDomain: TD,
    trustBundlePem,
    bootstrapToken: () => tokenOf(node),
    validate: testValidator,
    backoff: { initialMs: 20, maxMs: 200 },
    keepaliveMs: 2_000,
    onConfig: (snapshot, version) => {
      configs.push({ snapshot, version });
      for (const w of [...waiters]) {
        if (w.match(snapshot, version)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    ...extra,
  });
  client.start();
  return {
    client, configs,
    until: (match, timeoutMs = 5_000) => {
      const { resources, version } = client.config();
      if (configs.length > 0 && match(resources, version)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${node}: no matching config within ${timeoutMs} ms; holds ${JSON.stringify([...client.config().resources.keys()])}, last error ${client.configDump().lastError ?? 'none'}`)), timeoutMs);
        waiters.push({ match, resolve: () => { clearTimeout(timer); resolve(); } });
      });
    },
  };
}

/** Body of a resource the agent holds, or undefined. */
export function bodyOf(client: ControlClient, key: string): unknown {
  return client.config().resources.get(key)?.body;
}

export function randomTag(): string {
  return randomBytes(3).toString('hex');
}

/** Polls `cond` every 5 ms. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
