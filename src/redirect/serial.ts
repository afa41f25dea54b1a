// Runs async operations one at a time, in call order: enroll/unenroll/close each touch
// shared kernel state in several steps and must not interleave.

export class Serial {
  #tail: Promise<void> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
