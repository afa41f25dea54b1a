// The protocol selector the outbound listener forks on: the port's declaration decides,
// else the client's first bytes, read for at most `sniffMs` and put back on the socket
// (unshift) so whichever path serves the connection sees them again. A client that says
// nothing within the bound, or says something that is not HTTP, is spliced.

import type { Socket } from 'node:net';

import type { Destination } from './outbound-route.ts';
import type { ConnectionProtocol, ProtocolSelector } from './outbound.ts';
import { MAX_SNIFF_BYTES, classifyClientBytes, portDecision, type ClientBytes } from './protocol-select.ts';

export interface SniffOptions {
  /** Longest wait for an undeclared port's client to speak. Default 100 ms; at most 100. */
  readonly sniffMs?: number;
}

/** What the selector saw, for tests and the access log. */
export interface Sniffed {
  readonly result: ClientBytes | 'timeout' | 'closed';
  readonly bytes: number;
}

/**
 * Reads from a paused socket until the bytes are decisive or `deadlineMs` passes (Infinity:
 * no bound), then puts every byte back (unshift, in the same tick as the read, so an EOF
 * that came with them stays pending for whoever reads next). Resolves, never rejects.
 */
export function peekClient(client: Socket, deadlineMs: number, signal: AbortSignal): Promise<Sniffed> {
  return new Promise<Sniffed>((resolve) => {
    let seen: Buffer = Buffer.alloc(0);
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (result: Sniffed['result']): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      client.off('readable', onReadable);
      client.off('close', onGone);
      signal.removeEventListener('abort', onGone);
      if (seen.length > 0 && !client.destroyed) client.unshift(seen);
      resolve({ result, bytes: seen.length });
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = client.read() as Buffer | null) !== null) seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const verdict = classifyClientBytes(seen);
      if (verdict !== 'more') finish(verdict);
      else if (seen.length >= MAX_SNIFF_BYTES) finish('opaque');
      // EOF with nothing decisive: all the client will send is here. Node has no public flag
      // for "EOF received, 'end' not emitted yet"; putting the bytes back now keeps 'end' pending.
      else if (eofReceived(client)) finish('closed');
    };
    const onGone = (): void => finish('closed');
    if (signal.aborted || client.destroyed) {
      resolve({ result: 'closed', bytes: 0 });
      return;
    }
    client.on('readable', onReadable);
    client.once('close', onGone);
    signal.addEventListener('abort', onGone, { once: true });
    if (Number.isFinite(deadlineMs)) {
      timer = setTimeout(() => finish('timeout'), deadlineMs);
      timer.unref();
    }
  });
}

function eofReceived(s: Socket): boolean {
  return s.readableEnded || (s as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended === true;
}

export function protocolSelector(options: SniffOptions = {}): ProtocolSelector {
  const sniffMs = options.sniffMs ?? 100;
  return async (client: Socket, destination: Destination, signal: AbortSignal): Promise<ConnectionProtocol> => {
    const decision = portDecision(destination);
    if (decision.kind === 'opaque') return 'opaque';
    // A declared HTTP port's client speaks first: wait for it as long as it takes.
    const seen = await peekClient(client, decision.kind === 'http' ? Number.POSITIVE_INFINITY : sniffMs, signal);
    if (seen.result === 'h2') return 'h2';
    if (seen.result === 'http1') return 'http1';
    return 'opaque';
  };
}
