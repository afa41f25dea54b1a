// A client's request body as an upstream attempt reads it: a fresh Readable per attempt over
// the one source, which starts pulling from the client only when the upstream first reads.
// So an attempt that failed to connect has read nothing (the request can go elsewhere), and
// `bytes` counts what was really taken from the client. Backpressure: the source pauses
// whenever the attempt's buffer is full. Destroying an attempt's view never destroys the
// source (the downstream side owns the client's stream). A copy of the first 64 KiB is kept
// as it streams by, so a body read whole within that bound can be sent again (a retry); a
// larger one cannot, and its copy is dropped. The same copy feeds request mirrors.

import { Readable } from 'node:stream';

import { MAX_REPLAY_BODY_BYTES } from '../resilience/retry-policy.ts';

export class RequestBody {
  readonly #source: Readable;
  #bytes = 0;
  #taken = false;
  #ended = false;
  /** What the first attempt read, while it stays within MAX_REPLAY_BODY_BYTES; undefined past it. */
  #kept: Buffer[] | undefined = [];

  constructor(source: Readable) {
    this.#source = source;
    source.pause();
  }

  /** Body bytes read from the client so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether another attempt can send the whole body: nothing was read yet, or all of it was, within the bound. */
  get replayable(): boolean {
    return !this.#taken || this.kept;
  }

  /** Whether an attempt read the body to its end within the bound, so a copy of it is kept. */
  get kept(): boolean {
    return this.#taken && this.#ended && this.#kept !== undefined;
  }

  /** The whole body again, from the kept copy (a mirror's or a retry's); undefined unless `kept`. */
  copy(): Readable | undefined {
    return this.kept && this.#kept !== undefined ? Readable.from(this.#kept, { objectMode: false }) : undefined;
  }

  /**
   * A view for one attempt. The first reads the client; a later one replays the kept copy when
   * the body is replayable, else fails at once.
   */
  open(): Readable {
    const again = this.copy();
    if (again !== undefined) return again;
    const src = this.#source;
    let started = false;
    const onData = (chunk: Buffer): void => {
      this.#bytes += chunk.length;
      if (this.#kept !== undefined) {
        if (this.#bytes <= MAX_REPLAY_BODY_BYTES) this.#kept.push(chunk);
        else this.#kept = undefined;
      }
      if (!view.push(chunk)) src.pause();
    };
    const onEnd = (): void => {
      this.#ended = true;
      detach();
      view.push(null);
    };
    const onError = (err: Error): void => {
      view.destroy(err);
    };
    const onClose = (): void => {
      if (!src.readableEnded) view.destroy(new Error('the client reset its request'));
    };
    const detach = (): void => {
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', onError);
      src.off('close', onClose);
    };
    const view = new Readable({
      highWaterMark: 64 * 1024,
      read: () => {
        if (!started) {
          started = true;
          if (this.#taken) {
            view.destroy(new Error('the request body was already read by an earlier attempt'));
            return;
          }
          this.#taken = true;
          src.on('data', onData);
          src.once('end', onEnd);
          src.once('error', onError);
          src.once('close', onClose);
          if (src.readableEnded) {
            this.#ended = true;
            view.push(null);
          }
        }
        src.resume();
      },
      destroy: (err, cb) => {
        detach();
        src.pause();
        cb(err);
      },
    });
    return view;
  }
}
