// A client's request body as an upstream attempt reads it: a fresh Readable per attempt over
// the one source, which starts pulling from the client only when the upstream first reads.
// So an attempt that failed to connect has read nothing (the request can go elsewhere), and
// `bytes` counts what was really taken from the client. Backpressure: the source pauses
// whenever the attempt's buffer is full. Destroying an attempt's view never destroys the
// source (the downstream side owns the client's stream).

import { Readable } from 'node:stream';

export class RequestBody {
  readonly #source: Readable;
  #bytes = 0;
  #taken = false;

  constructor(source: Readable) {
    this.#source = source;
    source.pause();
  }

  /** Body bytes read from the client so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** A view for one attempt. Only one attempt may read: a second view after bytes flowed fails at once. */
  open(): Readable {
    const src = this.#source;
    let started = false;
    const onData = (chunk: Buffer): void => {
      this.#bytes += chunk.length;
      if (!view.push(chunk)) src.pause();
    };
    const onEnd = (): void => {
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
          if (src.readableEnded) view.push(null);
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
