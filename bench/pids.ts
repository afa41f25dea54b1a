// The processes the harness itself started (servers, HAProxy), so cleanup stops exactly
// those, by PID, and nothing else.

import { stopPids } from '../src/sim/processes.ts';

export class StartedProcesses {
  readonly #pids = new Set<number>();

  add(pid: number): number {
    this.#pids.add(pid);
    return pid;
  }

  /** Stops every recorded process (SIGTERM, then SIGKILL); safe to call twice. */
  async stopAll(): Promise<void> {
    const pids = [...this.#pids];
    this.#pids.clear();
    await stopPids(pids, 1500);
  }

  async stop(pids: readonly number[]): Promise<void> {
    for (const p of pids) this.#pids.delete(p);
    await stopPids(pids, 1500);
  }
}
