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
  /** Settles when this worker listens or fails to (never rejects unobserved). */
  listened: Promise<void>;
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
  #live = false;
  #stopping = false;
  readonly #restarted: ((index: number) => void)[] = [];

  constructor(count: number, options: ProxyRuntimeOptions, logger: Logger, logLevel: string) {
    this.#count = count;
    this.#options = options;
    this.#logger = logger;
    this.#logLevel = logLevel;
  }

  /** Starts every worker thread; they listen only once listen() is called. */
  start(): void {
    for (let i = 0; i < this.#count; i++) this.#spawn(i);
  }

  /**
   * Opens every worker's listeners; resolves when all listen, rejects naming the first that
   * could not. Call it once the mesh and credentials are set: with SO_REUSEPORT a listener gets
   * its share of new connections at once (on a rolling restart, beside the old agent's), so it
   * must already know the pods. Workers restarted after a crash listen as soon as they start.
   */
  async listen(): Promise<void> {
    if (this.#live || this.#stopping) return;
    this.#live = true;
    for (const s of this.#slots) s.worker.postMessage({ type: 'listen' } satisfies ToWorker);
    await Promise.all(this.#slots.map((s) => s.listened));
  }

  get count(): number {
    return this.#count;
  }

  /** Posts to one worker (e.g. a pod's inbound socket for that worker's slot). */
  postTo(index: number, message: ToWorker): void {
    this.#slots[index]?.worker.postMessage(message);
  }

  /** Called with a worker's index after it was replaced (its sockets died with it). */
  onRestart(listener: (index: number) => void): void {
    this.#restarted.push(listener);
  }

  get listening(): number {
    return this.#slots.filter((s) => s.listening).length;
  }

  #spawn(index: number): Slot {
    const worker = new Worker(ENTRY, { workerData: { options: this.#options, logLevel: this.#logLevel, index } });
    const slot: Slot = { worker, listening: false, listened: Promise.resolve() };
    this.#slots[index] = slot;
    if (this.#mesh !== undefined) worker.postMessage({ type: 'mesh', content: this.#mesh } satisfies ToWorker);
    if (this.#credentials !== undefined) worker.postMessage({ type: 'credentials', set: this.#credentials } satisfies ToWorker);
    if (this.#live) worker.postMessage({ type: 'listen' } satisfies ToWorker);
    slot.listened = new Promise((resolve, reject) => {
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
        this.#spawn(index).listened.catch((err: unknown) => this.#logger.error({ worker: index, err: String(err) }, 'proxy worker restart failed'));
        for (const l of this.#restarted) l(index);
      });
    });
    // Observed by listen() or the restart above; this keeps an early failure from going unhandled.
    slot.listened.catch(() => undefined);
    return slot;
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
    return this.#request(worker, (id) => ({ type: 'metrics', id }), (m) => (m.type === 'metrics' ? { metrics: m.metrics, stats: m.stats } : undefined));
  }

  /** Sends what `message` makes with a fresh id; the reply with that id, as `pick` reads it, or undefined after a timeout. */
  #request<T>(worker: Worker, message: (id: number) => ToWorker, pick: (m: FromWorker) => T | undefined): Promise<T | undefined> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => { worker.off('message', onMessage); resolve(undefined); }, METRICS_TIMEOUT_MS);
      timer.unref();
      const onMessage = (m: FromWorker): void => {
        if (!('id' in m) || m.id !== id) return;
        const got = pick(m);
        if (got === undefined) return;
        clearTimeout(timer);
        worker.off('message', onMessage);
        resolve(got);
      };
      worker.on('message', onMessage);
      worker.postMessage(message(id));
    });
  }

  /** Every worker collects its garbage and trims its heap; resolves when all have (or after a timeout). */
  /** Reclaims in each worker in turn; resolves to how long each one's thread was stalled (ms; undefined for a worker that did not answer). */
  async reclaim(): Promise<(number | undefined)[]> {
    const stalls: (number | undefined)[] = [];
    // One worker at a time: a full collection stalls its thread, and the others keep serving.
    for (const s of this.#slots) stalls.push(await this.#request(s.worker, (id) => ({ type: 'reclaim', id }), (m) => (m.type === 'reclaimed' ? m.ms : undefined)));
    return stalls;
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
