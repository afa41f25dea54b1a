// HTTP/2 settings shared by both ends of the tunnel. Windows follow ztunnel (4 MiB per stream,
// 16 MiB per connection): Node's 64 KiB defaults cap a stream at a few MB/s over any real RTT.
// Frames stay at 16 KiB: larger ones were slower on loopback (a TLS record is 16 KiB anyway).

import type { Settings } from 'node:http2';

import { ProxyErrors, proxyError } from './errors.ts';

export interface TunnelTuning {
  /** Initial flow-control window of each stream. Default 4 MiB. */
  readonly streamWindowBytes: number;
  /** Flow-control window of a whole session. Default 16 MiB. */
  readonly sessionWindowBytes: number;
  /** Streams one session carries at most. Default 100. */
  readonly maxStreamsPerSession: number;
  /** nghttp2's per-session memory ceiling, in MB. Default 64. */
  readonly maxSessionMemoryMb: number;
}

export const DEFAULT_TUNNEL_TUNING: TunnelTuning = Object.freeze({
  streamWindowBytes: 4 * 1024 * 1024,
  sessionWindowBytes: 16 * 1024 * 1024,
  maxStreamsPerSession: 100,
  maxSessionMemoryMb: 64,
});

const MAX_WINDOW = 2 ** 31 - 1;

/** Fills defaults and validates; throws WEFT_PROXY_BAD_OPTION naming the bad field. */
export function tunnelTuning(partial: Partial<TunnelTuning> = {}): TunnelTuning {
  const t = { ...DEFAULT_TUNNEL_TUNING, ...partial };
  const check = (name: keyof TunnelTuning, min: number, max: number): void => {
    const v = t[name];
    if (!Number.isInteger(v) || v < min || v > max) {
      throw proxyError(ProxyErrors.BAD_OPTION, `tunnel tuning ${name} must be an integer in [${min}, ${max}], got ${v}`);
    }
  };
  check('streamWindowBytes', 65_535, MAX_WINDOW);
  check('sessionWindowBytes', 65_535, MAX_WINDOW);
  check('maxStreamsPerSession', 1, 10_000);
  check('maxSessionMemoryMb', 1, 4096);
  return Object.freeze(t);
}

export function h2Settings(t: TunnelTuning): Settings {
  return { enablePush: false, initialWindowSize: t.streamWindowBytes, maxConcurrentStreams: t.maxStreamsPerSession };
}

/** `ip:port`, with brackets for IPv6. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
