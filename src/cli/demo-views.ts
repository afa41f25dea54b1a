// What the demo opens for a person to look at: the dashboard through a loopback
// port-forward (127.0.0.1:15080, or any free port when that is taken), and, when
// OTEL_EXPORTER_OTLP_ENDPOINT names a collector on this machine's loopback, a relay that lets
// the simulated agents (which cannot reach the host's loopback) export their traces to it.

import { CONTROL_IP } from '../sim/addresses.ts';
import { DASHBOARD_PORT, dashboardNetns } from '../sim/mesh.ts';
import { portForward, reverseForward } from '../sim/port-forward.ts';
import type { ClusterState } from '../sim/state.ts';

/** Where agents in the simulator send traces when the demo relays them. */
export const RELAY_ENDPOINT = `http://${CONTROL_IP}:4318`;

export interface TraceRelayPlan {
  /** The user's collector on loopback. */
  readonly target: { readonly host: string; readonly port: number };
  /** The variables to run the mesh with instead of the user's. */
  readonly env: Record<string, string>;
}

/**
 * Pure: from the user's OTEL_* to what the simulated mesh is given. Undefined when no endpoint
 * is set; an error message when it is not on loopback (nothing in the simulator reaches past
 * this machine).
 */
export function traceRelayPlan(env: NodeJS.ProcessEnv): TraceRelayPlan | string | undefined {
  const key = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
  const value = env[key];
  if (value === undefined || value === '') return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${key} ${JSON.stringify(value)} is not a URL`;
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!/^127\./.test(host) && host !== 'localhost' && host !== '::1') return `${key} must name a collector on this machine's loopback (e.g. http://127.0.0.1:4318) for the demo to relay traces to it`;
  if (url.protocol !== 'http:') return `${key}: the demo relays plain http only`;
  const port = url.port === '' ? 80 : Number(url.port);
  const inside = new URL(RELAY_ENDPOINT);
  inside.pathname = url.pathname;
  return { target: { host: host === 'localhost' ? '127.0.0.1' : host, port }, env: { [key]: key === 'OTEL_EXPORTER_OTLP_ENDPOINT' ? RELAY_ENDPOINT : inside.href } };
}

export interface DemoViews {
  readonly dashboardUrl: string;
  close(): Promise<void>;
}

export async function openViews(state: ClusterState, relay: TraceRelayPlan | undefined): Promise<DemoViews> {
  const netns = dashboardNetns(state);
  const target = { host: '127.0.0.1', port: DASHBOARD_PORT };
  const dashboard = await portForward({ netns, target, port: DASHBOARD_PORT }).catch(() => portForward({ netns, target, port: 0 }));
  // The relay listens on the underlay's own address, which every agent (on its node) reaches.
  const traces = relay === undefined ? undefined : await reverseForward({ netns: state.plan.underlayNetns, listen: { host: CONTROL_IP, port: 4318 }, target: relay.target });
  return {
    dashboardUrl: dashboard.url,
    close: async () => {
      await dashboard.close();
      await traces?.close();
    },
  };
}
