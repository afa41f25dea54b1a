// Opening a TCP connection to an upstream with a connect timeout and an abort signal.

import { connect, type Socket } from 'node:net';

import { ProxyErrors, proxyError } from './errors.ts';

export interface TcpConnectOptions {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

const ignore = (): void => undefined;

/**
 * Resolves with a connected socket (half-open allowed, Nagle off) or rejects with
 * WEFT_PROXY_CONNECT_FAILED / _CONNECT_TIMEOUT / _ABORTED. The socket keeps a no-op 'error'
 * listener so an error before the caller attaches its own cannot crash the process.
 */
export function connectTcp(options: TcpConnectOptions): Promise<Socket> {
  const { host, port, timeoutMs, signal } = options;
  return new Promise<Socket>((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(proxyError(ProxyErrors.ABORTED, `connect to ${host}:${port} abandoned`));
      return;
    }
    const socket = connect({ host, port, allowHalfOpen: true, noDelay: true });
    socket.on('error', ignore);
    const done = (err?: Error): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      socket.off('connect', onConnect);
      if (err === undefined) {
        resolve(socket);
        return;
      }
      socket.destroy();
      reject(err);
    };
    const onConnect = (): void => done();
    const onError = (err: Error): void => done(proxyError(ProxyErrors.CONNECT_FAILED, `connect to ${host}:${port} failed: ${err.message}`, err));
    const onAbort = (): void => done(proxyError(ProxyErrors.ABORTED, `connect to ${host}:${port} abandoned`));
    const timer = setTimeout(() => done(proxyError(ProxyErrors.CONNECT_TIMEOUT, `connect to ${host}:${port} timed out after ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    socket.once('connect', onConnect);
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
