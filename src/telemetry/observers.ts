// Composes connection observers and request observers at wiring time (metrics and tracing): one record per
// observer per connection, each told everything. With one observer nothing is composed, so a
// disabled feature costs nothing on the connection path.

import type { IncomingRequest, ObservedConnection, ObservedRequest, Observer, TraceCarrier } from './types.ts';

export function composeObservers(...observers: readonly Observer[]): Observer {
  if (observers.length === 1 && observers[0] !== undefined) return observers[0];
  return {
    open(incoming?: TraceCarrier): ObservedConnection {
      const records = observers.map((o) => o.open(incoming));
      return {
        identify: (d) => { for (const r of records) r.identify(d); },
        countBytes: (s, facing) => { for (const r of records) r.countBytes(s, facing); },
        finish: (flags, detail) => { for (const r of records) r.finish(flags, detail); },
        traceHeaders: () => {
          for (const r of records) {
            const h = r.traceHeaders?.();
            if (h !== undefined) return h;
          }
          return undefined;
        },
      };
    },
    handshakeFailed(reason, detail) {
      for (const o of observers) o.handshakeFailed(reason, detail);
    },
    forwardedMismatch(claimed, principal, peerIp) {
      for (const o of observers) o.forwardedMismatch?.(claimed, principal, peerIp);
    },
  };
}

/** A request observer of the HTTP layer (the metrics record, the tracer). */
export interface RequestObserverLike {
  request(incoming: IncomingRequest): ObservedRequest;
}

/** Composes request observers as composeObservers does connection ones; the first trace context wins. */
export function composeRequestObservers(...observers: readonly RequestObserverLike[]): RequestObserverLike {
  if (observers.length === 1 && observers[0] !== undefined) return observers[0];
  return {
    request(incoming: IncomingRequest): ObservedRequest {
      const records = observers.map((o) => o.request(incoming));
      return {
        describe: (d) => { for (const r of records) r.describe(d); },
        finish: (o) => { for (const r of records) r.finish(o); },
        traceHeaders: () => {
          for (const r of records) {
            const h = r.traceHeaders?.();
            if (h !== undefined) return h;
          }
          return undefined;
        },
      };
    },
  };
}
