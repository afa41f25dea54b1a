// Entry point of one proxy worker thread. The agent's main thread owns the control-plane
// connection, certificates and capture state; each worker runs a ProxyRuntime on the shared
// ports (SO_REUSEPORT spreads connections across workers) and gets config by message. It
// listens only when told to, once the agent has config and certificates to serve with.

import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { systemClock } from '../core/clock.ts';
import { describeError } from '../core/errors.ts';
import { originalDestination, RedirectErrors, type KernelSplicePins } from '../redirect/index.ts';
import { BatchedLog, ConnectionTracer, RequestTracer, startTracing } from '../telemetry/index.ts';
import { NativeKernelSplicer } from './kernel-splicer.ts';
import { threadReclaimer } from './memory-reclaim.ts';
import { LingerSocketCloser } from './native-sockets.ts';
import { ProxyRuntime, type ProxyRuntimeOptions } from './proxy-runtime.ts';
import type { ToWorker, FromWorker } from './worker-messages.ts';

interface WorkerData {
  readonly options: ProxyRuntimeOptions;
  readonly logLevel: string;
  readonly index: number;
}

const port = parentPort;
if (port === null) throw new Error('proxy-worker.ts runs only as a worker thread');
const data = workerData as WorkerData;
const send = (m: FromWorker): void => port.postMessage(m);

// Access-log lines are batched (up to 50 ms): one thread-pool write per batch, not per connection.
const destination = pino.destination({ dest: 1, sync: false });
const logger = pino({ level: data.logLevel, base: { worker: data.index } }, new BatchedLog(destination));
const registry = new Registry();
// Traces only when OTEL_* asks for them (this thread's copy of the agent's environment).
const tracing = startTracing({ serviceName: 'weft-agent', registry });
const tracer = tracing === undefined ? undefined : new ConnectionTracer(tracing, { node: data.options.node, clock: systemClock });
const requestTracer = tracing === undefined ? undefined : new RequestTracer(tracing, { node: data.options.node, clock: systemClock });
const kernel = openKernelSplicer(data.options.kernelSplice);
const runtime = new ProxyRuntime(data.options, {
  logger, registry, clock: systemClock, originalDestination, closer: new LingerSocketCloser(logger),
  ...(tracer === undefined ? {} : { tracer }), ...(requestTracer === undefined ? {} : { requestTracer }),
  ...(kernel === undefined ? {} : { kernel }),
});

/** This thread's handle on the kernel splice the agent loaded; user-space splice when it cannot open it. */
function openKernelSplicer(pins: KernelSplicePins | undefined): NativeKernelSplicer | undefined {
  if (pins === undefined) return undefined;
  try {
    return new NativeKernelSplicer(pins);
  } catch (err: unknown) {
    logger.warn({ code: RedirectErrors.KERNEL_SPLICE_UNAVAILABLE, err: describeError(err) }, 'cannot open the kernel splice maps: same-node connections are spliced in user space');
    return undefined;
  }
}
const reclaim = threadReclaimer();
/** Distinct re-check reasons (policy and workload) one log line names at most. */
const MAX_LOGGED_REASONS = 16;
let draining = false;

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'mesh': {
      const started = performance.now();
      const cpu = process.threadCpuUsage();
      void runtime.setMesh(m.content).then(({ closed, reasons }) => {
        if (closed === 0) return;
        const used = process.threadCpuUsage(cpu);
        // The reasons name the policies; bounded, as thousands of connections may end at once.
        const why = Object.fromEntries([...reasons].slice(0, MAX_LOGGED_REASONS));
        logger.warn({ connections: closed, reasons: why, ms: Math.round(performance.now() - started), cpuMs: Math.round((used.user + used.system) / 1000) },
          'closed open connections the new policy no longer allows');
      });
      break;
    }
    case 'credentials':
      try {
        const ended = runtime.setCredentials(m.set);
        if (ended > 0) logger.warn({ sessions: ended }, 'ended tunnel sessions that used a revoked certificate');
      } catch (err: unknown) {
        logger.error({ err: describeError(err) }, 'credentials refused; keeping the previous ones');
      }
      break;
    case 'metrics':
      void registry.getMetricsAsJSON().then((metrics) => send({ type: 'metrics', id: m.id, metrics, stats: runtime.stats() }));
      break;
    case 'inbound-socket':
      runtime.adoptInbound(m.pod, m.fd).catch((err: unknown) => logger.error({ pod: m.pod, err: describeError(err) }, 'cannot serve the pod\'s inbound socket'));
      break;
    case 'inbound-release':
      runtime.releaseInbound(m.pod);
      break;
    case 'reclaim': {
      const started = performance.now();
      reclaim();
      send({ type: 'reclaimed', id: m.id, ms: performance.now() - started });
      break;
    }
    case 'listen':
      if (draining) break;
      runtime.listen().then(
        () => send({ type: 'listening' }),
        (err: unknown) => send({ type: 'failed', message: describeError(err) }),
      );
      break;
    case 'drain':
      draining = true;
      void runtime.drain(m.deadlineMs).then(() => {
        kernel?.close(); // worker threads share the process's descriptors: a finished one must give its own back
        return tracing?.shutdown();
      }).then(() => {
        // The thread is terminated once it says 'drained', so every access-log line must be out
        // by then: flush() hands the pending batch over but does not wait for writes in flight
        // or queued behind one; end() does (and leaves fd 1 open).
        logger.flush();
        destination.once('close', () => send({ type: 'drained' }));
        try {
          destination.end();
        } catch {
          send({ type: 'drained' });
        }
      });
      break;
  }
});

