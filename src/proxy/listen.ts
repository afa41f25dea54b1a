// Binding a listener, with SO_REUSEPORT so a restarted agent can bind beside the old one
// while the old one drains.

import type { AddressInfo, Server } from 'node:net';

import { ProxyErrors, proxyError } from './errors.ts';

export interface ListenOptions {
  readonly host: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  /** Bind with SO_REUSEPORT. Default true. */
  readonly reusePort?: boolean;
  readonly backlog?: number;
}

export function listen(server: Server, what: string, o: ListenOptions): Promise<AddressInfo> {
  return new Promise<AddressInfo>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(proxyError(ProxyErrors.LISTEN_FAILED, `${what} cannot listen on ${o.host}:${o.port}: ${err.message}`, err));
    };
    server.once('error', onError);
    server.listen({ host: o.host, port: o.port, reusePort: o.reusePort ?? true, backlog: o.backlog ?? 1024 }, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Stops accepting; existing connections are untouched. Safe to repeat. */
export function stopListening(server: Server): void {
  if (server.listening) server.close();
}

/** The IPv4 form of an address Node reports as IPv4-mapped IPv6. */
export function plainIp(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
