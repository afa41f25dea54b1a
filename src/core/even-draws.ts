// Evenly spread draws in [0, 1): frac(start + n x the golden ratio), a Kronecker sequence.
// Its discrepancy is O(log n / n): the share of draws in any interval is within a few draws of
// the interval's length over any run, and so is the share of every k-th draw (a rotation by k
// times the ratio is as even), where independent random draws stray by sqrt(n). For shares
// that should hold over a few hundred requests: weighted route backends, fault percentages.

const GOLDEN = (Math.sqrt(5) - 1) / 2;

export class EvenDraws {
  #x: number;

  /** `start` in [0, 1) (its fractional part is taken): a random one, so that sequences differ. */
  constructor(start: number = Math.random()) {
    this.#x = start - Math.floor(start);
  }

  next(): number {
    this.#x += GOLDEN;
    if (this.#x >= 1) this.#x -= 1;
    return this.#x;
  }
}
