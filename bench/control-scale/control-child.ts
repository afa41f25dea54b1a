// The scale benchmark's control plane, alone in its process (so its CPU and RSS are its own):
// runControlPlane with the Kubernetes source against the benchmark's local API server, static
// bootstrap tokens, loopback gRPC with TLS. Answers `heap` with its memory after a full GC
// (it runs with --expose-gc), records a CPU profile between `profile` and `profile-stop`
// (the benchmark's --profile), and stops on `close`. Run with `--warm`, it loads the control
// plane's modules and exits: the compile cache (NODE_COMPILE_CACHE, as bin/weft sets it)
// then holds them type-stripped and compiled, as for any `weft control` after the first.

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { flushCompileCache } from 'node:module';
import { runControlPlane } from '../../src/app/control.ts';
import { PushStatsRecorder, type PushStats } from './push-stats.ts';

export interface ControlChildArgs {
  readonly kubeconfig: string;
  readonly caDir: string;
  readonly tokensFile: string;
}

export type ControlChildMessage =
  | { readonly type: 'ready'; readonly port: number; readonly metricsPort: number }
  | { readonly type: 'failed'; readonly error: string }
  | { readonly type: 'heap'; readonly heapUsedMb: number; readonly heapTotalMb: number; readonly rssMb: number; readonly externalMb: number }
  | { readonly type: 'profiled'; readonly file: string }
  | { readonly type: 'push-stats'; readonly stats: PushStats };

/**
 * Asks the child to start a CPU profile (`profile`), or to stop it and write it to `file`;
 * to start measuring its side of the pushes (`push-stats`) or to stop and answer (`push-stats-stop`).
 */
export type ControlChildRequest = 'heap' | 'close' | 'profile' | 'push-stats' | 'push-stats-stop' | { readonly type: 'profile-stop'; readonly file: string };

const send = (m: ControlChildMessage): void => void process.send?.(m);

async function main(args: ControlChildArgs): Promise<void> {
  try {
    const pushes = new PushStatsRecorder();
    const cp = await runControlPlane({
      listen: '127.0.0.1:0', metrics: { host: '127.0.0.1', port: 0 }, dashboard: undefined,
      source: { kind: 'kubernetes', kubeconfig: args.kubeconfig }, caDir: args.caDir, tokensFile: args.tokensFile,
      trustDomain: 'cluster.local', serverDnsNames: [], readyFile: undefined, logLevel: 'warn',
    }, { onServerEvent: (e) => pushes.onEvent(e) });
    const profiler = new Session();
    process.on('message', (m: ControlChildRequest) => {
      if (m === 'profile') {
        profiler.connect();
        void profiler.post('Profiler.enable').then(() => profiler.post('Profiler.start'));
      }
      if (typeof m === 'object' && m.type === 'profile-stop') {
        void profiler.post('Profiler.stop').then(({ profile }) => {
          writeFileSync(m.file, JSON.stringify(profile));
          profiler.disconnect();
          send({ type: 'profiled', file: m.file });
        });
      }
      if (m === 'push-stats') pushes.start();
      if (m === 'push-stats-stop') send({ type: 'push-stats', stats: pushes.stop() });
      if (m === 'heap') {
        const gc = (globalThis as { gc?: () => void }).gc;
        gc?.();
        gc?.();
        const u = process.memoryUsage();
        send({ type: 'heap', heapUsedMb: u.heapUsed / 2 ** 20, heapTotalMb: u.heapTotal / 2 ** 20, rssMb: u.rss / 2 ** 20, externalMb: u.external / 2 ** 20 });
      }
      if (m === 'close') void cp.close().finally(() => process.exit(0));
    });
    send({ type: 'ready', port: cp.port, metricsPort: cp.metricsPort });
  } catch (err: unknown) {
    send({ type: 'failed', error: err instanceof Error ? err.stack ?? err.message : String(err) });
    writeFileSync(2, `${String(err)}\n`);
    process.exit(1);
  }
}

if (process.argv[2] === '--warm') {
  await Promise.all([import('../../src/control/source/kubernetes.ts'), import('../../src/control/source/kube-access.ts')]);
  flushCompileCache();
} else {
  await main(JSON.parse(process.argv[2] ?? '{}') as ControlChildArgs);
}
