// The agent's proxy worker threads, seen from the main thread: start them, hand each the
// latest mesh and credentials (also a worker restarted after a crash), gather their
// metrics into one registry, and drain them on shutdown.

import { Worker } from 'node:worker_threads';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { WeftError } from '../core/errors.ts';
import type { MeshContent } from '../model/resolve.ts';
import type { CredentialSet } from './credentials.ts';
import type { ProxyRuntimeOptions } from './proxy-runtime.ts';
import type { FromWorker, ToWorker, WorkerStats } from './worker-messages.ts';

const ENTRY = new URL('./proxy-worker.ts', import.meta.url);
const METRICS_TIMEOUT_MS = 2000;

interface Slot {
  worker: Worker;
  listening: boolean;
}

export class ProxyWorkers {
  readonly #count: number;
  readonly #options: ProxyRuntimeOptions;
  readonly #logger: Logger;
  readonly #logLevel: string;
  readonly #slots: Slot[] = [];
  #mesh: MeshContent | undefined;
  #credentials: CredentialSet | undefined;
  #nextId = 0;
  #stopping = false;

  constructor(count: number, options: ProxyRuntimeOptions, logger: Logger, logLevel: string) {
    this.#count = count;
    this.#options = options;
    this.#logger = logger;
    this.#logLevel = logLevel;
  }

  /** Starts every worker; resolves when all listen, rejects naming the first that could not. */
  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.#count }, (_, i) => this.#spawn(i)));
  }

  get listening(): number {
    return this.#slots.filter((s) => s.listening).length;
  }

  #spawn(index: number): Promise<void> {
    const worker = new Worker(ENTRY, { workerData: { options: this.#options, logLevel: this.#logLevel, index } });
    const slot: Slot = { worker, listening: false };
    this.#slots[index] = slot;
    if (this.#mesh !== undefined) worker.postMessage({ type: 'mesh', content: this.#mesh } satisfies ToWorker);
    if (this.#credentials !== undefined) worker.postMessage({ type: 'credentials', set: this.#credentials } satisfies ToWorker);
    return new Promise((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'listening') {
          slot.listening = true;
          resolve();
        } else if (m.type === 'failed') {
          reject(new WeftError('WEFT_AGENT_WORKER_FAILED', `proxy worker ${index} could not start: ${m.message}`));
        }
      });
      worker.on('error', (err: Error) => {
        this.#logger.error({ worker: index, err: err.message }, 'proxy worker crashed');
        reject(err);
      });
      worker.on('exit', (code) => {
        slot.listening = false;
        if (this.#stopping || this.#slots[index] !== slot) return;
        // A crashed worker is replaced: the others keep serving meanwhile (SO_REUSEPORT).
        this.#logger.error({ worker: index, code }, 'proxy worker exited; starting a new one');
        this.#spawn(index).catch((err: unknown) => this.#logger.error({ worker: index, err: String(err) }, 'proxy worker restart failed'));
      });
    });
  }

  #broadcast(message: ToWorker): void {
    for (const s of this.#slots) s.worker.postMessage(message);
  }

  setMesh(content: MeshContent): void {
    this.#mesh = content;
    this.#broadcast({ type: 'mesh', content });
  }

  setCredentials(set: CredentialSet): void {
    this.#credentials = set;
    this.#broadcast({ type: 'credentials', set });
  }

  /** Every worker's metrics summed into one registry (a silent worker is left out after a timeout). */
  async metrics(): Promise<{ registry: Registry; stats: WorkerStats[] }> {
    const replies = await Promise.all(this.#slots.map((s) => this.#ask(s.worker)));
    const got = replies.filter((r) => r !== undefined);
    return { registry: AggregatorRegistry.aggregate(got.map((r) => r.metrics)), stats: got.map((r) => r.stats) };
  }

  #ask(worker: Worker): Promise<{ metrics: MetricObjectWithValues<MetricValue<string>>[]; stats: WorkerStats } | undefined> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => { worker.off('message', onMessage); resolve(undefined); }, METRICS_TIMEOUT_MS);
      timer.unref();
      const onMessage = (m: FromWorker): void => {
        if (m.type !== 'metrics' || m.id !== id) return;
        clearTimeout(timer);
        worker.off('message', onMessage);
        resolve({ metrics: m.metrics, stats: m.stats });
      };
      worker.on('message', onMessage);
      worker.postMessage({ type: 'metrics', id } satisfies ToWorker);
    });
  }

  /** Stops accepting, lets connections finish up to the deadline, then ends the threads. Safe to call twice. */
  async drain(deadlineMs: number): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#slots.map(async (s) => {
      const drained = new Promise<void>((resolve) => {
        s.worker.on('message', (m: FromWorker) => { if (m.type === 'drained') resolve(); });
        s.worker.once('exit', () => resolve());
      });
      s.worker.postMessage({ type: 'drain', deadlineMs } satisfies ToWorker);
      const hard = setTimeout(() => void s.worker.terminate(), deadlineMs + 2000);
      await drained;
      clearTimeout(hard);
      await s.worker.terminate();
    }));
  }
}
