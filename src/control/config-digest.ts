// The version an agent reports for the config it holds: a digest of every (key, version)
// pair, kept up to date per change (an order-free sum of hashes), so equal configs have
// equal versions whichever server sent them and however they arrived, at the cost of the
// change, not of the config. Not a security boundary: resource versions are checked on
// their own.

/** Two FNV-1a 32-bit hashes with different offsets, one per half of a 64-bit value. */
function hash(s: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193);
  }
  return [a >>> 0, b >>> 0];
}

export class ConfigDigest {
  #hi = 0;
  #lo = 0;
  #count = 0;

  /** A digest of a whole config. */
  static of(resources: Iterable<readonly [string, { readonly version: string }]>): ConfigDigest {
    const d = new ConfigDigest();
    for (const [key, r] of resources) d.add(key, r.version);
    return d;
  }

  add(key: string, version: string): void {
    const [a, b] = hash(`${key}\0${version}`);
    this.#hi = (this.#hi + a) >>> 0;
    this.#lo = (this.#lo + b) >>> 0;
    this.#count++;
  }

  remove(key: string, version: string): void {
    const [a, b] = hash(`${key}\0${version}`);
    this.#hi = (this.#hi - a) >>> 0;
    this.#lo = (this.#lo - b) >>> 0;
    this.#count--;
  }

  copy(): ConfigDigest {
    const d = new ConfigDigest();
    d.#hi = this.#hi;
    d.#lo = this.#lo;
    d.#count = this.#count;
    return d;
  }

  /** 16 hex digits; empty for an empty config. */
  get value(): string {
    return this.#count === 0 ? '' : this.#hi.toString(16).padStart(8, '0') + this.#lo.toString(16).padStart(8, '0');
  }
}
