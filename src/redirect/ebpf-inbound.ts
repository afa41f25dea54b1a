// eBPF inbound capture for one pod: the sk_lookup program linked to the pod's network
// namespace (one pinned link per pod under links/), and the listening sockets the agent
// opens inside that namespace for its proxy workers (weft_inbound_socks). Connections to the
// pod that did not come through the mesh then land on the agent without any address
// rewriting; their local address is where they were going.

import { existsSync, rmSync, statSync, mkdirSync } from 'node:fs';
import { parseLinkInfo, type Bpftool } from './bpftool.ts';
import { MapNames, ProgNames } from './ebpf-maps.ts';
import type { PinLayout } from './ebpf-pins.ts';
import { redirectError, RedirectErrors } from './errors.ts';
import { isErrnoError, native } from './native.ts';
import type { CaptureTarget } from './options.ts';

/** Backlog of each inbound socket: connections wait there while a worker is busy or starting. */
export const INBOUND_BACKLOG = 1024;

function inode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/**
 * Links the sk_lookup program to the pod's namespace unless a pinned link to that very
 * namespace exists already (an adopted one). A link to another namespace (the pod was
 * recreated under the same id) is replaced.
 */
export async function ensureInboundLink(bpftool: Bpftool, layout: PinLayout, pod: CaptureTarget, netns: string): Promise<void> {
  const pin = layout.link(pod.podId);
  if (existsSync(pin)) {
    const info = parseLinkInfo(await bpftool.json(['link', 'show', 'pinned', pin]));
    if (info.netnsIno !== undefined && info.netnsIno === inode(netns)) return;
    rmSync(pin, { force: true });
  }
  mkdirSync(layout.linksDir, { recursive: true });
  try {
    native().attachSkLookup(layout.prog(ProgNames.inbound), netns, pod.ip, pin);
  } catch (err: unknown) {
    if (!isErrnoError(err)) throw err;
    throw redirectError(RedirectErrors.BPFTOOL_FAILED, `pod ${pod.podId}: cannot link inbound capture (sk_lookup) to its network namespace ${netns}: ${err.message}`, err);
  }
}

/** Unlinks the pod's sk_lookup program: new connections reach the pod directly again. */
export function removeInboundLink(layout: PinLayout, podId: string): void {
  // The pin is the link's only reference: removing it detaches the program.
  rmSync(layout.link(podId), { force: true });
}

/** A listening socket in the pod's namespace for proxy worker `slot`; resolves its file descriptor. */
export function openInboundSocket(layout: PinLayout, pod: CaptureTarget, netns: string, slot: number): number {
  try {
    return native().inboundListener(netns, pod.ip, layout.map(MapNames.inboundSocks), slot, INBOUND_BACKLOG);
  } catch (err: unknown) {
    if (!isErrnoError(err)) throw err;
    throw redirectError(RedirectErrors.BAD_TARGET, `pod ${pod.podId}: cannot open inbound socket ${slot} in its network namespace ${netns}: ${err.message}`, err);
  }
}
